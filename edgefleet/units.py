"""`edgefleet units`: render, verify and install the hardened systemd units (systemd/).

The templates under `systemd/` carry `@NAME@` placeholders for what differs between boxes: the
installed `edgefleet` executable, the config and state directories, the content disks, the
service user, the timer times. Rendering is a pure function (settings in, unit texts out) that
refuses values systemd would misread; `verify` and `security` wrap `systemd-analyze` (Debian
package systemd, 252+) and `install` writes the units where systemd reads them.

    edgefleet units render --out DIR        write the rendered units to DIR
    edgefleet units verify DIR              systemd-analyze verify: any warning fails
    edgefleet units security DIR            exposure score of every unit (offline)
    edgefleet units install [--create-user] render into /etc/systemd/system, print next steps
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SERVICES = (
    "edgefleet-edge.service",
    "edgefleet-control.service",
    "edgefleet-steering.service",
    "edgefleet-fill.service",
    "edgefleet-planner.service",
)
TIMERS = ("edgefleet-fill.timer", "edgefleet-planner.timer")
UNITS = SERVICES + TIMERS

# Every service unit must say these (name → required value; None: any value). A template
# edited into something weaker fails `verify`, not only a reviewer's eye.
REQUIRED_HARDENING: Mapping[str, str | None] = {
    "User": None,
    "UMask": "0027",
    "CapabilityBoundingSet": "",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
}

# Exposure above this fails `edgefleet units security`. systemd's scale runs from 0 to 10 and
# labels 1.0-4.9 "OK" (below: "SAFE"); a bound inside "OK" catches a weakened unit sooner.
MAX_EXPOSURE = 2.0

PLACEHOLDER_RE = re.compile(r"@([A-Z_]+)@")
HHMM_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\S+)")
# systemd hides these from the service (ProtectHome=yes): an executable there cannot start.
HIDDEN_ROOTS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))


class UnitError(Exception):
    """A setting that cannot be rendered, or a unit that fails verification; says which."""


@dataclass(frozen=True)
class Settings:
    """What the rendered units point at on this box."""

    executable: str  # the installed `edgefleet` console script
    config_dir: str = "/etc/edgefleet"
    state_dir: str = "/var/lib/edgefleet"
    # Writable for the edge and the fill agent only: the disk mount points or their parent
    # (mounts below a ReadWritePaths entry are writable too).
    content_paths: tuple[str, ...] = ("/srv/edgefleet",)
    user: str = "edgefleet"
    group: str = "edgefleet"
    drain_timeout_s: float = 30.0  # the edge config's drain_timeout_s
    fill_at: str = "02:00"  # the fill config's window_start (local time)
    fill_window_s: float = 12 * 3600.0  # the fill config's window_length_s
    plan_at: str = "01:00"  # the planner runs daily at this local time, before the fill


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


def directives(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's `[Section]` → [(key, value)] in order; comments and blanks dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
        elif "=" in stripped and current is not None:
            key, _, value = stripped.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def missing_hardening(text: str) -> list[str]:
    """The required hardening lines a service unit lacks or weakens (empty: all present).

    The first assignment of a key is checked: it is the one that sets the base value (later
    SystemCallFilter=~… lines only subtract).
    """
    service = directives(text).get("Service", [])
    first: dict[str, str] = {}
    for key, value in service:
        first.setdefault(key, value)
    problems = []
    for key, want in REQUIRED_HARDENING.items():
        if key not in first:
            problems.append(f"{key}= is missing")
        elif want is not None and first[key] != want:
            problems.append(f"{key}={first[key]} (want {key}={want})")
    if first.get("User") == "root":
        problems.append("User=root")
    return problems


def parse_syscall_groups(text: str) -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter` output → group name → members (syscalls or @groups)."""
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("@"):
            current = groups.setdefault(stripped, [])
        elif not stripped:
            current = None
        elif current is not None and not stripped.startswith("#"):
            current.append(stripped)
    return groups


