"""Edge vs nginx: random byte ranges of files held in page cache, measured with wrk.

    python -m bench.edge [--rounds N] [--duration 10] [--workloads 4k,64k,1m,8m] ...
    make bench

The same files are served on 127.0.0.1 by nginx (2 workers, sendfile on, tcp_nopush off,
open_file_cache, no access log; root = the source directory) and by the edge (`edgefleet edge
serve`: 2 workers, signed URLs required, the LMDB index, metrics; files imported onto its disk).
Per workload (range size) the servers alternate, nginx then edge, for --rounds rounds, and the
table shows medians. wrk shares the cores with the server under test: read ratios, not absolute
figures.

With --with-minimal a third server takes part: bench/minimal_server.py, the minimal prototype of
/work/shared/PERFORMANCE.md (asyncio.Protocol, httptools, send + sendfile under uvloop, as many
processes as the edge has workers, over nginx's source directory, no tokens, index or metrics):
the floor for any Python server in this harness. It runs after the edge in every alternation.

A benchmark of error pages is worthless, so before measuring a sample range of every file and
workload must come back 206 with the right bytes from both servers, and after every run the
wrk error counts, the bytes per request and (for the edge) the status codes and error kinds
from its /metrics are checked. Anything unexpected is printed as a warning, recorded in the
results, and makes the exit status 1.

Nothing is installed: nginx and wrk must be there (Debian: apt-get install nginx-light wrk).
Results go to bench/results/edge-<UTC timestamp>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.report import (
    MIB,
    Run,
    detail_table,
    machine_info,
    main_table,
    runs_table,
    summarise,
    write_results,
)
from bench.servers import (
    HOST,
    BenchError,
    Edge,
    Minimal,
    Nginx,
    Server,
    cpu_seconds,
    find_tool,
    http_get,
    sigterm_as_interrupt,
    system_cpu_seconds,
)

HERE: Final = Path(__file__).resolve().parent
LUA_SCRIPT: Final = HERE / "wrk_ranges.lua"
INSTALL_HINT: Final = "apt-get install nginx-light wrk"
MB: Final = 1e6  # MB/s in the tables are 10^6 bytes (headers included), as wrk counts them
WRK_RE: Final = re.compile(r"^WRK_RESULT (\{.*\})$", re.MULTILINE)
# Error counts of wrk's summary, by the key the Lua done() prints them under.
WRK_ERRORS: Final = {
    "connect": "connect_errors",
    "read": "read_errors",
    "write": "write_errors",
    "status": "status_errors",  # HTTP status >= 400
    "timeout": "timeouts",
}
SIZE_RE: Final = re.compile(r"(\d+)([kKmM]?)")
METRICS_FLUSH_S: Final = 1.2  # edge workers write their counters once a second
# Response header bytes per response accepted on top of the range (both servers send ~250).
HEADER_SLACK: Final = 1024


# -- options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What to measure, from the command line."""

    duration_s: int
    connections: int
    threads: int
    file_size: int
    files: int
    workloads: tuple[tuple[str, int], ...]  # (label, range bytes)
    edge_workers: int
    header_separate_segment: bool
    sendfile: bool
    rounds: int
    with_minimal: bool = False


def parse_size(text: str) -> int:
    """'4k' → 4096, '1m' → 1 MiB, '512' → 512 bytes."""
    match = SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 4k, 64k, 1m, 8m)")
    unit = {"": 1, "k": 1024, "m": MIB}[match.group(2).lower()]
    return int(match.group(1)) * unit


def parse_duration(text: str) -> int:
    """'10' or '10s' → 10 (whole seconds, as wrk wants them)."""
    value = text.strip().removesuffix("s")
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (whole seconds, e.g. 10s)")
    return int(value)


