"""The rendered units, as text and as files, for the tests of deploy/units/."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.units.install import write_units
from deploy.units.render import render_all
from tests.deploy.units.common import SETTINGS, TEMPLATES


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_all(TEMPLATES, SETTINGS)


@pytest.fixture
def unit_dir(tmp_path: Path, rendered: dict[str, str]) -> Path:
    out = tmp_path / "units"
    write_units(rendered, out)
    return out
