"""The options of `python -m bench.hostile` (argparse) and the attack names."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

DESCRIPTION: Final = (
    "Hostile clients against one edge while a normal client measures its latency (issue 7)."
)
ATTACKS: Final = ("slowloris", "slow-read", "range-abuse", "idle", "all")


@dataclass(frozen=True)
class Options:
    """What to run, from the command line."""

    duration_s: float
    ramp_s: float
    idle: int
    slowloris: int
    slow_read: int
    range_conns: int
    rate: int
    file_mib: int
    workers: int
    tool: str  # auto, slowhttptest, python
    p99_floor_ms: float
    rss_bound_mib: float
    attacks: tuple[str, ...]
    seed: int
    normal_rate: float = 200.0  # requests/s of the normal client; 0: back to back
    attacker_cpu: float = 25.0  # % of one core for all attackers (a CPU cgroup); 0: uncapped
    rounds: int = 1  # the whole sequence (unloaded, then each attack) this many times


def parse_args(argv: Sequence[str]) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.hostile", description=DESCRIPTION)
    p.add_argument("--duration-per-attack", type=float, default=15.0, help="seconds (15)")
    p.add_argument("--ramp", type=float, default=6.0, help="seconds to build each attack (6)")
    p.add_argument("--idle", type=int, default=5000, help="idle connections held (5000)")
    p.add_argument("--slowloris", type=int, default=1000, help="slowloris connections (1000)")
    p.add_argument("--slow-read", type=int, default=500, help="slow-read connections (500)")
    p.add_argument("--range-conns", type=int, default=1000, help="range-abuse connections (1000)")
    p.add_argument("--rate", type=int, default=200, help="attack connections opened/s (200)")
    p.add_argument("--file-mib", type=int, default=32, help="size of the served file (32)")
    p.add_argument("--workers", type=int, default=2, help="edge workers (2)")
    p.add_argument("--tool", choices=("auto", "slowhttptest", "python"), default="auto")
    p.add_argument("--p99-floor-ms", type=float, default=0.0, help="added to 2x unloaded (0)")
    p.add_argument("--rss-bound-mib", type=float, default=128.0, help="RSS over unloaded (128)")
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset")
    p.add_argument(
        "--normal-rate", type=float, default=200.0, help="normal requests/s, 0: closed loop (200)"
    )
    p.add_argument(
        "--attacker-cpu",
        type=float,
        default=25.0,
        help="CPU cap of all attackers together, %% of one core, in an idle-class cgroup"
        " (25; 0: none)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat unloaded + attacks; each attack is judged against its own round's"
        " unloaded phase, the verdict on the median round (1)",
    )
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    attacks = tuple(x.strip() for x in a.attacks.split(",") if x.strip())
    bad = [x for x in attacks if x not in ATTACKS]
    if bad:
        p.error(f"--attacks: unknown {bad} (choose from {', '.join(ATTACKS)})")
    for name in ("duration_per_attack", "idle", "slowloris", "slow_read", "range_conns", "rate"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if a.normal_rate < 0:
        p.error("--normal-rate must be 0 or more")
    if not (a.attacker_cpu == 0 or 10 <= a.attacker_cpu <= 100 * len(os.sched_getaffinity(0))):
        # The kernel refuses a quota under 1 ms of the 10 ms period.
        p.error("--attacker-cpu must be 0 (no cap) or 10 .. 100 x cores")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.file_mib < 1 or a.workers < 1:
        p.error("--file-mib and --workers must be at least 1")
    return Options(
        duration_s=a.duration_per_attack,
        ramp_s=a.ramp,
        idle=a.idle,
        slowloris=a.slowloris,
        slow_read=a.slow_read,
        range_conns=a.range_conns,
        rate=a.rate,
        file_mib=a.file_mib,
        workers=a.workers,
        tool=a.tool,
        p99_floor_ms=a.p99_floor_ms,
        rss_bound_mib=a.rss_bound_mib,
        attacks=attacks,
        seed=a.seed,
        normal_rate=a.normal_rate,
        attacker_cpu=a.attacker_cpu,
        rounds=a.rounds,
    )
