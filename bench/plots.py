"""PNG plots of the benchmarks: edge vs nginx (wrk), and the playback load test's timeline.

    python -m bench.plots                      # a PNG next to the newest bench/results/edge-*.json
    python -m bench.plots bench/results/edge-20261125T004025Z.json ...

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global state), so a plot can be made from a test, a headless server or a benchmark run.
`plot_edge_run(json_path)` is the one call bench/edge.py makes after writing its results.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from matplotlib.figure import Figure

from bench.timeline import Timeline

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
# One colour per server, the same in every plot.
COLOURS: Final = {"nginx": "#4c72b0", "edge": "#dd8452", "minimal": "#8c8c8c"}
DPI: Final = 110


def edge_servers(report: Mapping[str, Any]) -> list[str]:
    """The servers a bench/edge.py report measured, in drawing order."""
    rows = report["summary"]
    return [s for s in ("nginx", "edge", "minimal") if rows and f"{s}_req_s" in rows[0]]


def edge_png(report: Mapping[str, Any], path: Path) -> Path:
    """Bars of req/s and MB/s per workload and server (medians; dots: each round).

    *report* is the JSON bench/edge.py writes (`summary` rows, `runs`, `options`); a field
    missing from it raises KeyError naming it.
    """
    rows = report["summary"]
    if not rows:
        raise ValueError("summary: no workloads to plot")
    servers = edge_servers(report)
    workloads = [row["workload"] for row in rows]
    runs = report.get("runs", [])
    fig = Figure(figsize=(4 + 1.6 * len(workloads), 7.5), layout="constrained")
    axes = fig.subplots(2, 1)
    width = 0.8 / len(servers)
    for ax, attr, label in ((axes[0], "req_s", "requests/s (log)"), (axes[1], "mb_s", "MB/s")):
        for i, server in enumerate(servers):
            xs = [w + (i - (len(servers) - 1) / 2) * width for w in range(len(workloads))]
            medians = [_number(row[f"{server}_{attr}"]) for row in rows]
            bars = ax.bar(xs, medians, width, label=server, color=COLOURS[server])
            ax.bar_label(bars, labels=[_short(v) for v in medians], fontsize=7, padding=2)
            for x, workload in zip(xs, workloads, strict=True):
                rounds = [
                    r[attr] for r in runs if r["server"] == server and r["workload"] == workload
                ]
                ax.plot([x] * len(rounds), rounds, "k.", markersize=3)
        ax.set_xticks(range(len(workloads)), [_workload_label(r) for r in rows])
        ax.set_ylabel(label)
        if attr == "req_s":  # small and large ranges differ 300-fold: ratios show on a log axis
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].legend(loc="upper right")
    ratios = ", ".join(
        f"{row['workload']} {row['ratio']:.2f}" for row in rows if _number(row.get("ratio")) > 0
    )
    opts = report.get("options", {})
    fig.suptitle(
        f"edge vs nginx, random byte ranges ({report.get('timestamp', '?')})\n"
        f"edge/nginx req/s: {ratios or '-'}; wrk -c{opts.get('connections', '?')} "
        f"-d{opts.get('duration_s', '?')}s, {opts.get('rounds', '?')} round(s)",
        fontsize=10,
    )
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # twin axes: keep every label
    return path


def plot_edge_run(json_path: Path) -> Path:
    """Draw *json_path* (bench/results/edge-<UTC>.json) as the PNG beside it; returns its path.

    bench/edge.py calls this after write_results: `print(f"plot: {plot_edge_run(js)}")`.
    """
    report = json.loads(json_path.read_text())
    return edge_png(report, json_path.with_suffix(".png"))


def timeline_png(
    tl: Timeline, path: Path, title: str = "", marks: Sequence[tuple[float, str]] = ()
) -> Path:
    """Throughput (top) and failures (bottom) per time bucket of a load test.

    *marks* are (seconds since the start, label) drawn as vertical lines on both panels: the
    faults of a chaos drill, for instance.
    """
    xs = [i * tl.bucket_s for i in range(len(tl.mb_s))]
    fig = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    # Steps need the end of the last bucket too, or the last second is not drawn.
    step_x, step_y = [*xs, len(xs) * tl.bucket_s], [*tl.mb_s, tl.mb_s[-1] if tl.mb_s else 0.0]
    top.plot(step_x, step_y, color=COLOURS["edge"], drawstyle="steps-post")
    top.fill_between(step_x, step_y, step="post", color=COLOURS["edge"], alpha=0.25)
    top.set_ylabel("throughput, MB/s")
    top.set_ylim(bottom=0)
    stall = top.twinx()
    stall.bar(xs, tl.rebuffer_s, tl.bucket_s, align="edge", color="#c44e52", alpha=0.5)
    stall.set_ylabel("rebuffer s ending in the bucket", color="#c44e52")
    stall.set_ylim(0, max(1.0, *tl.rebuffer_s) * 1.2)
    bottom.bar(xs, tl.failovers, tl.bucket_s, align="edge", color=COLOURS["nginx"],
               label="failed requests (failed over)")  # fmt: skip
    bottom.bar(xs, tl.failed_sessions, tl.bucket_s, align="edge", color="#c44e52",
               bottom=tl.failovers, label="failed sessions")  # fmt: skip
    bottom.set_ylabel("count per bucket")
    bottom.set_xlabel(f"seconds since the start ({tl.bucket_s:g} s buckets)")
    bottom.set_ylim(
        0, max(1, *(a + b for a, b in zip(tl.failovers, tl.failed_sessions, strict=True))) * 1.2
    )
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, max(xs[-1] + tl.bucket_s, tl.bucket_s))
        for at, label in marks:
            ax.axvline(at, color="k", linestyle="--", linewidth=0.8)
            if ax is top:
                ax.annotate(label, (at, 1), xycoords=("data", "axes fraction"), rotation=90,
                            va="top", ha="right", fontsize=7)  # fmt: skip
    fig.suptitle(f"playback load test{': ' + title if title else ''}", fontsize=10)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # twin axes: keep every label
    return path


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _short(value: float) -> str:
    if value >= 1e5:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _workload_label(row: Mapping[str, Any]) -> str:
    size = int(row.get("range_bytes", 0))
    unit = "MiB" if size >= 1 << 20 else "KiB"
    amount = size / (1 << 20) if size >= 1 << 20 else size / 1024
    return f"{row['workload']}\n({amount:g} {unit} ranges)"


def main(argv: Sequence[str] | None = None) -> int:
    """Plot the given edge-*.json files, or the newest one in bench/results/."""
    args = list(sys.argv[1:] if argv is None else argv)
    paths = [Path(a) for a in args] or sorted(RESULTS_DIR.glob("edge-*.json"))[-1:]
    if not paths:
        print(
            f"bench.plots: no edge-*.json in {RESULTS_DIR}; run make bench first", file=sys.stderr
        )
        return 1
    status = 0
    for path in paths:
        try:
            print(f"written: {plot_edge_run(path)}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"bench.plots: {path}: {exc!r}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
