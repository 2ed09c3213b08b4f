"""Fill agent throughput on loopback, against curl downloading the same files from the same edge.

    python -m bench.fill [--files 20] [--mib 32] [--parallel 4] [--rounds 2]

One source edge (a real `edgefleet edge serve`) holds N files of S MiB. Each round, in turn:

- curl fetches every file (`--parallel --parallel-max P`, signed URLs) into a directory on the
  same filesystem: the ceiling of plain HTTP downloading on this machine;
- `edgefleet fill run --now` fills an empty appliance (index + disk) from a manifest listing
  the same files, P downloads at a time, no rate cap: it also hashes every byte (xxh3-128),
  fsyncs, renames and commits each file to LMDB.

The ratio agent/curl says what the agent's safety costs. Wall times include each program's
start-up (the agent's Python imports, curl's exec). Loopback only. Results go to
bench/results/fill-<UTC timestamp>.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from edgefleet.tokens import signed_query
from tests.fill.agent.fillproc import FillTarget, edge_with_keyring, manifest_doc, shared_keyring

HERE: Final = Path(__file__).resolve().parent
RESULTS: Final = HERE / "results"
MIB: Final = 1 << 20
SUMMARY_RE = re.compile(r"\(([\d,.]+) MB/s\)")


def curl_round(port: int, ids: list[str], keyring: Any, out: Path, parallel: int) -> float:
    """Seconds for curl to fetch every file once (P at a time)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    expiry = int(time.time()) + 3600
    cmd = ["curl", "--silent", "--no-progress-meter", "--show-error", "--fail", "--parallel"]
    cmd += ["--parallel-max", str(parallel)]
    for cid in ids:
        url = f"http://127.0.0.1:{port}/c/{cid}?{signed_query(keyring, cid, expiry)}"
        cmd += ["-o", str(out / cid), url]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


def agent_round(target: FillTarget) -> tuple[float, float]:
    """(wall seconds of `edgefleet fill run`, the MB/s its summary line reports)."""
    for disk in target.edge.disks:
        for child in disk.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
    shutil.rmtree(target.edge.root / "index", ignore_errors=True)
    t0 = time.monotonic()
    done = target.run(timeout=1800)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"fill run failed:\n{done.stderr}")
    match = SUMMARY_RE.search(done.stderr)
    return wall, float(match.group(1).replace(",", "")) if match else 0.0


def markdown(args: argparse.Namespace, rows: list[dict[str, float]]) -> str:
    """The results as Markdown."""
    total_mb = args.files * args.mib * MIB / 1e6
    lines = [
        f"# Fill agent vs curl on loopback — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{args.files} files x {args.mib} MiB = {total_mb:,.0f} MB, {args.parallel} downloads at "
        f"a time, one source edge ({args.workers} worker(s)), no rate cap. Machine: "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}. Shared, noisy machine: ratios over absolute values.",
        "",
        "| round | curl s | curl MB/s | agent s (wall) | agent MB/s (wall) "
        "| agent MB/s (own summary) | agent/curl (wall) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r['curl_s']:.2f} | {total_mb / r['curl_s']:,.0f} | {r['agent_s']:.2f} "
            f"| {total_mb / r['agent_s']:,.0f} | {r['agent_mb_s']:,.0f} "
            f"| {r['curl_s'] / r['agent_s']:.2f} |"
        )
    best_curl = min(r["curl_s"] for r in rows)
    best_agent = min(r["agent_s"] for r in rows)
    lines += [
        "",
        f"Best of {len(rows)}: curl {total_mb / best_curl:,.0f} MB/s, agent "
        f"{total_mb / best_agent:,.0f} MB/s — the agent runs at "
        f"**{best_curl / best_agent:.2f}x** curl's throughput (1.00 = as fast as curl).",
        "",
        "The agent's own figure (its summary line) excludes Python start-up but includes "
        "reading the manifest and reconcile; curl neither hashes nor fsyncs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the Markdown report."""
    p = argparse.ArgumentParser(prog="python -m bench.fill", description=__doc__)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--mib", type=int, default=32, help="size of each file")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="source edge workers")
    args = p.parse_args(argv)
    if shutil.which("curl") is None:
        print("bench.fill: curl is not installed")
        return 2
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fill-") as tmp:
        root = Path(tmp)
        keyring = shared_keyring()
        src = root / "src-files"
        src.mkdir()
        files: dict[str, bytes] = {}
        for i in range(args.files):
            files[f"bench{i:03d}.mp4"] = os.urandom(args.mib * MIB)
        origin = edge_with_keyring(root / "origin", files, keyring, workers=args.workers)
        origin.start()
        try:
            target = FillTarget(root / "target", keyring, parallel_downloads=args.parallel)
            url = f"http://127.0.0.1:{origin.port}"
            target.write_manifest(manifest_doc(files, ["origin"], {"origin": url}))
            ids = list(files)
            del files
            for i in range(args.rounds):
                curl_s = curl_round(origin.port, ids, keyring, root / "curl-out", args.parallel)
                agent_s, agent_mb_s = agent_round(target)
                rows.append({"curl_s": curl_s, "agent_s": agent_s, "agent_mb_s": agent_mb_s})
                print(f"round {i + 1}: curl {curl_s:.2f} s, agent {agent_s:.2f} s", flush=True)
        finally:
            origin.stop()
    report = markdown(args, rows)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"fill-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    path.write_text(report)
    print(report)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