def positive(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def parse_args(argv: Sequence[str]) -> Options:
    """Command-line options, validated."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.edge",
        description="Compare the edge with nginx on random byte ranges (wrk, loopback).",
    )
    ap.add_argument("--duration", type=parse_duration, default=10, help="per run (default 10s)")
    ap.add_argument("--connections", type=positive, default=64, help="wrk -c (default 64)")
    ap.add_argument("--threads", type=positive, default=2, help="wrk -t (default 2)")
    ap.add_argument("--file-size-mib", type=positive, default=64, help="per file (default 64)")
    ap.add_argument("--files", type=positive, default=4, help="test files (default 4)")
    ap.add_argument(
        "--workloads", default="4k,64k,1m,8m", help="range sizes (default 4k,64k,1m,8m)"
    )
    ap.add_argument("--edge-workers", type=positive, default=2, help="default 2 (as nginx)")
    ap.add_argument(
        "--header-separate-segment",
        action="store_true",
        help="edge: send the response header as its own TCP segment",
    )
    ap.add_argument(
        "--no-sendfile",
        action="store_true",
        help="edge: use the pread+send fallback (nginx keeps sendfile on as the reference)",
    )
    ap.add_argument("--rounds", type=positive, default=1, help="nginx/edge alternations")
    ap.add_argument(
        "--with-minimal",
        action="store_true",
        help="also measure bench/minimal_server.py (the floor for a Python server) after the "
        "edge; --edge-workers and --header-separate-segment apply to it too",
    )
    args = ap.parse_args(argv)
    file_size = args.file_size_mib * MIB
    workloads = []
    for label in (w.strip() for w in args.workloads.split(",") if w.strip()):
        size = parse_size(label)
        if not 0 < size <= file_size:
            ap.error(f"workload {label!r}: range must be 1 byte .. --file-size-mib")
        workloads.append((label, size))
    if not workloads:
        ap.error("--workloads lists no range size")
    if args.threads > args.connections:
        ap.error("--threads must not exceed --connections (wrk needs a connection per thread)")
    return Options(
        duration_s=args.duration,
        connections=args.connections,
        threads=args.threads,
        file_size=file_size,
        files=args.files,
        workloads=tuple(workloads),
        edge_workers=args.edge_workers,
        header_separate_segment=args.header_separate_segment,
        sendfile=not args.no_sendfile,
        rounds=args.rounds,
        with_minimal=args.with_minimal,
    )


# -- setting up and checking ---------------------------------------------------------------


def verify(server: Server, src: Path, opts: Options, rng: random.Random) -> None:
    """A sample range of every file and workload must come back 206 with the right bytes."""
    for label, size in opts.workloads:
        for name, path in server.paths.items():
            first = rng.randrange(0, opts.file_size - size + 1)
            last = first + size - 1
            status, headers, body = http_get(server.port, path, {"Range": f"bytes={first}-{last}"})
            with open(src / name, "rb") as fh:
                expected = os.pread(fh.fileno(), size, first)
            want_range = f"bytes {first}-{last}/{opts.file_size}"
            if status != 206 or headers.get("content-range") != want_range or body != expected:
                raise BenchError(
                    f"{server.name}: GET {name} Range bytes={first}-{last} ({label}) answered "
                    f"{status}, Content-Range {headers.get('content-range')!r} (want "
                    f"{want_range!r}), {len(body)} body bytes"
                    + ("" if body == expected else " that differ from the file")
                    + (f": {body[:200]!r}" if status != 206 else "")
                )


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read every file once so that both servers serve from memory."""
    buf = bytearray(8 * MIB)
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def make_files(src: Path, opts: Options) -> list[str]:
    """*opts.files* files of random bytes (incompressible, all different)."""
    src.mkdir(parents=True)
    names = [f"r{i:02d}.bin" for i in range(opts.files)]
    for name in names:
        with open(src / name, "wb") as fh:
            for _ in range(opts.file_size // MIB):
                fh.write(os.urandom(MIB))
            fh.write(os.urandom(opts.file_size % MIB))
    return names


# -- measuring ------------------------------------------------------------------------------


def run_wrk(wrk: str, server: Server, size: int, opts: Options) -> dict[str, float]:
    """Run wrk once and return the numbers its Lua done() printed."""
    cmd = [
        wrk, f"-t{opts.threads}", f"-c{opts.connections}", f"-d{opts.duration_s}s",
        "-s", str(LUA_SCRIPT), f"http://{HOST}:{server.port}",
        "--", str(size), str(opts.file_size), *server.paths.values(),
    ]  # fmt: skip
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=opts.duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {shlex.join(cmd)}") from None
    match = WRK_RE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise BenchError(
            f"wrk failed (exit {out.returncode}): {shlex.join(cmd)}\n{out.stdout}{out.stderr}"
        )
    result: dict[str, float] = json.loads(match.group(1))
    return result


def measure(wrk: str, server: Server, label: str, size: int, rnd: int, opts: Options) -> Run:
    """One wrk run, with the server's CPU time and (for the edge) its own counts."""
    before: tuple[dict[str, int], dict[str, int]] = ({}, {})
    if isinstance(server, Edge):
        before = server.scrape()
    pids = server.worker_pids()
    user0, sys0 = cpu_seconds(pids)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, steal0 = system_cpu_seconds()
    res = run_wrk(wrk, server, size, opts)
    busy1, steal1 = system_cpu_seconds()
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    user1, sys1 = cpu_seconds(pids)
    wrk_cpu = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    duration = res["duration_us"] / 1e6
    requests = int(res["requests"])
    nbytes = int(res["bytes"])
    run = Run(
        round=rnd,
        workload=label,
        range_bytes=size,
        server=server.name,
        duration_s=duration,
        requests=requests,
        bytes=nbytes,
        req_s=requests / duration,
        mb_s=nbytes / duration / MB,
        latency_p50_ms=res["latency_p50_us"] / 1e3,
        latency_p99_ms=res["latency_p99_us"] / 1e3,
        latency_max_ms=res["latency_max_us"] / 1e3,
        errors={kind: int(res[key]) for kind, key in WRK_ERRORS.items()},
        cpu_user_s=user1 - user0,
        cpu_system_s=sys1 - sys0,
        wrk_cpu_s=wrk_cpu,
        other_cpu_s=max(0.0, busy1 - busy0 - (user1 - user0) - (sys1 - sys0) - wrk_cpu),
        steal_s=steal1 - steal0,
    )
    if isinstance(server, Edge):
        time.sleep(METRICS_FLUSH_S)  # let every worker write its counters
        codes, errors = server.scrape()
        run.status_codes = _delta(before[0], codes)
        run.edge_errors = _delta(before[1], errors)
    run.problems = check(run, opts.connections)
    return run


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


def check(run: Run, connections: int) -> list[str]:
    """What makes this run's number suspect: errors, answers other than 206, wrong sizes."""
    problems = [f"wrk {kind} errors: {n}" for kind, n in run.errors.items() if n]
    # wrk's byte count includes the partial responses in flight when the run ends (at most one
    # per connection); the request count does not.
    low = run.requests * run.range_bytes
    high = (run.requests + connections) * (run.range_bytes + HEADER_SLACK)
    if run.requests == 0:
        problems.append("no request completed")
    elif not low <= run.bytes <= high:
        problems.append(
            f"{run.bytes / run.requests:,.0f} bytes per response for {run.range_bytes:,}-byte "
            "ranges: some answers were not 206 with the requested range"
        )
    if run.server != "edge":
        return problems
    codes = dict(run.status_codes)
    if codes.get("200", 0) >= 1:
        codes["200"] -= 1  # the previous /metrics scrape
    other = {c: n for c, n in codes.items() if c != "206" and n}
    if other:
        problems.append(f"edge answered other statuses than 206: {other}")
    if codes.get("206", 0) < run.requests:
        problems.append(f"edge counted {codes.get('206', 0)} 206s for {run.requests} requests")
    errors = dict(run.edge_errors)
    # wrk closes its connections with responses in flight when the time is up.
    if errors.get("client_gone", 0) <= connections:
        errors.pop("client_gone", None)
    if errors:
        problems.append(f"edge error counters: {errors}")
    return problems


def log(message: str) -> None:
    """Progress, on stderr so that stdout is the table."""
    print(f"bench.edge: {message}", file=sys.stderr, flush=True)


# -- main -----------------------------------------------------------------------------------


def benchmark(opts: Options, nginx_bin: str, wrk: str, tmp: Path) -> tuple[list[Run], list[str]]:
    """Set up, verify, measure; the servers are stopped before this returns or raises."""
    src = tmp / "src"
    log(f"writing {opts.files} files of {opts.file_size // MIB} MiB")
    names = make_files(src, opts)
    log("importing them into the edge")
    edge = Edge(
        tmp / "edge",
        src,
        names,
        workers=opts.edge_workers,
        header_separate_segment=opts.header_separate_segment,
        sendfile=opts.sendfile,
    )
    nginx = Nginx(nginx_bin, tmp / "nginx", src, names)
    servers: list[Server] = [nginx, edge]
    minimal: Minimal | None = None
    if opts.with_minimal:
        minimal = Minimal(
            tmp / "minimal",
            src,
            names,
            workers=opts.edge_workers,
            header_separate_segment=opts.header_separate_segment,
        )
        servers.append(minimal)
    warnings: list[str] = []
    runs: list[Run] = []
    completed = False
    try:
        nginx.start()
        edge.start()
        if minimal is not None:
            minimal.start()
            log(
                f"nginx on {HOST}:{nginx.port}, edge on {HOST}:{edge.port}, minimal on "
                f"{HOST}:{minimal.port}; warming the page cache"
            )
        else:
            log(f"nginx on {HOST}:{nginx.port}, edge on {HOST}:{edge.port}; warming the page cache")
        edge_files = [p for p in edge.disk_root.rglob("*") if p.is_file()]
        warm_page_cache([src / n for n in names] + edge_files)
        rng = random.Random()
        for server in servers:
            verify(server, src, opts, rng)
        status, _, _ = http_get(edge.port, f"/c/{names[0]}")
        if status != 403:
            raise BenchError(f"edge answered {status} to a URL without a token: tokens are off")
        log(
            "sample ranges verified (206, right bytes) on "
            + ("all three servers" if minimal is not None else "both servers")
        )
        width = max(len(s.name) for s in servers)
        for rnd in range(1, opts.rounds + 1):
            for label, size in opts.workloads:
                for server in servers:
                    run = measure(wrk, server, label, size, rnd, opts)
                    runs.append(run)
                    log(
                        f"round {rnd} {label:>4} {server.name:<{width}} {run.req_s:>10,.0f} req/s "
                        f"{run.mb_s:>8,.0f} MB/s  p99 {run.latency_p99_ms:,.2f} ms"
                        + "".join(f"\n    WARNING: {p}" for p in run.problems)
                    )
                    warnings += [f"round {rnd} {label} {server.name}: {p}" for p in run.problems]
        completed = True
    finally:
        if minimal is not None:
            minimal.stop()
        edge.stop()
        nginx.stop()
        notes: list[str] = []
        for server in reversed(servers):
            if server.exit_code not in (None, 0):
                notes.append(f"{server.name} exited with status {server.exit_code}")
            notes += [f"{server.name} logged: {line}" for line in server.messages()[:20]]
        warnings += notes
        if not completed:  # the servers' last words, before their directories are removed
            for note in notes:
                log(note)
    return runs, warnings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    nginx_bin, wrk = find_tool("nginx"), find_tool("wrk")
    if nginx_bin is None or wrk is None:
        missing = " and ".join(n for n, p in (("nginx", nginx_bin), ("wrk", wrk)) if p is None)
        print(f"bench.edge: {missing} not found; install with: {INSTALL_HINT}", file=sys.stderr)
        return 2
    command = shlex.join(sys.orig_argv if argv is None else ["python", "-m", "bench.edge", *argv])
    timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = machine_info(nginx_bin, wrk)
    try:
        with (
            sigterm_as_interrupt(),
            tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp,
        ):
            runs, warnings = benchmark(opts, nginx_bin, wrk, Path(tmp))
    except BenchError as exc:
        print(f"bench.edge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.edge: interrupted; servers stopped", file=sys.stderr)
        return 130
    servers = ("nginx", "edge", "minimal") if opts.with_minimal else ("nginx", "edge")
    rows = summarise(runs, opts.workloads, servers)
    report: dict[str, Any] = {
        "timestamp": timestamp,
        "command": command,
        "machine": machine,
        "options": asdict(opts),
        "summary": rows,
        "runs": [asdict(r) | {"cpu_us_per_request": r.cpu_us_per_request} for r in runs],
        "warnings": warnings,
        "table": main_table(rows),
        "detail_table": detail_table(rows),
        "runs_table": runs_table(runs),
    }
    md, js = write_results(report)
    print(report["table"])
    print()
    print(report["detail_table"])
    for warning in warnings:
        print(f"WARNING: {warning}")
    written = [md, js]
    try:
        from bench.plots import plot_edge_run  # matplotlib: the bench extra

        written.append(plot_edge_run(js))
    except ImportError as exc:
        print(f"no plot ({exc}): pip install -e '.[bench]'")
    print("\nwritten: " + ", ".join(str(p.relative_to(HERE.parent)) for p in written))
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
