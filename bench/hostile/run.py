"""The run: one edge, the normal client, and each phase in turn (unloaded, then each attack,
--rounds times): attackers started and stopped, the edge sampled, every phase judged against
its round's unloaded phase, the report printed and written at the end."""

from __future__ import annotations

import os
import random
import resource
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psutil

from bench.hostile import python_attacker
from bench.hostile.attackers import Attacker, slowhttptest_cmd
from bench.hostile.cages import Cages
from bench.hostile.options import Options
from bench.hostile.player import Player
from bench.hostile.probes import Sampler, edge_gauges, edge_rss_mib
from bench.hostile.report import markdown, print_phase, write_results
from bench.hostile.verdicts import Phase, judge, overall, summarise_latency
from bench.report import MIB, git_state
from bench.servers import HOST, BenchError, Edge, find_tool

FILE_NAME: Final = "big.bin"
METRICS_FLUSH_S: Final = 1.2  # edge workers publish their counters once a second


def start_attackers(
    attack: str,
    opts: Options,
    edge: Edge,
    tool: str,
    binary: str | None,
    logs: Path,
    cages: Cages,
) -> list[Attacker]:
    path = edge.paths[FILE_NAME]
    secs = opts.ramp_s + opts.duration_s + 1
    conns = {"slowloris": opts.slowloris, "slow-read": opts.slow_read}
    conns["range-abuse"] = opts.range_conns
    conns["idle"] = opts.idle
    parts = list(conns) if attack == "all" else [attack]
    out = []
    for part in parts:
        log = logs / f"{attack}-{part}.log"
        if part != "idle" and tool == "slowhttptest":
            assert binary is not None
            url = f"http://{HOST}:{edge.port}{path}"
            cmd = slowhttptest_cmd(binary, part, url, conns[part], opts.rate, int(secs + 0.5))
            out.append(Attacker(part, "slowhttptest", cmd, log, cages))
        else:
            rate = max(opts.rate, int(conns[part] / max(opts.ramp_s - 1, 1)))  # idle: fast
            cmd = python_attacker.command(part, edge.port, path, conns[part], rate, secs)
            out.append(Attacker(part, "python", cmd, log, cages))
    return out


