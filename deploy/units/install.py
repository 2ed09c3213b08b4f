"""Installing on a box: the rendered units written where systemd reads them, the service user
and group (groupadd/useradd), the installed `edgefleet` executable, and the next steps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from deploy.units.settings import UNITS, Settings, UnitError


def write_units(units: Mapping[str, str], out: Path) -> list[Path]:
    """Write the rendered units (mode 0644, as systemd expects); the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = out / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
        written.append(path)
    return written


def default_executable() -> str:
    """The `edgefleet` script next to this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "edgefleet"
    if beside.exists():
        return str(beside)
    return shutil.which("edgefleet") or str(beside)


def user_commands(settings: Settings) -> list[list[str]]:
    """The commands that create the system user and group (Debian's adduser conventions)."""
    return [
        ["groupadd", "--system", settings.group],
        [
            "useradd",
            "--system",
            "--gid",
            settings.group,
            "--home-dir",
            settings.state_dir,
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "edgefleet services",
            settings.user,
        ],
    ]


def accounts_exist(settings: Settings) -> tuple[bool, bool]:
    """(the group exists, the user exists) on this box."""
    import grp
    import pwd

    try:
        grp.getgrnam(settings.group)
        group = True
    except KeyError:
        group = False
    try:
        pwd.getpwnam(settings.user)
        user = True
    except KeyError:
        user = False
    return group, user


def create_user(settings: Settings) -> None:
    """Create the service group and user unless they exist."""
    for exists, command in zip(accounts_exist(settings), user_commands(settings), strict=True):
        if exists:
            continue
        try:
            subprocess.run(command, check=True, timeout=60, capture_output=True, text=True)
        except FileNotFoundError:
            raise UnitError(f"{command[0]} not found (Debian: apt-get install passwd)") from None
        except subprocess.CalledProcessError as exc:
            raise UnitError(f"{' '.join(command)}: {exc.stderr.strip()}") from None


def next_steps(out: Path, user_exists: bool, settings: Settings) -> str:
    """What the operator does after `install`."""
    user_step = (
        ""
        if user_exists
        else f"  edgefleet units install --create-user   # no user '{settings.user}' yet\n"
    )
    return (
        f"edgefleet units: wrote {len(UNITS)} units to {out}\nNext:\n{user_step}"
        f"  write the configs in {settings.config_dir}/ (edge.toml, control.toml, "
        "steering.toml, fill.toml, planner.toml)\n"
        f"  chgrp {settings.group} {settings.config_dir}/* && chmod 0640 "
        f"{settings.config_dir}/*   # secrets readable by the services only\n"
        "  systemctl daemon-reload\n"
        "  # an appliance:\n"
        "  systemctl enable --now edgefleet-edge.service edgefleet-fill.timer\n"
        "  # the control box:\n"
        "  systemctl enable --now edgefleet-control.service edgefleet-steering.service "
        "edgefleet-planner.timer\n"
        "  systemctl status 'edgefleet-*'\n"
    )
