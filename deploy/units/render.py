"""Rendering the unit templates (deploy/systemd/): settings in, unit texts out, refusing values
systemd would misread and templates weaker than the hardening policy."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from deploy.units.hardening import missing_hardening
from deploy.units.settings import SERVICES, UNITS, Settings, UnitError

PLACEHOLDER_RE = re.compile(r"@([A-Z_]+)@")
HHMM_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
# systemd hides these from the service (ProtectHome=yes): an executable there cannot start.
HIDDEN_ROOTS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))


def _absolute(name: str, value: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or any(c.isspace() for c in value):
        raise UnitError(f"{name}: '{value}' must be an absolute path without spaces or '..'")
    return path


def _under(name: str, value: str, root: str) -> str:
    """The part of *value* below *root*: systemd's StateDirectory=/ConfigurationDirectory=
    take names relative to /var/lib and /etc, and only there does systemd create and own them."""
    path = _absolute(name, value)
    base = PurePosixPath(root)
    if path == base or base not in path.parents:
        raise UnitError(f"{name}: '{value}' must be a directory below {root}/")
    return str(path.relative_to(base))


def placeholders(settings: Settings) -> dict[str, str]:
    """Settings → the `@NAME@` values of the templates; UnitError names a bad setting."""
    exe = _absolute("executable", settings.executable)
    for hidden in HIDDEN_ROOTS:
        if exe == hidden or hidden in exe.parents:
            raise UnitError(
                f"executable: '{exe}' is under {hidden}, which ProtectHome=yes hides from the "
                "services; install edgefleet elsewhere (e.g. a venv in /opt/edgefleet)"
            )
    if not settings.content_paths:
        raise UnitError("content_paths: at least one content disk path is needed")
    content = [str(_absolute("content_paths", p)) for p in settings.content_paths]
    for name in ("user", "group"):
        value = getattr(settings, name)
        if not USER_RE.fullmatch(value) or value == "root":
            raise UnitError(f"{name}: '{value}' is not a valid non-root system {name} name")
    for name in ("fill_at", "plan_at"):
        if not HHMM_RE.fullmatch(getattr(settings, name)):
            raise UnitError(f"{name}: '{getattr(settings, name)}' is not a HH:MM local time")
    if not 0 < settings.drain_timeout_s <= 3600:
        raise UnitError("drain_timeout_s: must be in (0, 3600]")
    if not 0 < settings.fill_window_s <= 24 * 3600:
        raise UnitError("fill_window_s: must be in (0, 86400]")
    # The supervisor waits drain_timeout_s + 5 s before it SIGKILLs its workers itself
    # (edge/supervisor.py); systemd's own SIGKILL must come after that, never during a drain.
    timeout_stop_s = int(settings.drain_timeout_s + 0.999) + 5 + 10
    return {
        "EDGEFLEET": str(exe),
        "CONFIG_DIR": str(_absolute("config_dir", settings.config_dir)),
        "CONFIG_DIRECTORY": _under("config_dir", settings.config_dir, "/etc"),
        "STATE_DIR": str(_absolute("state_dir", settings.state_dir)),
        "STATE_DIRECTORY": _under("state_dir", settings.state_dir, "/var/lib"),
        "CONTENT_PATHS": " ".join(content),
        "USER": settings.user,
        "GROUP": settings.group,
        "DRAIN_TIMEOUT_S": f"{settings.drain_timeout_s:g}",
        "TIMEOUT_STOP_SEC": f"{timeout_stop_s}s",
        "FILL_AT": settings.fill_at,
        "FILL_WINDOW_S": f"{settings.fill_window_s:g}",
        # The agent stops by itself at the window's end; an hour more bounds a hung run.
        "FILL_RUNTIME_MAX_SEC": f"{int(settings.fill_window_s) + 3600}s",
        "PLAN_AT": settings.plan_at,
    }


def render(name: str, template: str, values: Mapping[str, str]) -> str:
    """Substitute every `@NAME@` of *template*; UnitError names an unknown placeholder's line."""

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    out = []
    for lineno, line in enumerate(template.splitlines(keepends=True), 1):
        for key in PLACEHOLDER_RE.findall(line):
            if key not in values:
                raise UnitError(f"{name}:{lineno}: unknown placeholder @{key}@")
        out.append(PLACEHOLDER_RE.sub(substitute, line))
    return "".join(out)


def render_all(template_dir: Path, settings: Settings) -> dict[str, str]:
    """Every unit's file name → its rendered text, read from *template_dir*."""
    values = placeholders(settings)
    units = {}
    for name in UNITS:
        path = template_dir / name
        try:
            template = path.read_text()
        except OSError as exc:
            raise UnitError(f"{path}: cannot read the template: {exc.strerror}") from None
        units[name] = render(name, template, values)
        if name.endswith(".service"):
            problems = missing_hardening(units[name])
            if problems:
                raise UnitError(f"{path}: weaker than the policy: {'; '.join(problems)}")
    return units


def default_templates() -> Path:
    """deploy/systemd/ of a source checkout (or editable install), else the installed data
    files (share/edgefleet/systemd, pyproject.toml's data-files)."""
    candidates = [
        Path(__file__).resolve().parent.parent / "systemd",
        Path(sys.prefix) / "share" / "edgefleet" / "systemd",
    ]
    for candidate in candidates:
        if (candidate / SERVICES[0]).exists():
            return candidate
    return candidates[0]
