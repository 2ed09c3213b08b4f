"""Configuration loading: TOML → frozen dataclasses, errors that name the bad key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge import config as edge_config
from edge.config import EdgeConfig
from edgefleet.config import ConfigError, from_mapping, key_line, load


@dataclass(frozen=True)
class Inner:
    """A nested table."""

    port: int = 80
    ratio: float = 0.5
    name: str = "x"


@dataclass(frozen=True)
class Outer:
    """A configuration with one of every supported kind of field."""

    enabled: bool = True
    count: int = 1
    limit: int | None = None
    names: tuple[str, ...] = ("a",)
    inner: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        if self.count > 100:
            raise ValueError("'count' must be at most 100")


@dataclass(frozen=True)
class Required:
    """A configuration with a key that has no default."""

    needed: str


def write(tmp_path: Path, text: str, name: str = "conf.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> Outer:
    return load(Outer, write(tmp_path, text))


# -- the generic loader (edgefleet.config) -----------------------------------------------------


def test_defaults_without_a_file() -> None:
    assert load(Outer, None) == Outer()


def test_values_and_nested_tables(tmp_path: Path) -> None:
    conf = load_text(
        tmp_path,
        'enabled = false\ncount = 7\nlimit = 3\nnames = ["p", "q"]\n'
        '[inner]\nport = 8080\nratio = 0.25\nname = "n"\n',
    )
    assert conf == Outer(False, 7, 3, ("p", "q"), Inner(8080, 0.25, "n"))
    assert isinstance(conf.names, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        conf.count = 8  # type: ignore[misc]


def test_partial_nested_table_keeps_other_defaults(tmp_path: Path) -> None:
    assert load_text(tmp_path, "[inner]\nport = 1\n").inner == Inner(port=1)


def test_float_accepts_an_integer(tmp_path: Path) -> None:
    ratio = load_text(tmp_path, "[inner]\nratio = 2\n").inner.ratio
    assert ratio == 2.0
    assert type(ratio) is float


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ("[inner]\nprot = 1\n", "unknown key 'inner.prot'"),
        ("[extra]\nx = 1\n", "unknown key 'extra'"),
        ('count = "7"\n', "'count' must be int, not str"),
        ("count = 1.5\n", "'count' must be int, not float"),
        ("count = true\n", "'count' must be an integer, not a boolean"),
        ("enabled = 1\n", "'enabled' must be bool, not int"),
        ('enabled = "yes"\n', "'enabled' must be bool, not str"),
        ('[inner]\nport = "80"\n', "'inner.port' must be int, not str"),
        ("[inner]\nport = false\n", "'inner.port' must be an integer, not a boolean"),
        ("[inner]\nratio = true\n", "'inner.ratio' must be float, not bool"),
        ('[inner]\nratio = "0.5"\n', "'inner.ratio' must be float, not str"),
        ("inner = 5\n", "[inner] must be a table"),
        ('names = "p"\n', "'names' must be a list"),
        ('names = ["p", 2]\n', "'names[1]' must be str, not int"),
        ('limit = "3"\n', "'limit' has the wrong type (str)"),
        ("limit = true\n", "'limit' has the wrong type (bool)"),
        ("count = 101\n", "'count' must be at most 100"),
        ("count = \n", "conf.toml"),  # not TOML
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_text(tmp_path, text)
    assert message in str(excinfo.value)
    assert str(tmp_path / "conf.toml") in str(excinfo.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(Outer, tmp_path / "absent.toml")


def test_missing_required_key_names_it() -> None:
    with pytest.raises(ConfigError, match="needed"):
        from_mapping(Required, {}, "test.toml")
    assert from_mapping(Required, {"needed": "x"}, "test.toml") == Required("x")


def test_overrides_replace_file_values_and_create_tables(tmp_path: Path) -> None:
    path = write(tmp_path, "count = 7\n[inner]\nport = 1\nname = 'file'\n")
    conf = load(Outer, path, {"count": 9, "inner.port": 2})
    assert (conf.count, conf.inner.port, conf.inner.name) == (9, 2, "file")
    assert load(Outer, None, {"inner.port": 3}).inner == Inner(port=3)


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'inner\.port' must be int"):
        load(Outer, None, {"inner.port": "x"})
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.nope'"):
        load(Outer, None, {"inner.nope": 1})
    with pytest.raises(ConfigError, match="at most 100"):
        load(Outer, write(tmp_path, "count = 5\n"), {"count": 500})


# -- the edge configuration (edge.config) ------------------------------------------------------

MINIMAL = 'disks = ["/srv/d0"]\n[tokens]\nkeyring = "/etc/edgefleet/keys.toml"\n'


def test_edge_config_minimal(tmp_path: Path) -> None:
    conf = edge_config.load(write(tmp_path, MINIMAL))
    assert conf.disks == ("/srv/d0",)
    assert conf.tokens.keyring == "/etc/edgefleet/keys.toml"
    assert conf.listen.port == 8080
    assert conf.limits.max_ranges == 16


def test_edge_config_overrides(tmp_path: Path) -> None:
    conf = edge_config.load(write(tmp_path, MINIMAL), {"listen.port": 0, "workers": 2})
    assert (conf.listen.port, conf.workers, conf.worker_count) == (0, 2, 2)


def test_worker_count_defaults_to_cores(tmp_path: Path) -> None:
    assert edge_config.load(write(tmp_path, MINIMAL)).worker_count >= 1


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        conf_dir,
        'index = "idx"\ndisks = ["d0", "/abs/d1", "../d2"]\nruntime_dir = "run"\n'
        'access_log = "log/access.log"\n[tokens]\nkeyring = "keys.toml"\n',
    )
    conf = edge_config.load(Path("..") / "etc" / path.name)
    base = conf_dir.resolve()
    assert conf.index == str(base / "idx")
    assert conf.disks == (str(base / "d0"), "/abs/d1", str(base / "../d2"))
    assert conf.runtime_dir == str(base / "run")
    assert conf.access_log == str(base / "log/access.log")
    assert conf.tokens.keyring == str(base / "keys.toml")


def test_empty_paths_stay_empty(tmp_path: Path) -> None:
    text = 'disks = ["d"]\naccess_log = ""\n[tokens]\nrequired = false\n'
    conf = edge_config.load(write(tmp_path, text))
    assert conf.access_log == ""
    assert conf.tokens.keyring == ""


def test_tokens_must_be_disabled_explicitly() -> None:
    with pytest.raises(ConfigError, match=r"'tokens\.keyring' is required"):
        edge_config.load(None)
    assert edge_config.load(None, {"tokens.required": False}).tokens.required is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("disks = []\n", "'disks' must list at least one disk root"),
        ("workers = -1\n", "'workers' must be >= 0"),
        ("[listen]\nport = 65536\n", "'listen.port' must be 0..65535"),
        ("[listen]\nport = -1\n", "'listen.port' must be 0..65535"),
        ("[limits]\nmax_header_bytes = 255\n", "'limits.max_header_bytes' must be at least 256"),
        ("[limits]\nmax_ranges = 0\n", "'limits.max_ranges' must be at least 1"),
        ("[limits]\nsend_chunk_bytes = 4096\n", "'limits.send_chunk_bytes' must be at least 65536"),
        ("[limits]\nheader_timeout_s = 0\n", "'limits.header_timeout_s' must be positive"),
        ("[limits]\nsend_timeout_s = -1.5\n", "'limits.send_timeout_s' must be positive"),
        ("[limits]\nkeep_alive_timeout_s = 0.0\n", "'limits.keep_alive_timeout_s' must be"),
        ("[limits]\nmax_ranges = 1.0\n", "'limits.max_ranges' must be int, not float"),
        ("sendfile = 0\n", "'sendfile' must be bool, not int"),
        ('disks = "/srv/d0"\n', "'disks' must be a list"),
        ("[tokens]\nrequire_client_binding = 1\n", "'tokens.require_client_binding' must be"),
        ("[listen]\nbacklg = 5\n", "unknown key 'listen.backlg'"),
    ],
)
def test_edge_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, _with_tokens(text))
    with pytest.raises(ConfigError) as excinfo:
        edge_config.load(path)
    assert message in str(excinfo.value)


def _with_tokens(text: str) -> str:
    # Tables must come last in TOML; put top-level keys first and [tokens] settings merged.
    if "[tokens]" in text:
        return text + 'keyring = "k.toml"\n'
    top = "" if text.startswith("[") else text
    tables = text if text.startswith("[") else ""
    return f'{top}\n[tokens]\nkeyring = "k.toml"\n{tables}'


def test_timeouts_accept_integers(tmp_path: Path) -> None:
    conf = edge_config.load(write(tmp_path, MINIMAL + "[limits]\nsend_timeout_s = 5\n"))
    assert conf.limits.send_timeout_s == 5.0
    assert isinstance(conf, EdgeConfig)


# -- line numbers ---------------------------------------------------------------------------

EDGE_TEXT = """\
# an edge
index = "index"
disks = ["d0", 3]
workers = 1

