"""deploy/units/analyze.py: `systemd-analyze verify` and `security` on the rendered files (real
systemd 252 tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.units.analyze import exposure, unit_files, verify
from deploy.units.cli import main
from deploy.units.hardening import MAX_EXPOSURE
from deploy.units.settings import SERVICES
from tests.deploy.units.common import EXE, needs_analyze

# -- systemd-analyze on the rendered files --------------------------------------------------


@needs_analyze
def test_rendered_units_verify_clean(unit_dir: Path) -> None:
    assert verify(unit_files(unit_dir)) == []


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "old", "new", "expected"),
    [
        (
            "edgefleet-edge.service",
            "PrivateTmp=yes\n",
            "PrivateTmp=yes\nProtectSystm=strict\n",
            "Unknown key 'ProtectSystm'",
        ),
        ("edgefleet-fill.service", EXE, "/nonexistent/edgefleet", "is not executable"),
        (
            "edgefleet-steering.service",
            "RestartSec=2s",
            "RestartSec=soon",
            "Failed to parse sec value",
        ),
        (
            "edgefleet-planner.timer",
            "Unit=edgefleet-planner.service",
            "Unit=edgefleet-planer.service",
            "edgefleet-planer.service",
        ),
    ],
)
def test_verify_fails_on_a_broken_unit(
    unit_dir: Path, unit: str, old: str, new: str, expected: str
) -> None:
    path = unit_dir / unit
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    problems = verify(unit_files(unit_dir))
    assert any(expected in p for p in problems), problems
    assert main(["verify", str(unit_dir)]) == 1


@needs_analyze
def test_every_service_exposure_is_low(unit_dir: Path) -> None:
    scores = {p.name: exposure(p) for p in unit_files(unit_dir) if p.suffix == ".service"}
    assert sorted(scores) == sorted(SERVICES)
    for name, (score, label) in scores.items():
        assert score <= MAX_EXPOSURE, (name, score)
        assert label in ("OK", "SAFE", "PERFECT"), name


@needs_analyze
def test_exposure_of_an_unhardened_unit_is_high(tmp_path: Path) -> None:
    # The measurement can fail: a bare service scores far above the bound.
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nExecStart={EXE} steering serve\n")
    score, _ = exposure(bare)
    assert score > 9.0
    assert main(["security", str(tmp_path)]) == 1
