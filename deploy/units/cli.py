"""`edgefleet units render|verify|security|install` (deploy/units/__init__.py describes them);
the exit code: 0 ok, 1 a check failed, 2 bad usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from deploy.units.analyze import exposure, unit_files, verify
from deploy.units.hardening import MAX_EXPOSURE
from deploy.units.install import (
    accounts_exist,
    create_user,
    default_executable,
    next_steps,
    write_units,
)
from deploy.units.render import default_templates, render_all
from deploy.units.settings import Settings, UnitError


def _add_render_options(p: argparse.ArgumentParser) -> None:
    d = Settings(executable="")
    p.add_argument("--templates", type=Path, help="template directory (default: deploy/systemd/)")
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
                create_user(settings)
            written = write_units(units, args.out)
            if args.command == "install":
                print(next_steps(args.out, all(accounts_exist(settings)), settings), end="")
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
