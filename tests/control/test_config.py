"""ControlConfig: defaults, relative paths, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from control import config as control_config
from control.config import ControlConfig
from edgefleet.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "control.toml"


def test_example_is_the_defaults() -> None:
    assert control_config.load(EXAMPLE) == ControlConfig()
    assert ControlConfig().listen.port == 7070


def test_relative_paths_follow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "control.toml"
    path.write_text('topology = "t.toml"\nsecret_file = "/abs/s"\nstore = "db/c.sqlite3"\n')
    conf = control_config.load(path, {"listen.port": 0})
    assert conf.topology == str(tmp_path / "t.toml")
    assert conf.secret_file == "/abs/s"
    assert conf.store == str(tmp_path / "db" / "c.sqlite3")
    assert conf.listen.port == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[listen]\nport = 70000\n", "'listen.port' must be 0..65535"),
        ("tick_interval_s = 0\n", "'tick_interval_s' must be positive"),
        ("max_request_bytes = 10\n", "'max_request_bytes' must be at least 1024"),
        ('store = ""\n', "'store' is required"),
        ("uvloop = 1\n", "'uvloop' must be bool"),
        ("colour = 1\n", "unknown key 'colour'"),
    ],
)
def test_invalid(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "control.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        control_config.load(path)
