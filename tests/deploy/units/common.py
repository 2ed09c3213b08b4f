"""What the tests of deploy/units/ share: the templates, the settings they render with."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.units.install import default_executable
from deploy.units.settings import Settings

TEMPLATES = Path(__file__).resolve().parents[3] / "deploy" / "systemd"
EXE = default_executable()
SETTINGS = Settings(executable=EXE)
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)
