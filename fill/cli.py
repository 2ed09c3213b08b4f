"""`edgefleet fill <command>`: `plan` (the nightly planner) and `run` (the appliance's agent)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgefleet.fleet import AuthError


def add_plan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `plan` sub-command to an argparse sub-parser collection.

    Every option defaults to None ("not given"): the value then comes from --config, else
    from the defaults of fill/planner/config.py (shown in the help)."""
    from fill.planner.config import Model

    m = Model()
    p: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="plan tomorrow's placement and write/publish one manifest per appliance",
        description="Forecast popularity per region, place files per site, write manifests "
        "and the plan report (--out) and/or publish them to control (--publish). Options "
        "override the --config file's keys (examples/planner.toml).",
    )
    p.add_argument("--config", "-c", metavar="FILE", help="a planner TOML file")
    src = p.add_argument_group("catalog ([inputs])")
    src.add_argument("--catalog", metavar="FILE", help="catalog records (.csv or .jsonl)")
    src.add_argument("--catalog-index", metavar="DIR", help="an origin appliance's LMDB index")
    pop = p.add_argument_group("popularity ([inputs])")
    pop.add_argument("--popularity", metavar="FILE", nargs="+", help="record files")
    pop.add_argument(
        "--popularity-from-control",
        action=argparse.BooleanOptionalAction,
        help="GET /v1/popularity from control",
    )
    fleet = p.add_argument_group("fleet ([fleet])")
    fleet.add_argument("--fleet", metavar="FILE", help="a GET /v1/fleet document (offline)")
    fleet.add_argument("--control", metavar="URL", help="control's base URL")
    fleet.add_argument("--secret-file", metavar="FILE", help="the fleet secret (admin token)")
    out = p.add_argument_group("output ([output])")
    out.add_argument("--out", metavar="DIR", help="write report.json and manifests/*.json")
    out.add_argument(
        "--publish", action=argparse.BooleanOptionalAction, help="PUT /v1/manifests to control"
    )
    out.add_argument("--generation", type=int, help="default: the unix time in seconds")
    knobs = p.add_argument_group("model ([model])")
    knobs.add_argument(
        "--fill-rate-bps", type=float, help=f"bits/s per appliance (default {m.fill_rate_bps:g})"
    )
    knobs.add_argument("--fill-window-hours", type=float, help=f"default {m.fill_window_hours}")
    knobs.add_argument(
        "--reserve-fraction", type=float, help=f"of each capacity (default {m.reserve_fraction})"
    )
    knobs.add_argument("--half-life-days", type=float, help=f"default {m.half_life_days}")
    knobs.add_argument(
        "--prior-median-fraction", type=float, help=f"default {m.prior_median_fraction}"
    )
    knobs.add_argument("--min-copies", type=int, help=f"default {m.min_copies}")
    knobs.add_argument("--max-copies", type=int, help="default: no cap")
    knobs.add_argument("--popularity-per-copy", type=float, help="default: inf (min copies each)")
    knobs.add_argument("--hysteresis", type=float, help=f"default {m.hysteresis}")
    knobs.add_argument("--max-sources", type=int, help=f"default {m.max_sources}")
    return p


def plan_main(args: argparse.Namespace) -> int:
    """Run `edgefleet fill plan`; 2 with one line on stderr for bad input."""
    from edgefleet.fleet import FieldError
    from edgefleet.records import RecordError
    from fill.planner import config as planconfig
    from fill.planner.run import PlanInputError, run_plan

    try:
        # ConfigError is a ValueError: a bad key (with its line) or a bad option.
        conf = planconfig.load(args.config, vars(args))
        run_plan(planconfig.plan_options(conf, args.generation))
    except (PlanInputError, RecordError, FieldError, ValueError, AuthError) as exc:
        print(f"edgefleet fill plan: {exc}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefleet fill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_plan_parser(sub)
    try:
        from fill.agent.cli import add_run_parser
    except ImportError:  # the agent's CLI is optional for planning hosts
        pass
    else:
        add_run_parser(sub)
    check = sub.add_parser(
        "check-config",
        help="validate a fill agent config (and the edge config it names), or with --planner "
        "a planner config",
    )
    check.add_argument(
        "--planner", action="store_true", help="FILE is a planner config (fill plan --config)"
    )
    check.add_argument("config", metavar="FILE")
    return parser


def check_main(path: str, planner: bool = False) -> int:
    """`edgefleet fill check-config [--planner] FILE`: load and validate, start nothing."""
    from edgefleet.config import ConfigError
    from fill.agent import config as agentconfig

    if planner:
        return check_planner(path)

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


def check_planner(path: str) -> int:
    """`edgefleet fill check-config --planner FILE`: the keys, and that the file alone names
    a complete run (a catalog, popularity, a fleet); its input files are not read."""
    from edgefleet.config import ConfigError
    from fill.planner import config as planconfig
    from fill.planner.run import PlanInputError, check_options

    try:
        conf = planconfig.load(path)
        check_options(planconfig.plan_options(conf))
    except ConfigError as exc:  # names the file (and line) itself
        print(f"edgefleet fill check-config: {exc}", file=sys.stderr)
        return 2
    except PlanInputError as exc:
        print(f"edgefleet fill check-config: {path}: {exc}", file=sys.stderr)
        return 2
    i, f, o = conf.inputs, conf.fleet, conf.output
    fleet = f.document or f.control_url
    outputs = [x for x, on in ((o.out_dir, bool(o.out_dir)), ("publish", o.publish)) if on]
    print(
        f"{path}: ok (catalog {i.catalog or i.catalog_index}, fleet {fleet}, "
        f"output {', '.join(outputs) or '-'})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one `edgefleet fill` command."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "plan":
        return plan_main(args)
    if args.command == "check-config":
        return check_main(args.config, args.planner)
    from fill.agent.cli import run_main

    code: int = run_main(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
