"""`edgefleet units` (deploy/units/cli.py): render, verify and security end to end, and the
refusals of bad options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy.units.cli import main
from deploy.units.settings import SERVICES, UNITS
from tests.deploy.units.common import EXE, needs_analyze


@needs_analyze
def test_cli_render_verify_security(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rendered"
    args = ["--executable", EXE, "--content-path", "/srv/a", "--content-path", "/srv/b"]
    assert main(["render", *args, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(UNITS)
    assert "ReadWritePaths=/srv/a /srv/b\n" in (out / "edgefleet-fill.service").read_text()
    assert oct((out / "edgefleet-edge.service").stat().st_mode & 0o777) == "0o644"
    assert main(["verify", str(out)]) == 0
    assert main(["security", str(out)]) == 0
    table = capsys.readouterr().out
    for name in SERVICES:
        assert re.search(rf"{name}\s+\d\.\d (OK|SAFE)", table), table


def test_cli_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert main(["render", "--prefix", "/home/me/venv", "--out", str(out)]) == 2
    assert "ProtectHome=yes hides" in capsys.readouterr().err
    assert not out.exists()
    assert main(["render", "--executable", EXE, "--prefix", "/opt", "--out", str(out)]) == 2
    assert main(["verify", str(tmp_path)]) == 1
    assert "no .service or .timer files" in capsys.readouterr().err
