"""`edgefleet fill <command>`: `plan` (the nightly planner) and `run` (the appliance's agent)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from edgefleet.fleet import AuthError


def add_plan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `plan` sub-command to an argparse sub-parser collection."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="plan tomorrow's placement and write/publish one manifest per appliance",
        description="Forecast popularity per region, place files per site, write manifests "
        "and the plan report (--out) and/or publish them to control (--publish).",
    )
    src = p.add_argument_group("catalog")
    src.add_argument("--catalog", metavar="FILE", help="catalog records (.csv or .jsonl)")
    src.add_argument("--catalog-index", metavar="DIR", help="an origin appliance's LMDB index")
    pop = p.add_argument_group("popularity")
    pop.add_argument("--popularity", metavar="FILE", nargs="+", default=[], help="record files")
    pop.add_argument(
        "--popularity-from-control", action="store_true", help="GET /v1/popularity from control"
    )
    fleet = p.add_argument_group("fleet")
    fleet.add_argument("--fleet", metavar="FILE", help="a GET /v1/fleet document (offline)")
    fleet.add_argument("--control", metavar="URL", help="control's base URL")
    fleet.add_argument("--secret-file", metavar="FILE", help="the fleet secret (admin token)")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="write report.json and manifests/*.json")
    out.add_argument("--publish", action="store_true", help="PUT /v1/manifests to control")
    out.add_argument("--generation", type=int, help="default: the unix time in seconds")
    knobs = p.add_argument_group("model")
    knobs.add_argument("--fill-rate-bps", type=float, default=1.2e9, help="bits/s per appliance")
    knobs.add_argument("--fill-window-hours", type=float, default=12.0)
    knobs.add_argument("--reserve-fraction", type=float, default=0.0, help="of each capacity")
    knobs.add_argument("--half-life-days", type=float, default=3.0)
    knobs.add_argument("--prior-median-fraction", type=float, default=0.5)
    knobs.add_argument("--min-copies", type=int, default=1)
    knobs.add_argument("--max-copies", type=int)
    knobs.add_argument("--popularity-per-copy", type=float, default=math.inf)
    knobs.add_argument("--hysteresis", type=float, default=1.1)
    knobs.add_argument("--max-sources", type=int, default=8)
    return p


def plan_main(args: argparse.Namespace) -> int:
    """Run `edgefleet fill plan`; 2 with one line on stderr for bad input."""
    from edgefleet.fleet import FieldError
    from edgefleet.records import RecordError
    from fill.planner_io import PlanInputError, PlanOptions, run_plan

    try:
        opts = PlanOptions(
            catalog=args.catalog,
            catalog_index=args.catalog_index,
            popularity=tuple(args.popularity),
            popularity_from_control=args.popularity_from_control,
            fleet=args.fleet,
            control=args.control,
            secret_file=args.secret_file,
            out=args.out,
            publish=args.publish,
            generation=args.generation,
            fill_rate_bps=args.fill_rate_bps,
            fill_window_hours=args.fill_window_hours,
            reserve_fraction=args.reserve_fraction,
            half_life_days=args.half_life_days,
            prior_median_fraction=args.prior_median_fraction,
            min_copies=args.min_copies,
            max_copies=args.max_copies,
            popularity_per_copy=args.popularity_per_copy,
            hysteresis=args.hysteresis,
            max_sources=args.max_sources,
        )
        run_plan(opts)
    except (PlanInputError, RecordError, FieldError, ValueError, AuthError) as exc:
        print(f"edgefleet fill plan: {exc}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefleet fill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_plan_parser(sub)
    try:
        from fill.cli_run import add_run_parser
    except ImportError:  # the agent's CLI is optional for planning hosts
        pass
    else:
        add_run_parser(sub)
    check = sub.add_parser(
        "check-config", help="validate a fill agent config (and the edge config it names)"
    )
    check.add_argument("config")
    return parser


def check_main(path: str) -> int:
    """`edgefleet fill check-config FILE`: load and validate, start nothing."""
    from edgefleet.config import ConfigError
    from fill import agentconfig

    try:
        settings = agentconfig.load(path)
    except ConfigError as exc:
        print(f"edgefleet fill check-config: {exc}", file=sys.stderr)
        return 2
    print(
        f"{path}: ok (appliance {settings.appliance}, control {settings.control_url or '-'}, "
        f"edge config {settings.fill.edge_config})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one `edgefleet fill` command."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "plan":
        return plan_main(args)
    if args.command == "check-config":
        return check_main(args.config)
    from fill.cli_run import run_main

    code: int = run_main(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