def run_phase(
    name: str, opts: Options, edge: Edge, player: Player, attackers_fn: Any
) -> tuple[Phase, list[str]]:
    """Measure one phase: start the attackers (if any), let them build up, measure the normal
    client while sampling the edge, stop them, let the edge settle."""
    rss_before = edge_rss_mib(edge)
    _, errors_before = edge_gauges(edge)
    attackers: list[Attacker] = attackers_fn() if attackers_fn else []
    sampler = Sampler(edge)
    try:
        deadline = time.monotonic() + opts.ramp_s
        for a in attackers:
            a.ready.wait(max(deadline - time.monotonic(), 0))
        time.sleep(max(deadline - time.monotonic(), 0))
        times, at, failed = player.measure(opts.duration_s)
    finally:
        sampler.stop()
        reports = {f"{a.attack} ({a.tool})": a.stop() for a in attackers}
    time.sleep(METRICS_FLUSH_S)
    conns_after, errors_after = edge_gauges(edge)
    deltas = {k: errors_after.get(k, 0) - errors_before.get(k, 0) for k in errors_after}
    tools = sorted({a.tool for a in attackers}) or ["-"]
    phase = Phase(
        attack=name,
        tool="+".join(tools),
        latency=summarise_latency(times, failed, at),
        rss_before_mib=rss_before,
        rss_peak_mib=max(sampler.rss_peak, rss_before),
        rss_after_mib=edge_rss_mib(edge),
        conns_peak=sampler.conns_peak,
        conns_after=conns_after,
        errors={k: v for k, v in deltas.items() if v and not k.startswith(("code_", "gc_"))},
        codes={k[5:]: v for k, v in deltas.items() if v and k.startswith("code_")},
        attackers=reports,
        gc_runs=deltas.get("gc_runs", 0),
        gc_pause_ms=deltas.get("gc_pause_us", 0) / 1000,
    )
    return phase, sampler.problems


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (the edge and the attackers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def check_limits(opts: Options, nofile: int) -> list[str]:
    """Warnings when the idle connections cannot all be held."""
    warnings = []
    # Each edge connection holds two descriptors (the transport's and a dup for sendfile),
    # and SO_REUSEPORT spreads connections about evenly, not exactly: allow 25 % skew.
    per_worker = int(opts.idle * 1.25 / opts.workers) * 2 + 256
    if per_worker > nofile:
        warnings.append(
            f"RLIMIT_NOFILE {nofile} < ~{per_worker} descriptors per edge worker for "
            f"{opts.idle} idle connections: {opts.idle} cannot be reached"
        )
    if opts.idle + 256 > nofile:
        warnings.append(f"RLIMIT_NOFILE {nofile}: the idle attacker cannot open {opts.idle}")
    return warnings


def run(opts: Options) -> int:
    nofile = raise_nofile()[0]
    warnings = check_limits(opts, nofile)
    binary = find_tool("slowhttptest")
    tool = opts.tool
    if tool == "auto":
        tool = "slowhttptest" if binary else "python"
    if tool == "slowhttptest" and binary is None:
        raise BenchError("slowhttptest not found (Debian: apt-get install slowhttptest)")
    started = time.monotonic()
    timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    phases: list[Phase] = []
    cages = Cages(opts.attacker_cpu)
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        file = src / FILE_NAME
        file.write_bytes(random.Random(opts.seed).randbytes(opts.file_mib * MIB))
        edge = Edge(
            root / "edge", src, [FILE_NAME], workers=opts.workers,
            header_separate_segment=False, sendfile=True,
        )  # fmt: skip
        edge.start()
        player: Player | None = None
        try:
            edge_nofile = psutil.Process(edge.proc.pid).rlimit(psutil.RLIMIT_NOFILE)  # type: ignore[union-attr]
            print(f"edge on port {edge.port}, RLIMIT_NOFILE {edge_nofile}, attackers: {tool}")
            cages.cage()  # made now, so that what is printed is what will happen
            print(f"attackers run {cages.describe()}")
            player = Player(edge.port, edge.paths[FILE_NAME], file, opts.seed, opts.normal_rate)
            player.measure(2.0)  # warm the page cache, the descriptor cache, the connection
            for round_no in range(1, opts.rounds + 1):
                base, problems = run_phase("unloaded", opts, edge, player, None)
                warnings += problems
                base.verdict = "baseline"
                base.round = round_no
                phases.append(base)
                print_phase(base)
                for attack in opts.attacks:
                    phase, problems = run_phase(
                        attack, opts, edge, player,
                        lambda a=attack: start_attackers(a, opts, edge, tool, binary, root, cages),
                    )  # fmt: skip
                    warnings += problems
                    phase.round = round_no
                    judge(phase, base, opts.p99_floor_ms, opts.rss_bound_mib)
                    phases.append(phase)
                    print_phase(phase)
            _, errors = edge_gauges(edge)
        finally:
            if player is not None:
                player.close()
            edge.stop()
            cages.close()
            warnings += [f"edge: {m}" for m in edge.messages() if "Traceback" in m]
        if edge.exit_code not in (0, None):
            warnings.append(f"edge exited {edge.exit_code}")
    verdicts = overall(phases)
    report = {
        "timestamp": timestamp,
        "took_s": round(time.monotonic() - started, 1),
        "options": asdict(opts),
        "nofile": nofile,
        "edge_nofile": list(edge_nofile),
        "attack_tool": tool,
        "attackers_run": cages.describe(),
        "machine": {"nproc": str(len(os.sched_getaffinity(0))), "git": git_state()},
        "phases": [asdict(p) for p in phases],
        "verdicts": [asdict(v) for v in verdicts],
        "edge_errors_total": errors,
        "warnings": warnings,
    }
    text = markdown(report, phases)
    print("\n" + text)
    md, js = write_results(report, text)
    print(f"results: {md} {js}")
    complete = len(phases) == opts.rounds * (1 + len(opts.attacks))
    passed = complete and all(v.ok for v in verdicts)
    return 0 if passed and edge.exit_code in (0, None) else 1