def expand_syscalls(groups: Mapping[str, Sequence[str]], items: Iterable[str]) -> set[str]:
    """The system calls *items* name, groups expanded recursively; UnitError on an unknown
    group (a typo would otherwise silently allow or deny nothing)."""
    out: set[str] = set()
    pending = list(items)
    seen: set[str] = set()
    while pending:
        item = pending.pop()
        if not item.startswith("@"):
            out.add(item)
        elif item not in seen:
            if item not in groups:
                raise UnitError(f"unknown system call group {item}")
            seen.add(item)
            pending.extend(groups[item])
    return out


def allowed_syscalls(unit_text: str, groups: Mapping[str, Sequence[str]]) -> set[str]:
    """What a service's SystemCallFilter= lines allow, as systemd(5) combines them: the first
    line without `~` starts an allow list, later `~` lines take calls out of it."""
    allow: set[str] = set()
    deny: set[str] = set()
    for key, value in directives(unit_text).get("Service", []):
        if key != "SystemCallFilter" or not value:
            continue
        if value.startswith("~"):
            deny |= expand_syscalls(groups, value[1:].split())
        else:
            allow |= expand_syscalls(groups, value.split())
    if not allow:
        raise UnitError("no SystemCallFilter= allow list in the unit")
    return allow - deny


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


def unit_files(directory: Path) -> list[Path]:
    """The unit files of *directory* (services and timers), sorted."""
    return sorted(p for p in directory.iterdir() if p.suffix in (".service", ".timer"))


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise UnitError("systemd-analyze not found (Debian: apt-get install systemd)")
    return tool


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


def policy_problems(unit_texts: Mapping[str, str]) -> list[str]:
    """What `systemd-analyze verify` lets pass but we do not: a service weaker than the
    hardening policy, and a timer whose service is not among the units (systemd only loads
    it as "not found" when the timer fires)."""
    problems: list[str] = []
    for name, text in sorted(unit_texts.items()):
        if name.endswith(".service"):
            problems.extend(f"{name}: {p}" for p in missing_hardening(text))
        elif name.endswith(".timer"):
            timer = directives(text).get("Timer", [])
            target = dict(timer).get("Unit", name.removesuffix(".timer") + ".service")
            if target not in unit_texts:
                problems.append(f"{name}: Unit={target} is not among the units")
    return problems


def parse_exposure(output: str) -> tuple[float, str]:
    """(score, label) from `systemd-analyze security` output; UnitError when absent."""
    match = EXPOSURE_RE.search(output)
    if match is None:
        raise UnitError(f"no exposure level in systemd-analyze output: {output[-300:]!r}")
    return float(match.group(1)), match.group(2)


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


def _exists(settings: Settings) -> tuple[bool, bool]:
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


def _create_user(settings: Settings) -> None:
    """Create the service group and user unless they exist."""
    for exists, command in zip(_exists(settings), user_commands(settings), strict=True):
        if exists:
            continue
        try:
            subprocess.run(command, check=True, timeout=60, capture_output=True, text=True)
        except FileNotFoundError:
            raise UnitError(f"{command[0]} not found (Debian: apt-get install passwd)") from None
        except subprocess.CalledProcessError as exc:
            raise UnitError(f"{' '.join(command)}: {exc.stderr.strip()}") from None


