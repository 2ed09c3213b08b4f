"""Steering benchmark: load balance, snapshot build, and HTTP throughput with wrk.

    python -m bench.steering [--requests 1000000] [--duration 10] [--connections 4,16]

(a) Load balance, a pure simulation of the ranking code (steering.ranking.steer and the
    LoadTracker, no HTTP): Zipf(1.0) requests over --files files to one site of 10 equal
    appliances holding every file, arriving at 10,000 req/s of simulated time (load half-life
    5 s). For plain rendezvous hashing (no bound) and for bounded load (--bound), the max/mean
    of the requests each appliance received, the worst max/mean of the decayed load seen at
    any 10,000-request mark after the first 50,000, and the share of requests sent to each
    file's top-ranked (plain HRW) appliance. Both modes replay the same request sequence.
(b) Snapshot build: bench/steering_fleet.py's 100 sites / 1,000 appliances / 100,000 prefixes
    / 1,000,000 content ids, decoded (steering.decode) and indexed (steering.index) in a fresh
    child process, as steering.snapshot.decode does: seconds, and RSS (held after dropping the
    document, and peak).
(c) Throughput: `edgefleet steering serve` (one process, uvloop) against a fake control
    serving that snapshot (a thread of this process, ETag/304), loaded by wrk -t1 with
    bench/wrk_steer.lua: POST /v1/steer, one content id, random client addresses inside the
    snapshot's prefixes. wrk shares the 2 cores with the server: read ratios, not absolutes.

Loopback only. Results go to bench/results/steering-<UTC timestamp>.md.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psutil

from bench.steering_fleet import FleetSpec, content_id, make_fleet
from bench.steering_wrk import throughput
from steering.decode import decode_snapshot
from steering.index import build_index
from steering.ranking import LoadTracker, hrw_score, steer
from steering.snapshot import gc_paused

HERE: Final = Path(__file__).resolve().parent
RESULTS: Final = HERE / "results"
MIB: Final = 1 << 20
SIM_RATE_PER_S: Final = 10_000.0
SIM_APPLIANCES: Final = 10
DESCRIPTION: Final = "Steering benchmark: load balance, snapshot build, HTTP throughput (wrk)."


# -- (a) load balance -------------------------------------------------------------------------


def zipf_ranks(files: int, requests: int, rng: random.Random) -> list[int]:
    """*requests* file ranks (0-based) drawn with probability ∝ 1/(rank+1)."""
    cumulative = list(itertools.accumulate(1.0 / k for k in range(1, files + 1)))
    total = cumulative[-1]
    last = files - 1
    return [
        min(bisect.bisect_left(cumulative, rng.random() * total), last) for _ in range(requests)
    ]


def simulate(files: int, requests: int, bound: float, seed: int) -> list[dict[str, Any]]:
    """Plain rendezvous and bounded load over the same Zipf request sequence."""
    holders = list(range(SIM_APPLIANCES))
    index = build_index(
        {
            "version": 1,
            "sites": [{"name": "sim", "prefixes": ["10.0.0.0/8"]}],
            "appliances": [
                {"name": f"a{i}", "site": "sim", "base_url": "http://x", "state": "up"}
                for i in holders
            ],
            "contents": {content_id(i): holders for i in range(files)},
        }
    )
    apps = index.appliances
    ranks = zipf_ranks(files, requests, random.Random(seed))
    tops: dict[int, int] = {}
    results = []
    for mode, b in (("rendezvous", math.inf), ("bounded load", bound)):
        tracker = LoadTracker(half_life_s=5.0)
        counts = [0] * len(apps)
        on_top = 0
        worst = 0.0
        started = time.perf_counter()
        for i, rank in enumerate(ranks):
            cid = content_id(rank)
            now = i / SIM_RATE_PER_S
            chosen = steer(index, tracker, cid, 0, 0, 1, b).appliances[0]
            tracker.record(apps[chosen].name, now)
            counts[chosen] += 1
            top = tops.get(rank)
            if top is None:
                key = cid.encode()
                top = tops[rank] = max(holders, key=lambda j: hrw_score(key, apps[j].seed, 1.0))
            on_top += chosen == top
            if i % 10_000 == 9_999 and i >= 50_000:
                decayed = [tracker.count(a.name, now) for a in apps]
                worst = max(worst, max(decayed) / (sum(decayed) / len(decayed)))
        results.append(
            {
                "mode": mode,
                "max_mean": max(counts) / (sum(counts) / len(counts)),
                "worst_decayed_max_mean": worst,
                "on_top": on_top / len(ranks),
                "seconds": time.perf_counter() - started,
            }
        )
    return results


# -- (b) snapshot build, in a child process ---------------------------------------------------


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_only(path: str) -> None:
    """Child: decode and index the snapshot at *path*; print one JSON line of figures."""
    gc.collect()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    body = Path(path).read_bytes()
    t1 = time.perf_counter()
    with gc_paused():  # as steering.snapshot.decode does
        doc = decode_snapshot(body)
        t2 = time.perf_counter()
        index = build_index(doc)
        t3 = time.perf_counter()
    del doc, body
    gc.collect()
    out = {
        "read_s": t1 - t0,
        "decode_s": t2 - t1,
        "index_s": t3 - t2,
        "rss_start": rss0,
        "rss_held": proc.memory_info().rss,
        "rss_peak": peak_rss(),
        "contents": len(index.contents),
        "prefixes": len(index.prefixes),
    }
    print(json.dumps(out))


def measure_build(snapshot: Path) -> dict[str, Any]:
    """Run build_only in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.steering", "--build-only", str(snapshot)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- report -----------------------------------------------------------------------------------


