"""The report of a run: its printed lines and table and the markdown text (pure), and writing
bench/results/hostile-<UTC timestamp>.md and .json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.hostile.verdicts import Phase
from bench.report import RESULTS_DIR, table


def rows(phases: Sequence[Phase]) -> list[list[str]]:
    """The printed table's rows."""
    out = []
    for ph in phases:
        lat = ph.latency
        timeouts = ", ".join(f"{k} {v}" for k, v in sorted(ph.errors.items()) if v) or "-"
        codes = " ".join(f"{k}x{v}" for k, v in sorted(ph.codes.items())) or "-"
        out.append(
            [
                str(ph.round),
                ph.attack,
                ph.tool,
                f"{lat.requests}",
                f"{lat.p50_ms:.2f} / {lat.p99_ms:.2f} / {lat.max_ms:.1f}",
                "-" if ph.attack == "unloaded" else f"{ph.p99_ratio:.2f}x",
                f"{ph.rss_before_mib:.0f} / {ph.rss_peak_mib:.0f} / {ph.rss_after_mib:.0f}",
                f"{ph.conns_peak} / {ph.conns_after}",
                f"{ph.gc_runs} / {ph.gc_pause_ms:.1f}",
                timeouts,
                codes,
                ph.verdict + (" (" + "; ".join(ph.why) + ")" if ph.why else ""),
            ]
        )
    return out


HEADER: Final = (
    "round",
    "attack",
    "tool",
    "normal reqs",
    "normal p50 / p99 / max ms",
    "p99 vs unloaded",
    "edge RSS MiB before / peak / after",
    "conns open peak / after",
    "edge GC runs / pause ms",
    "edge errors counted",
    "edge responses",
    "verdict",
)


def print_phase(ph: Phase) -> None:
    lat = ph.latency
    print(
        f"{ph.attack:12} {ph.tool:13} n={lat.requests} failed={lat.failed} "
        f"p50={lat.p50_ms:.2f} p99={lat.p99_ms:.2f} max={lat.max_ms:.1f} ms "
        f"(at {lat.max_at_s:.1f} s; >10 ms at {list(lat.over_10ms_at_s)}) "
        f"rss={ph.rss_peak_mib:.0f} MiB conns={ph.conns_peak} errors={ph.errors} {ph.verdict}",
        flush=True,
    )
    for who, said in ph.attackers.items():
        print(f"    {who}: {said}", flush=True)


def markdown(report: dict[str, Any], phases: Sequence[Phase]) -> str:
    opts = report["options"]
    lines = [
        f"# Hostile clients vs one edge, {report['timestamp']}",
        "",
        f"Edge: {opts['workers']} workers, signed URLs, one {opts['file_mib']} MiB file, limits"
        " at their defaults (header_timeout_s 10, keep_alive_timeout_s 15, send_timeout_s 60,"
        f" max_ranges 16, max_connections_per_worker 10000); RLIMIT_NOFILE {report['nofile']}.",
        f"Normal client: its own process, random 64 KiB ranges on one keep-alive connection"
        f" at {opts['normal_rate']:g}/s (0: back to back), every byte checked,"
        f" {opts['duration_s']:g} s per phase after {opts['ramp_s']:g} s of attack build-up.",
        f"Attackers (they stand for other machines: {report['attackers_run']}):"
        f" {report['attack_tool']} (idle connections: Python); slowloris"
        f" {opts['slowloris']}, slow read {opts['slow_read']}, range abuse"
        f" {opts['range_conns']} connections at {opts['rate']}/s; idle {opts['idle']}.",
        f"Verdict: p99 ≤ 2x unloaded + {opts['p99_floor_ms']:g} ms, no failed normal request,"
        f" peak RSS ≤ unloaded + {opts['rss_bound_mib']:g} MiB. Whole run {report['took_s']} s;"
        f" {report['machine']['nproc']} cores; git {report['machine']['git']}.",
        "",
        table(HEADER, rows(phases)),
        "",
        f"## Verdict ({opts['rounds']} round{'s' if opts['rounds'] > 1 else ''}: each attack"
        " against its own round's unloaded p99; the latency target on the median round)",
        "",
    ]
    for v in report["verdicts"]:
        ratios = ", ".join(f"{r:.2f}x" for r in v["ratios"])
        state = "ok" if v["ok"] else "FAIL (" + "; ".join(v["why"]) + ")"
        lines.append(f"- {v['attack']}: p99 vs unloaded {ratios}; median {v['median_ratio']:.2f}x:"
                     f" {state}")  # fmt: skip
    lines += [
        "",
        "## What the attackers reported",
        "",
    ]
    for ph in phases:
        for who, said in ph.attackers.items():
            lines.append(f"- round {ph.round}, {ph.attack} / {who}: {said}")
    lines += [
        "",
        "## When the normal client was slow (> 10 ms; seconds into the measurement, which"
        f" starts {opts['ramp_s']:g} s after the attack)",
        "",
    ]
    for ph in phases:
        lat = ph.latency
        lines.append(
            f"- round {ph.round}, {ph.attack}: max {lat.max_ms:.1f} ms at {lat.max_at_s:g} s;"
            f" > 10 ms at {list(lat.over_10ms_at_s) or 'never'}"
        )
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report["warnings"]] or ["None."]
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any], text: str) -> tuple[Path, Path]:
    """bench/results/hostile-<UTC timestamp>.md and .json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"hostile-{report['timestamp']}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    md.write_text(text)
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return md, js