def default_executable() -> str:
    """The `edgefleet` script next to this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "edgefleet"
    if beside.exists():
        return str(beside)
    return shutil.which("edgefleet") or str(beside)


def default_templates() -> Path:
    """systemd/ of a source checkout (or editable install), else the installed data files."""
    candidates = [
        Path(__file__).resolve().parent.parent / "systemd",
        Path(sys.prefix) / "share" / "edgefleet" / "systemd",
    ]
    for candidate in candidates:
        if (candidate / SERVICES[0]).exists():
            return candidate
    return candidates[0]


def _add_render_options(p: argparse.ArgumentParser) -> None:
    d = Settings(executable="")
    p.add_argument("--templates", type=Path, help="template directory (default: systemd/)")
    p.add_argument(
        "--executable", help="the installed edgefleet script (default: next to this Python)"
    )
    p.add_argument("--prefix", help="installation prefix: the executable is PREFIX/bin/edgefleet")
    p.add_argument("--config-dir", default=d.config_dir, help="below /etc (%(default)s)")
    p.add_argument("--state-dir", default=d.state_dir, help="below /var/lib (%(default)s)")
    p.add_argument(
        "--content-path",
        action="append",
        dest="content_paths",
        metavar="DIR",
        help="writable content disk path for edge and fill (repeat; default /srv/edgefleet)",
    )
    p.add_argument("--user", default=d.user)
    p.add_argument("--group", default=d.group)
    p.add_argument("--drain-timeout-s", type=float, default=d.drain_timeout_s)
    p.add_argument("--fill-at", default=d.fill_at, help="fill window start, HH:MM local")
    p.add_argument("--fill-window-s", type=float, default=d.fill_window_s)
    p.add_argument("--plan-at", default=d.plan_at, help="planner start, HH:MM local")


def _settings(args: argparse.Namespace) -> Settings:
    if args.executable and args.prefix:
        raise UnitError("--executable and --prefix: give one of them")
    if args.prefix:
        executable = str(PurePosixPath(args.prefix) / "bin" / "edgefleet")
    else:
        executable = args.executable or default_executable()
    return Settings(
        executable=executable,
        config_dir=args.config_dir,
        state_dir=args.state_dir,
        content_paths=tuple(args.content_paths or Settings(executable="").content_paths),
        user=args.user,
        group=args.group,
        drain_timeout_s=args.drain_timeout_s,
        fill_at=args.fill_at,
        fill_window_s=args.fill_window_s,
        plan_at=args.plan_at,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet units", description="Render, verify and install the systemd units."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="render the units into a directory")
    _add_render_options(p)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p = sub.add_parser("install", help="render into /etc/systemd/system (or --out)")
    _add_render_options(p)
    p.add_argument("--out", type=Path, default=Path("/etc/systemd/system"))
    p.add_argument(
        "--create-user", action="store_true", help="create the system user/group if missing"
    )
    p = sub.add_parser("verify", help="systemd-analyze verify every unit; fails on any warning")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("security", help="offline exposure score of every service unit")
    p.add_argument("dir", type=Path)
    p.add_argument("--max", type=float, default=MAX_EXPOSURE, help="fail above (%(default)s)")
    return parser


def _print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """`edgefleet units …`; the exit code (0 ok, 1 a check failed, 2 bad usage)."""
    args = _parser().parse_args(argv)
    try:
        if args.command in ("render", "install"):
            settings = _settings(args)
            units = render_all(args.templates or default_templates(), settings)
            if args.command == "install" and args.create_user:
                _create_user(settings)
            written = write_units(units, args.out)
            if args.command == "install":
                print(next_steps(args.out, all(_exists(settings)), settings), end="")
            else:
                for path in written:
                    print(path)
            return 0
        paths = unit_files(args.dir)
        if not paths:
            raise UnitError(f"{args.dir}: no .service or .timer files")
        if args.command == "verify":
            problems = verify(paths)
            _print_lines(problems)
            print(f"edgefleet units: {len(paths)} units, {len(problems)} problems")
            return 1 if problems else 0
        worst = 0.0
        for path in paths:
            if path.suffix != ".service":
                continue
            score, label = exposure(path)
            worst = max(worst, score)
            print(f"{path.name:<28} {score:4.1f} {label}")
        return 1 if worst > args.max else 0
    except UnitError as exc:
        print(f"edgefleet units: {exc}", file=sys.stderr)
        return 2 if args.command in ("render", "install") else 1
    except OSError as exc:
        print(f"edgefleet units: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
