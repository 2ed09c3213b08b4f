"""`systemd-analyze` on unit files: `verify` (with our policy on top), the offline `security`
exposure, and the installed systemd's system call groups."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from deploy.units.hardening import parse_exposure, parse_syscall_groups, policy_problems
from deploy.units.settings import UnitError


def unit_files(directory: Path) -> list[Path]:
    """The unit files of *directory* (services and timers), sorted."""
    return sorted(p for p in directory.iterdir() if p.suffix in (".service", ".timer"))


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise UnitError("systemd-analyze not found (Debian: apt-get install systemd)")
    return tool


def syscall_groups() -> dict[str, list[str]]:
    """systemd's own system call groups (they change between versions: ask the installed one)."""
    proc = subprocess.run(
        [_systemd_analyze(), "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return parse_syscall_groups(proc.stdout)


def verify(paths: Sequence[Path]) -> list[str]:
    """`systemd-analyze verify` of *paths*: every line it prints is a problem (empty: clean).

    It checks syntax, unknown keys and bad values, that ExecStart= binaries exist, and each
    timer's Unit= (the service must sit next to it: the files' directories are searched).
    One run for all: a unit is loaded once even when another one names it, and each message
    starts with the file it is about.
    """
    proc = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode != 0 and not problems:
        problems.append(f"systemd-analyze verify exited {proc.returncode}")
    return problems + policy_problems({p.name: p.read_text() for p in paths})


def exposure(path: Path) -> tuple[float, str]:
    """The offline `systemd-analyze security` exposure of one service unit file."""
    proc = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # It exits non-zero when the score is above --threshold (default 100): not our check.
    return parse_exposure(proc.stdout + proc.stderr)