def markdown(args: argparse.Namespace, report: dict[str, Any]) -> str:
    """The results as Markdown."""
    lines = [
        f"# Steering benchmark ({report['stamp']})",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}",
        "",
    ]
    if "simulation" in report:
        lines += [
            f"## Load balance: {args.requests:,} Zipf(1.0) requests over {args.files:,} files, "
            f"1 site of {SIM_APPLIANCES} equal appliances, bound {args.bound}",
            "",
            "| mode | max/mean (total) | worst max/mean (decayed, any 10k mark) | on top-ranked "
            "| sim s |",
            "|---|---|---|---|---|",
        ]
        for r in report["simulation"]:
            lines.append(
                f"| {r['mode']} | {r['max_mean']:.4f} | {r['worst_decayed_max_mean']:.4f} "
                f"| {r['on_top']:.1%} | {r['seconds']:.0f} |"
            )
        lines.append("")
    if "build" in report:
        b = report["build"]
        lines += [
            f"## Snapshot build ({b['contents']:,} content ids, {b['prefixes']:,} prefixes, "
            f"1,000 appliances, 100 sites; {report['snapshot_mib']:.1f} MiB of JSON)",
            "",
            "| read s | decode s | build_index s | total s | RSS held MiB | peak RSS MiB |",
            "|---|---|---|---|---|---|",
            f"| {b['read_s']:.2f} | {b['decode_s']:.2f} | {b['index_s']:.2f} "
            f"| {b['read_s'] + b['decode_s'] + b['index_s']:.2f} "
            f"| {(b['rss_held'] - b['rss_start']) / MIB:.0f} (process {b['rss_held'] / MIB:.0f}) "
            f"| {b['rss_peak'] / MIB:.0f} |",
            "",
        ]
    if "throughput" in report:
        t = report["throughput"]
        lines += [
            f"## Throughput: wrk -t1, {args.duration}s, POST /v1/steer (1 id, max_urls 3), "
            "one steering process (uvloop)",
            "",
            f"Start to first snapshot served (download + decode + index): {t['ready_s']:.1f} s; "
            f"RSS after loading {t['rss_loaded'] / MIB:.0f} MiB, after the runs "
            f"{t['rss_after'] / MIB:.0f} MiB, peak {t['rss_peak'] / MIB:.0f} MiB. "
            f"Sample answer classes: {t['classes']}. Non-200 responses: {t['non_200']:.0f}. "
            f"Snapshot reload under load: version 2 served {t['reload'].get('reload_s', -1):.1f} s "
            "after control published it (poll interval 1 s), peak RSS after the reload "
            f"{t['reload'].get('rss_peak_after_reload', 0) / MIB:.0f} MiB.",
            "",
            "| connections | req/s | p50 ms | p99 ms | max ms | server CPU µs/req | wrk errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in t["runs"]:
            errors = sum(
                r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors")
            )
            lines.append(
                f"| {r['connections']} | {r['rps']:,.0f} | {r['latency_p50_us'] / 1000:.2f} "
                f"| {r['latency_p99_us'] / 1000:.2f} | {r['latency_max_us'] / 1000:.1f} "
                f"| {r['cpu_us_per_req']:.0f} | {errors + r['timeouts']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(prog="python -m bench.steering", description=DESCRIPTION)
    p.add_argument("--requests", type=int, default=1_000_000, help="simulated requests")
    p.add_argument("--files", type=int, default=1_000_000, help="simulated files")
    p.add_argument("--bound", type=float, default=1.25)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", default="4,8,16", help="wrk connection counts (comma list)")
    p.add_argument("--contents", type=int, default=1_000_000, help="content ids in the snapshot")
    p.add_argument("--skip", default="", help="parts to skip: sim,build,wrk")
    p.add_argument("--build-only", metavar="SNAPSHOT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.build_only:
        build_only(args.build_only)
        return 0
    skip = set(filter(None, args.skip.split(",")))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {
        "stamp": stamp,
        "command": " ".join(["python -m bench.steering", *(argv or sys.argv[1:])]),
        "machine": f"nproc {len(os.sched_getaffinity(0))}, python {platform.python_version()}, "
        f"kernel {platform.release()}",
    }
    if "sim" not in skip:
        print(f"simulating {args.requests:,} requests ...", flush=True)
        report["simulation"] = simulate(args.files, args.requests, args.bound, args.seed)
    if not {"build", "wrk"} <= skip:
        print("generating the snapshot ...", flush=True)
        fleet = make_fleet(FleetSpec(contents=args.contents))
        report["snapshot_mib"] = len(fleet.body) / MIB
        with tempfile.TemporaryDirectory(prefix="bench-steering-") as tmp:
            workdir = Path(tmp)
            snapshot = workdir / "snapshot.json"
            snapshot.write_bytes(fleet.body)
            if "build" not in skip:
                print("measuring the snapshot build ...", flush=True)
                report["build"] = measure_build(snapshot)
            if "wrk" not in skip:
                print("measuring throughput ...", flush=True)
                conns = [int(c) for c in args.connections.split(",")]
                report["throughput"] = throughput(fleet, snapshot, conns, args.duration, workdir)
    text = markdown(args, report)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"steering-{stamp}.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
