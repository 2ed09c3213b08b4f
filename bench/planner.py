"""The fill planner at fleet scale: time, memory, offload vs bound, churn between two days.

    python -m bench.planner [--files 1000000] [--sites 100] [--appliances 10] [--regions 10]

Synthetic inputs (fill/planner/synth.py): file sizes log-normal, median 600 MB, clipped to
50 MB-5 GB; Zipf-like popularity (exponent 0.9) with a per-region taste; a daily drift of
`--drift` in log-popularity. Each site holds `--site-fraction` (default 30 %) of the catalog's
bytes over its appliances (weights 1 and 1.5 alternating); nightly budget 1.2 Gbps x 12 h.

Steps, each timed on this one process (numpy, no threads: OMP/BLAS are not used):
1. forecast: `--history-days` days of views per region as columns → ColumnForecast;
2. day 0 plan from the day-0 target as inventories (a fleet in steady state), to measure the
   plan a real night runs, and day 1 (one day of drift later) from day 0's holdings: churn;
3. every appliance's manifest as JSON text (fill/planner/manifest_text.py), written one file per
   appliance to `--manifests-dir` (default: a temporary directory, removed afterwards): the time
   to make the texts and the time to write them are reported apart (the disk's, not ours);
4. control's check of one appliance's manifest (decode + `canonical_manifest`), the CPU a
   per-appliance publication costs control, times the fleet.
Peak memory is the process's ru_maxrss. Results go to bench/results/planner-<UTC>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgefleet.manifests import canonical_manifest
from edgefleet.rendezvous import content_hash
from fill.planner.forecast import ColumnForecast, ForecastParams
from fill.planner.manifest_text import manifest_texts
from fill.planner.model import Appliance, PlacementParams
from fill.planner.plan import Catalog, Fleet, FleetPlan, Site, plan_fleet, report_table
from fill.planner.synth import SynthWorld, checksum_of

RESULTS = Path(__file__).resolve().parent / "results"


def peak_mib() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_fleet(regions: list[str], sites: int, per_site: int, capacity: int) -> Fleet:
    site_list, apps = [], []
    for s in range(sites):
        region = regions[s % len(regions)]
        name = f"s{s:03d}"
        site_list.append(Site(name, region, "edge", {}))
        for j in range(per_site):
            apps.append((name, Appliance(f"{name}-a{j}", capacity, 0, 1.0 + 0.5 * (j % 2))))
    site_list.append(Site("origin", regions[0], "origin"))
    apps.append(("origin", Appliance("origin-0", 0)))
    return Fleet(tuple(site_list), tuple(apps))


def holdings(plan: FleetPlan, target: bool) -> dict[str, np.ndarray]:
    out = {}
    for r in plan.sites:
        for j, a in enumerate(r.appliances):
            out[a.name] = np.sort(r.target.target[j] if target else r.outcome.changes[j].hold)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--appliances", type=int, default=10, help="per site")
    parser.add_argument("--regions", type=int, default=10)
    parser.add_argument("--site-fraction", type=float, default=0.3)
    parser.add_argument("--drift", type=float, default=0.1)
    parser.add_argument("--history-days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--manifests-dir", help="keep the manifests here (default: temporary)")
    args = parser.parse_args(argv)
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    regions = [f"r{i}" for i in range(args.regions)]
    t0 = time.perf_counter()
    world = SynthWorld(args.files, tuple(regions), seed=args.seed, drift=args.drift)
    catalog = Catalog(
        ids=world.ids,
        sizes=world.sizes,
        checksums=[checksum_of(c) for c in world.ids],
        hashes=np.array([content_hash(c) for c in world.ids], dtype=np.uint64),
        index={c: i for i, c in enumerate(world.ids)},
    )
    t_catalog = time.perf_counter() - t0
    total_bytes = int(world.sizes.sum())
    capacity = int(total_bytes * args.site_fraction / args.appliances)
    budget = int(1.2e9 / 8 * 12 * 3600)
    fleet = build_fleet(regions, args.sites, args.appliances, capacity)
    fleet = Fleet(
        fleet.sites,
        tuple(
            (s, Appliance(a.name, a.capacity_bytes, 0, a.weight, budget))
            for s, a in fleet.appliances
        ),
    )
    params = PlacementParams(popularity_per_copy=2000.0, max_copies=4)

    def forecast_for(day: int) -> tuple[dict[str, np.ndarray], float]:
        # History: days day - history .. day - 1, forecasting `day`.
        # Generating a day's views is not the forecast's work: only add_columns is timed.
        history = SynthWorld(args.files, tuple(regions), seed=args.seed, drift=args.drift)
        columns = ColumnForecast(
            catalog.index, catalog.sizes, ForecastParams(), forecast_day=day + args.history_days
        )
        idx = np.arange(args.files, dtype=np.int64)
        spent = 0.0
        for d in range(day, day + args.history_days):
            per_region = history.views(d)
            started = time.perf_counter()
            for region, v in per_region.items():
                columns.add_columns(d, region, idx, v * world.sizes)
            spent += time.perf_counter() - started
        del history, per_region
        started = time.perf_counter()
        result = columns.result()
        return result, spent + time.perf_counter() - started

    f0, t_forecast = forecast_for(0)
    say(
        f"# planner benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"files {args.files:,} ({total_bytes / 1e12:,.0f} TB), {args.sites} sites x "
        f"{args.appliances} appliances ({args.regions} regions), site = "
        f"{args.site_fraction:.0%} of the catalog bytes, appliance {capacity / 1e12:.1f} TB, "
        f"budget {budget / 1e12:.2f} TB/night, drift {args.drift}/day, "
        f"history {args.history_days} days, one core\n"
    )
    start = time.perf_counter()
    warm = plan_fleet(catalog, f0, fleet, {}, params)
    t_cold = time.perf_counter() - start
    inventories = holdings(warm, target=True)  # steady state: last night's full plan is filled
    del warm
    start = time.perf_counter()
    day0 = plan_fleet(catalog, f0, fleet, inventories, params)
    t_day0 = time.perf_counter() - start
    del f0
    f1, _ = forecast_for(1)
    inventories = holdings(day0, target=False)
    del day0
    start = time.perf_counter()
    day1 = plan_fleet(catalog, f1, fleet, inventories, params)
    t_day1 = time.perf_counter() - start

    out = Path(args.manifests_dir or tempfile.mkdtemp(prefix="planner-manifests-"))
    out.mkdir(parents=True, exist_ok=True)
    t_texts = t_write = 0.0
    size = count = 0
    largest = b""
    start = time.perf_counter()
    texts = manifest_texts(day1, 1, time.time())
    while True:
        started = time.perf_counter()
        item = next(texts, None)
        t_texts += time.perf_counter() - started
        if item is None:
            break
        name, text = item
        started = time.perf_counter()
        (out / f"{name}.json").write_bytes(text)
        t_write += time.perf_counter() - started
        size += len(text)
        count += 1
        if len(text) > len(largest):
            largest = text
    started = time.perf_counter()
    os.sync()  # the disk's share: what the page cache had not written yet
    t_sync = time.perf_counter() - started
    t_manifests = time.perf_counter() - start
    if not args.manifests_dir:
        shutil.rmtree(out)
    started = time.perf_counter()
    largest_files = len(canonical_manifest(json.loads(largest))[1].split('"id":')) - 1
    t_check = time.perf_counter() - started
    del largest

    report = day1.report(1.2e9, 12 * 3600)
    sites = report["sites"]
    offload = float(np.mean([s["predicted_offload"] for s in sites]))
    bound = float(np.mean([s["offload_upper_bound"] for s in sites]))
    stored = sum(s["stored_bytes"] for s in sites)
    files_placed = sum(s["files"] for s in sites)
    adds = sum(s["adds"] for s in sites)
    add_bytes = sum(s["add_bytes"] for s in sites)
    deletes = sum(s["deletes"] for s in sites)
    worst_fill = max(s["fill_time_s"] for s in sites)
    say("| step | wall s |\n|---|---|")
    say(f"| synthetic catalog + hashes | {t_catalog:.1f} |")
    say(f"| forecast ({args.regions} regions x {args.history_days} days) | {t_forecast:.1f} |")
    say(f"| plan from empty (first night) | {t_cold:.1f} |")
    say(f"| **plan, steady state (day 0)** | **{t_day0:.1f}** |")
    say(f"| **plan, day 1 after drift** | **{t_day1:.1f}** |")
    say(
        f"| **manifests: JSON of all {count:,} appliances ({size / 1e9:,.1f} GB)** | "
        f"**{t_texts:.1f}** |"
    )
    say(f"| manifests: written, one file each, + sync (disk) | {t_write + t_sync:.1f} |")
    say(f"| manifests: total, plan to files on disk | {t_manifests:.1f} |")
    say(
        f"| control's check of the largest manifest ({largest_files:,} files) | {t_check:.2f} "
        f"(fleet: ~{t_check * count:.0f} s of control CPU) |"
    )
    say(f"\npeak memory (ru_maxrss): {peak_mib():,.0f} MiB\n")
    say("| figure | value |\n|---|---|")
    say(f"| files placed (sum over sites) | {files_placed:,} |")
    say(f"| stored | {stored / 1e12:,.0f} TB |")
    say(f"| predicted offload (mean of sites) | {offload:.2%} |")
    say(f"| fractional upper bound (mean) | {bound:.2%} |")
    say(f"| offload / bound | {offload / bound:.4f} |")
    say(
        f"| churn day 0 → 1: adds | {adds:,} files, {add_bytes / 1e12:,.1f} TB "
        f"({add_bytes / stored:.2%} of stored) |"
    )
    say(f"| churn day 0 → 1: deletes | {deletes:,} files |")
    say(
        f"| slowest site's fill (busiest appliance at 1.2 Gbps) | {worst_fill / 3600:.2f} h of 12 |"
    )
    say(
        "\nfirst sites of the day-1 report:\n```\n"
        + "\n".join(report_table(report).splitlines()[:6])
        + "\n```"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"planner-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
