"""deploy/units/install.py: `install` writes the units and says what next; the user and group
commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.units.cli import main
from deploy.units.install import accounts_exist, user_commands
from tests.deploy.units.common import SETTINGS


def test_install_writes_units_and_says_what_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "system"
    assert main(["install", "--prefix", "/opt/edgefleet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "systemctl daemon-reload" in text
    assert "systemctl enable --now edgefleet-edge.service edgefleet-fill.timer" in text
    # Not asked to create the user: says how, unless this box has it already.
    assert ("--create-user" in text) != all(accounts_exist(SETTINGS))
    edge = (out / "edgefleet-edge.service").read_text()
    assert "ExecStart=/opt/edgefleet/bin/edgefleet edge serve" in edge


def test_user_creation_commands() -> None:
    group, user = user_commands(SETTINGS)
    assert group == ["groupadd", "--system", "edgefleet"]
    assert user[:2] == ["useradd", "--system"]
    assert user[-1] == "edgefleet"
    assert "/usr/sbin/nologin" in user
