"""The drill's report: report.json's document, the printed table (also report.md), and the
results directory with the timeline plot and the services' logs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.chaos.drill import Drill
from bench.chaos.schedule import OUT_KINDS
from bench.chaos.verdict import session_hours, verdict
from bench.player import percentile, summarise
from bench.timeline import timeline


def report_doc(drill: Drill, bound_s: float, started_utc: str) -> dict[str, Any]:
    """report.json: options, player figures, faults and the verdict."""
    summary = summarise(drill.reports)
    hours = session_hours(drill.reports)
    checks = verdict(summary, drill.wrong_bytes, drill.fault_rows, bound_s, drill.watch.forbidden)
    for row in drill.fault_rows:
        row["bound_s"] = bound_s if row["kind"] in OUT_KINDS else None
    startups = [r.startup_s for r in drill.reports if r.startup_s is not None]
    return {
        "started_utc": started_utc,
        "seed": drill.seed,
        "users": drill.users,
        "duration_s": drill.duration_s,
        "heartbeat_interval_s": drill.fleet.heartbeat_s,
        "snapshot_interval_s": drill.fleet.snapshot_s,
        "bound_s": bound_s,
        "fleet": {
            "edges": {e: drill.fleet.site_of[e] for e in drill.fleet.edges},
            "steering_replicas": len(drill.fleet.steering),
        },
        "player": {
            "bitrate_bps": drill.player.bitrate_bps,
            "segment_bytes": drill.player.segment_bytes,
            "session_s": drill.player.session_s,
            "request_timeout_s": drill.request_timeout_s,
        },
        "sessions": summary.to_json(),
        "session_hours": hours,
        "rebuffer_s_per_session_hour": summary.rebuffer_s / hours if hours > 0 else 0.0,
        "startup_p99_s": percentile(startups, 99),
        "steering_failovers": drill.steer_failovers,
        "segment_failovers": summary.failovers,
        "wrong_bytes": drill.wrong_bytes,
        "wrong_examples": drill.wrong_detail,
        "steering_poll_errors": drill.poll_errors,
        "faults": drill.fault_rows,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        "pass": all(c.ok for c in checks),
    }


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def report_text(doc: dict[str, Any]) -> str:
    """The printed table (also report.md)."""
    s = doc["sessions"]
    lines = [
        f"# Chaos drill {doc['started_utc']}: {'PASS' if doc['pass'] else 'FAIL'}",
        "",
        f"seed {doc['seed']}, {doc['users']} viewers for {doc['duration_s']:g} s; fleet: "
        f"{len(doc['fleet']['edges'])} edges in 2 sites + origin, "
        f"{doc['fleet']['steering_replicas']} steering replicas; heartbeat "
        f"{doc['heartbeat_interval_s']:g} s, snapshot {doc['snapshot_interval_s']:g} s "
        f"(out-of-steering bound {doc['bound_s']:g} s)",
        "",
        "| playback | |",
        "|---|---|",
        f"| sessions started | {s['sessions']} |",
        f"| sessions failed | {s['failed']} |",
        f"| sessions completed / cut at the end | {s['completed']} / {s['cut']} |",
        f"| rebuffer s per session-hour | {doc['rebuffer_s_per_session_hour']:.1f} "
        f"({s['rebuffers']} stalls, {s['rebuffer_s']:.2f} s) |",
        f"| startup p50 / p95 | {_s(s['startup_p50_s'])} / {_s(s['startup_p95_s'])} |",
        f"| failovers: segment / steering | {doc['segment_failovers']} / "
        f"{doc['steering_failovers']} |",
        f"| wrong-byte responses | {doc['wrong_bytes']} |",
        f"| MB received | {s['bytes'] / 1e6:.0f} |",
        "",
        "| fault | target | start | hold | out of steering | bound | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in doc["faults"]:
        start = "-" if f.get("start_s") is None else f"{f['start_s']:.1f} s"
        if f["kind"] in OUT_KINDS:
            out = f["out_of_steering_s"]
            shown = "never left" if out is None else f"{out:.2f} s"
            bound = f"{f['bound_s']:g} s"
        else:
            shown = bound = "-"
        lines.append(
            f"| {f['kind']} | {f['target']} | {start} | {f['hold_s']:g} s | {shown} | {bound} "
            f"| {f['note']} |"
        )
    lines += ["", "| target | result | measured |", "|---|---|---|"]
    lines += [
        f"| {c['name']} | {'ok' if c['ok'] else 'FAIL'} | {c['detail']} |" for c in doc["checks"]
    ]
    if s["errors"]:
        lines += ["", "Failed sessions by error:"]
        lines += [f"- {n} x {err}" for err, n in s["errors"].items()]
    if doc["wrong_examples"]:
        lines += ["", "Wrong bytes from:", *(f"- {w}" for w in doc["wrong_examples"])]
    return "\n".join(lines) + "\n"


def write_results(drill: Drill, doc: dict[str, Any], out: Path) -> None:
    """report.md, report.json, timeline.png and the services' logs into *out*."""
    from bench.plots import timeline_png  # matplotlib: only once there is something to draw

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(report_text(doc))
    tl = timeline(drill.log, drill.start, drill.duration_s)
    marks = [
        (f["start_s"], f"{f['kind']} {f['target']}")
        for f in doc["faults"]
        if f.get("start_s") is not None
    ]
    timeline_png(tl, out / "timeline.png", f"chaos drill, seed {drill.seed}", marks)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for log in drill.fleet.root.glob("*.log"):
        shutil.copy(log, logs / log.name)
