"""`python -m bench.chaos` (`make chaos`): the options, then one drill on a fresh fleet; exit 0
on PASS, 1 on FAIL (bench/chaos/__init__.py describes the drill)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench.chaos.drill import DISK_FAULT_ENV, Drill
from bench.chaos.fleet import ChaosFleet
from bench.chaos.report import report_doc, report_text, write_results
from bench.chaos.schedule import KINDS, make_schedule
from bench.player import PlayerConfig
from bench.report import RESULTS_DIR

DESCRIPTION: Final = (
    "The chaos drill: break a local fleet on purpose under playback load, report what viewers felt."
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options; a bad value exits 2 with a message naming the option."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=DESCRIPTION)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (180)")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (random)")
    parser.add_argument("--users", type=int, default=12, help="concurrent viewers (12)")
    parser.add_argument("--out", type=Path, help="results directory (bench/results/chaos-<UTC>)")
    parser.add_argument(
        "--faults", default=",".join(KINDS), help="comma-separated fault kinds (all)"
    )
    parser.add_argument("--hold-scale", type=float, default=1.0, help="scale every fault's hold")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds between faults (6)")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="heartbeat interval s (0.5)")
    parser.add_argument("--snapshot", type=float, default=0.5, help="snapshot interval s (0.5)")
    parser.add_argument("--session", type=float, default=30.0, help="media s per session (30)")
    parser.add_argument("--bitrate", type=float, default=4e6, help="video bits/s (4e6)")
    parser.add_argument("--timeout", type=float, default=3.0, help="request timeout s (3)")
    parser.add_argument(
        "--disk-fault",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get(DISK_FAULT_ENV, "1") == "1",
        help=f"inject disk-fail through the edges' fault-disks hook (default on; "
        f"{DISK_FAULT_ENV}=0 or --no-disk-fault skips it)",
    )
    parser.add_argument("--work", type=Path, help="the fleet's directory (a temporary one)")
    args = parser.parse_args(argv)
    if not 10 <= args.duration <= 3600:
        parser.error(f"--duration: {args.duration:g} is not 10..3600 s")
    if not 1 <= args.users <= 500:
        parser.error(f"--users: {args.users} is not 1..500")
    for name in ("hold_scale", "heartbeat", "snapshot", "timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}: must be > 0")
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        parser.error(f"--faults: unknown fault {bad[0]!r} (known: {', '.join(KINDS)})")
    args.kinds = kinds
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    try:
        args.player = PlayerConfig(
            bitrate_bps=args.bitrate, session_s=args.session, segment_bytes=1 << 20,
            startup_buffer_s=2.0, buffer_target_s=10.0, max_urls=3,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the drill (and its fleet) like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run one drill; 0 on PASS, 1 on FAIL."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"chaos-{started}"
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        fleet = ChaosFleet(
            work, heartbeat_s=args.heartbeat, snapshot_s=args.snapshot, seed=args.seed
        )
        bound = 3 * args.heartbeat + args.snapshot
        print(f"chaos drill: seed {args.seed}, {args.users} viewers, {args.duration:g} s")
        print(f"fleet in {work}")
        try:
            fleet.start()
            faults = make_schedule(
                args.seed, args.duration, fleet.edges, fleet.steering, args.kinds,
                settle_s=args.settle, hold_scale=args.hold_scale,
            )  # fmt: skip
            for f in faults:
                print(f"  at {f.at_s:6.1f} s  {f.kind:<16} {f.target:<11} for {f.hold_s:g} s")
            drill = Drill(
                fleet, faults, args.users, args.duration, args.player, args.timeout,
                args.disk_fault, args.seed,
            )  # fmt: skip
            asyncio.run(drill.run())
        except KeyboardInterrupt:
            print("chaos drill: interrupted")
            return 1
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            # The fleet did not come up: no drill to report (the logs say why).
            print(f"chaos drill: {exc}", file=sys.stderr)
            return 1
        finally:
            fleet.stop()
        doc = report_doc(drill, bound, started)
        write_results(drill, doc, out)
    print()
    print(report_text(doc), end="")
    print(f"\nresults: {out}")
    return 0 if doc["pass"] else 1
