"""What a wrk run measured, and how the runs become tables and result files."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.servers import HOST

MIB: Final = 1 << 20
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
REPO: Final = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One wrk run against one server."""

    round: int
    workload: str
    range_bytes: int
    server: str
    duration_s: float
    requests: int
    bytes: int
    req_s: float
    mb_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    errors: dict[str, int]  # wrk: connect, read, write, status (>= 400), timeout
    cpu_user_s: float  # server worker processes during the run
    cpu_system_s: float
    wrk_cpu_s: float
    # The rest of the machine during the run (other processes, interrupts): noise, if large.
    other_cpu_s: float
    steal_s: float  # taken by the hypervisor
    # Edge only: deltas of its /metrics over the run (the previous scrape shows up as one 200).
    status_codes: dict[str, int] = field(default_factory=dict)
    edge_errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU (user + system) per request, microseconds."""
        return (self.cpu_user_s + self.cpu_system_s) / max(self.requests, 1) * 1e6


# -- reporting ------------------------------------------------------------------------------


def machine_info(nginx: str, wrk: str) -> dict[str, str]:
    """What the numbers were measured on."""
    nginx_v = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10, check=False)
    wrk_v = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "kernel": platform.release(),
        "nginx": (nginx_v.stderr or nginx_v.stdout).strip().removeprefix("nginx version: "),
        "wrk": " ".join((wrk_v.stdout or wrk_v.stderr).split()[1:3]),
        "python": platform.python_version(),
    }
    for pkg in ("uvloop", "httptools", "lmdb"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "-"
    info["git"] = git_state()
    info["served code sha256"] = code_digest()
    return info


def code_digest() -> str:
    """A digest of the edge's source as measured (others may be editing it between runs)."""
    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("edge/*.py"), *REPO.glob("edgefleet/*.py")]):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_state() -> str:
    """HEAD of the repository, and whether the served code has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "edge", "edgefleet"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + (" + uncommitted changes in edge/ or edgefleet/" if dirty else "")


def median_of(runs: Sequence[Run], server: str, workload: str, attr: str) -> float:
    """Median of *attr* over the rounds of one server and workload."""
    values = [getattr(r, attr) for r in runs if r.server == server and r.workload == workload]
    return statistics.median(values) if values else float("nan")


def summarise(
    runs: Sequence[Run],
    workloads: Sequence[tuple[str, int]],
    servers: Sequence[str] = ("nginx", "edge"),
) -> list[dict[str, Any]]:
    """One row per workload: medians over the rounds and the edge/nginx ratio of req/s.

    With the minimal server also its medians, minimal_ratio (minimal/nginx) and edge_minimal
    (edge/minimal), all of req/s.
    """
    rows = []
    for label, size in workloads:
        row: dict[str, Any] = {"workload": label, "range_bytes": size}
        for server in servers:
            for attr in ("req_s", "mb_s", "latency_p50_ms", "latency_p99_ms",
                         "cpu_us_per_request", "wrk_cpu_s"):  # fmt: skip
                row[f"{server}_{attr}"] = median_of(runs, server, label, attr)
            mine = [r for r in runs if r.server == server and r.workload == label]
            row[f"{server}_cpu_user_share"] = sum(r.cpu_user_s for r in mine) / max(
                sum(r.cpu_user_s + r.cpu_system_s for r in mine), 1e-9
            )
        nginx_req_s = row["nginx_req_s"]
        row["ratio"] = row["edge_req_s"] / nginx_req_s if nginx_req_s > 0 else float("nan")
        if "minimal" in servers:
            minimal_req_s = row["minimal_req_s"]
            row["minimal_ratio"] = minimal_req_s / nginx_req_s if nginx_req_s > 0 else float("nan")
            row["edge_minimal"] = (
                row["edge_req_s"] / minimal_req_s if minimal_req_s > 0 else float("nan")
            )
        rows.append(row)
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns (readable on a terminal too)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_table(rows: Sequence[dict[str, Any]]) -> str:
    """workload | nginx req/s | nginx MB/s | edge req/s | edge MB/s | edge/nginx.

    With the minimal server: then minimal req/s | minimal MB/s | minimal/nginx | edge/minimal.
    """
    if rows and "minimal_req_s" in rows[0]:
        return table(
            ("workload", "nginx req/s", "nginx MB/s", "edge req/s", "edge MB/s", "edge/nginx",
             "minimal req/s", "minimal MB/s", "minimal/nginx", "edge/minimal"),
            [
                (
                    row["workload"],
                    f"{row['nginx_req_s']:,.0f}",
                    f"{row['nginx_mb_s']:,.0f}",
                    f"{row['edge_req_s']:,.0f}",
                    f"{row['edge_mb_s']:,.0f}",
                    f"{row['ratio']:.2f}",
                    f"{row['minimal_req_s']:,.0f}",
                    f"{row['minimal_mb_s']:,.0f}",
                    f"{row['minimal_ratio']:.2f}",
                    f"{row['edge_minimal']:.2f}",
                )
                for row in rows
            ],
        )  # fmt: skip
    return table(
        ("workload", "nginx req/s", "nginx MB/s", "edge req/s", "edge MB/s", "edge/nginx"),
        [
            (
                row["workload"],
                f"{row['nginx_req_s']:,.0f}",
                f"{row['nginx_mb_s']:,.0f}",
                f"{row['edge_req_s']:,.0f}",
                f"{row['edge_mb_s']:,.0f}",
                f"{row['ratio']:.2f}",
            )
            for row in rows
        ],
    )


def detail_table(rows: Sequence[dict[str, Any]]) -> str:
    """Where the time goes: server CPU per request (and its user share), latency, wrk CPU."""
    out = []
    servers = (
        ("nginx", "edge", "minimal") if rows and "minimal_req_s" in rows[0] else ("nginx", "edge")
    )
    for row in rows:
        for server in servers:
            out.append(
                (
                    row["workload"],
                    server,
                    f"{row[f'{server}_cpu_us_per_request']:,.1f}",
                    f"{row[f'{server}_cpu_user_share']:.0%}",
                    f"{row[f'{server}_latency_p50_ms']:,.2f}",
                    f"{row[f'{server}_latency_p99_ms']:,.2f}",
                    f"{row[f'{server}_wrk_cpu_s']:,.1f}",
                )
            )
    return table(
        ("workload", "server", "server CPU µs/req", "user share", "p50 ms", "p99 ms",
         "wrk CPU s"),
        out,
    )  # fmt: skip


def runs_table(runs: Sequence[Run]) -> str:
    """Every run, in the order measured."""
    return table(
        ("round", "workload", "server", "req/s", "MB/s", "p99 ms", "other CPU s", "problems"),
        [
            (
                str(r.round),
                r.workload,
                r.server,
                f"{r.req_s:,.0f}",
                f"{r.mb_s:,.0f}",
                f"{r.latency_p99_ms:,.2f}",
                f"{r.other_cpu_s:,.1f}" + (f" (steal {r.steal_s:.1f})" if r.steal_s >= 0.1 else ""),
                "; ".join(r.problems) or "-",
            )
            for r in runs
        ],
    )


def markdown(report: dict[str, Any]) -> str:
    """The results file."""
    opts = report["options"]
    machine = report["machine"]
    lines = [
        f"# Edge vs nginx, random byte ranges ({report['timestamp']})",
        "",
        f"Command: `{report['command']}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Setup: {opts['files']} files of {opts['file_size'] // MIB} MiB in page cache, "
        f"wrk -t{opts['threads']} -c{opts['connections']} -d{opts['duration_s']}s on "
        f"{HOST}; edge: {opts['edge_workers']} workers, signed URLs, "
        f"sendfile {'on' if opts['sendfile'] else 'off'}, header_separate_segment "
        f"{str(opts['header_separate_segment']).lower()}; nginx: 2 workers, sendfile on, "
        "tcp_nopush off, open_file_cache. "
        + (
            f"minimal (bench/minimal_server.py): {opts['edge_workers']} processes, uvloop, "
            "httptools, send(header, "
            f"{'no MSG_MORE' if opts['header_separate_segment'] else 'MSG_MORE'}) + sendfile, "
            "same source files as nginx, no tokens. "
            if opts.get("with_minimal")
            else ""
        )
        + f"Medians of {opts['rounds']} round(s), servers alternating per workload. MB = 10^6 "
        "bytes, response headers included; "
        + (
            "edge/nginx, minimal/nginx and edge/minimal are ratios of req/s."
            if opts.get("with_minimal")
            else "edge/nginx is the ratio of req/s."
        ),
        "",
        report["table"],
        "",
        "## Where the CPU goes (medians; CPU of the server's worker processes)",
        "",
        report["detail_table"],
        "",
        "## Runs",
        "",
        "other CPU s: CPU time the rest of the machine used during the run (other processes,",
        "interrupts, the hypervisor's steal): large values mark a noisy run.",
        "",
        report["runs_table"],
        "",
        "## Warnings",
        "",
    ]
    lines += [f"- {w}" for w in report["warnings"]] or ["None."]
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any]) -> tuple[Path, Path]:
    """bench/results/edge-<UTC timestamp>.md and .json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"edge-{report['timestamp']}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=2) + "\n")
    return md, js