[listen]
port = 8080

[limits]
max_header_bytes = 8192
send_timeout_s = "soon"
"""


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("index", 2),
        ("disks[1]", 3),
        ("listen.port", 7),
        ("limits.send_timeout_s", 11),
        ("limits", 9),
        ("listen.nope", None),
        ("nowhere", None),
    ],
)
def test_key_line_finds_the_line_of_a_dotted_key(key: str, line: int | None) -> None:
    assert key_line(EDGE_TEXT, key) == line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[limits]\nsend_timeout_s = "soon"\n', ":2: 'limits.send_timeout_s' must be float"),
        ("workers = 1\n\n[listen]\nprot = 1\n", ":4: unknown key 'listen.prot'"),
        ('disks = ["a", 3]\n', ":1: 'disks[1]' must be str"),
        ("\n\n[limits]\nmax_ranges = 0\n", ":4: 'limits.max_ranges' must be"),
    ],
)
def test_errors_read_from_a_file_give_its_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "edge.toml"
    head = 'index = "i"\n' if "disks" in text else 'disks = ["d"]\n'
    path.write_text(head + text + '\n[tokens]\nkeyring = "keys.toml"\n')
    with pytest.raises(ConfigError) as info:
        edge_config.load(path)
    message = str(info.value)
    assert message.startswith(str(path) + ":"), message
    line = int(expected.split(":")[1]) + 1  # one line was put in front
    assert f"{path}:{line}: " + expected.split(": ", 1)[1] in message


def test_an_override_has_no_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('disks = ["d"]\n')
    with pytest.raises(ConfigError, match=r"edge\.toml: 'listen\.port' must be 0\.\.65535"):
        edge_config.load(path, {"listen.port": 70000})
