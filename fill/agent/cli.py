"""`edgefleet fill run`: one fill of this appliance (see runner.py).

`fill/cli.py` registers it with `add_run_parser(sub)` and dispatches `run` to `run_main`;
`python -m fill.agent.cli ...` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from edgefleet import logs
from edgefleet.config import ConfigError
from fill.agent import config as agentconfig
from fill.agent.runner import EXIT_ERROR, Options, RunError, run


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `run` sub-command to an argparse sub-parser collection."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="fill this appliance from its manifest (within the fill window)",
        description="Fetch this appliance's manifest, reconcile index and disks, apply deletes "
        "and download the adds within the fill window.",
    )
    p.add_argument("--config", "-c", required=True, help="fill agent TOML file")
    p.add_argument(
        "--now", action="store_true", help="ignore the fill window (demo, tests, emergencies)"
    )
    p.add_argument(
        "--manifest",
        metavar="FILE",
        help="use this served-form manifest (JSON) instead of asking control",
    )
    p.add_argument(
        "--rate-cap-bytes-per-s", type=float, help="override rate_cap_bytes_per_s (0: no cap)"
    )
    return p


def run_main(args: argparse.Namespace) -> int:
    """Run `edgefleet fill run` with parsed *args*; the exit code."""
    logs.configure()
    overrides: dict[str, Any] = {}
    if args.rate_cap_bytes_per_s is not None:
        overrides["rate_cap_bytes_per_s"] = args.rate_cap_bytes_per_s
    try:
        settings = agentconfig.load(args.config, overrides)
    except ConfigError as exc:
        print(f"edgefleet fill run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return asyncio.run(run(settings, Options(now=args.now, manifest_file=args.manifest)))
    except RunError as exc:
        print(f"edgefleet fill run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """`python -m fill.agent.cli …`: the run command without the fill CLI around it."""
    parser = argparse.ArgumentParser(prog="edgefleet fill")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    return run_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
