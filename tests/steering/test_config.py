"""SteeringConfig: defaults, paths relative to the file, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.config import ConfigError
from steering import config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "steering.toml"
    path.write_text('secret_file = "secret"\nkeyring = "keys.toml"\n' + text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    conf = config.load(write(tmp_path, ""))
    assert conf.listen.port == 7080
    assert (conf.url_ttl_s, conf.client_prefix_len, conf.client_prefix_len_v6) == (3600, 32, 128)
    assert (conf.snapshot_interval_s, conf.load_bound, conf.max_ids_per_request) == (1.0, 1.25, 100)
    assert conf.secret_file == str(tmp_path / "secret")
    assert conf.keyring == str(tmp_path / "keys.toml")


def test_overrides(tmp_path: Path) -> None:
    conf = config.load(write(tmp_path, "[listen]\nport = 1\n"), {"listen.port": 0})
    assert conf.listen.port == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('control_url = "ftp://x"', "control_url"),
        ("url_ttl_s = 0", "url_ttl_s"),
        ("client_prefix_len = 33", "client_prefix_len"),
        ("client_prefix_len_v6 = 129", "client_prefix_len_v6"),
        ("snapshot_interval_s = 0", "snapshot_interval_s"),
        ("load_bound = 1.0", "load_bound"),
        ("default_max_urls = 21", "default_max_urls"),
        ("max_ids_per_request = 0", "max_ids_per_request"),
        ("uvloop = 1", "uvloop"),
        ("unknown = 1", "unknown"),
        ("[listen]\nport = 70000", "listen.port"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config.load(write(tmp_path, text + "\n"))


def test_secret_and_keyring_are_required(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    with pytest.raises(ConfigError, match="secret_file"):
        config.load(path)


def test_the_example_lists_every_default() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "steering.toml"
    conf = config.load(example)
    defaults = config.SteeringConfig(secret_file=conf.secret_file, keyring=conf.keyring)
    assert conf == defaults
