"""The playback load test: viewers (bench/locustfile.py) against a running fleet, bounded in time.

    python -m bench.loadtest --steering http://127.0.0.1:7080 --duration 60s --users 10

runs locust headless as a subprocess for the given time (and kills it if it overruns by more
than a grace period), then writes `bench/results/loadtest-<UTC>/`:

    report.html                 locust's HTML report (requests, custom PLAYER metrics, charts)
    locust_stats*.csv           locust's CSV reports (stats, per-second history, failures)
    player.jsonl                every session report and the segment/failover timeline
    timeline.png                throughput and failures over time
    summary.json, summary.md    the figures below
    locust.log                  locust's own output

and prints the summary: sessions started / failed, rebuffer ratio (rebuffer seconds per
watched second), startup p50/p95 and throughput. The exit status is 0 when sessions ran and
none failed, 1 otherwise, 2 when steering cannot be reached (start the fleet first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.player import (
    DEMO_TITLES,
    PlayerConfig,
    Summary,
    option_error,
    parse_title,
    summarise,
)
from bench.timeline import MB, Timeline, read_player_log, timeline

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent
RESULTS_DIR: Final = HERE / "results"
DEMO_STEERING: Final = "http://127.0.0.1:7080"
GRACE_S: Final = 60.0  # locust's start-up and report writing, beyond the run time
DURATION: Final = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?")


def parse_duration(text: str) -> int:
    """ "90", "90s", "2m", "1h30m" → seconds (locust's --run-time syntax); ValueError otherwise."""
    match = DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"--duration: {text!r} is not a duration like 60s, 5m or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"--duration: {text!r} must be longer than 0 s")
    return total


def summary_doc(
    summary: Summary, tl: Timeline, duration_s: float, users: int, steering: str
) -> dict[str, Any]:
    """summary.json: the player figures plus throughput."""
    return {
        "steering": steering,
        "users": users,
        "duration_s": duration_s,
        **summary.to_json(),
        "throughput_mb_s": summary.bytes / MB / duration_s if duration_s > 0 else 0.0,
        "peak_mb_s": max(tl.mb_s, default=0.0),
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def summary_text(doc: dict[str, Any]) -> str:
    """The summary a person reads (printed, and summary.md)."""
    lines = [
        f"playback load test: {doc['users']} users for {doc['duration_s']:.0f} s against "
        f"{doc['steering']}",
        f"  sessions    {doc['sessions']} started: {doc['completed']} completed, "
        f"{doc['failed']} failed, {doc['cut']} still playing when the test ended",
        f"  startup     p50 {_seconds(doc['startup_p50_s'])}, p95 {_seconds(doc['startup_p95_s'])}",
        f"  rebuffer    {doc['rebuffer_s']:.1f} s in {doc['rebuffers']} stalls over "
        f"{doc['watched_s']:.1f} s watched: ratio {doc['rebuffer_ratio']:.4f} "
        f"({doc['rebuffer_s_per_hour']:.1f} s per hour watched)",
        f"  failovers   {doc['failovers']} requests retried on the next URL",
        f"  throughput  {doc['throughput_mb_s']:.1f} MB/s ({doc['throughput_mb_s'] * 8:.0f} "
        f"Mbit/s) mean, {doc['peak_mb_s']:.1f} MB/s in the busiest second, "
        f"{doc['bytes'] / 1e9:.2f} GB in all",
    ]
    lines += [f"  failed: {count} sessions: {error}" for error, count in doc["errors"].items()]
    return "\n".join(lines)


# -- running it --------------------------------------------------------------------------------


def steering_ready(url: str, timeout_s: float = 3.0) -> str | None:
    """None when steering answers /healthz with 200, else why not (for the user)."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as resp:
            resp.read()
        return None
    except urllib.error.HTTPError as exc:
        with exc:
            return f"steering at {url} answers /healthz with {exc.code} (no fleet snapshot yet?)"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"steering at {url} is not reachable ({reason})"


def locust_command(opts: argparse.Namespace, out: Path) -> list[str]:
    """The headless locust command line for *opts*, reports into *out*."""
    return [
        sys.executable, "-m", "locust",
        "-f", str(HERE / "locustfile.py"),
        "--headless", "--only-summary",
        "--host", opts.steering,
        "--users", str(opts.users),
        "--spawn-rate", str(opts.spawn_rate or max(1.0, opts.users / 5)),
        "--run-time", f"{opts.duration_s}s",
        "--stop-timeout", "0",
        "--exit-code-on-error", "0",  # failovers are failed requests; the summary judges
        "--csv", str(out / "locust"), "--csv-full-history",
        "--html", str(out / "report.html"),
        "--player-log", str(out / "player.jsonl"),
        "--titles", opts.titles,
        "--client-ip", opts.client_ip,
        "--bitrate-bps", str(opts.bitrate_bps),
        "--audio-bitrate-bps", str(opts.audio_bitrate_bps),
        "--segment-bytes", str(opts.segment_bytes),
        "--startup-buffer-s", str(opts.startup_buffer_s),
        "--buffer-target-s", str(opts.buffer_target_s),
        "--session-s", str(opts.session_s),
        "--max-urls", str(opts.max_urls),
        "--request-timeout-s", str(opts.request_timeout_s),
    ]  # fmt: skip


def run_locust(command: Sequence[str], log: Path, deadline_s: float) -> int:
    """Run locust to completion, or kill its process group after *deadline_s*."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            list(command), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            return proc.wait(deadline_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        except KeyboardInterrupt:  # Ctrl-C: stop locust with us
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options (a bad value exits with status 2 naming it)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description="Playback load test against a running fleet (make demo).",
    )
    add = parser.add_argument
    add("--steering", default=DEMO_STEERING, help="steering URL (default: the demo's)")
    add("--duration", default="60s", help="run time: 60s, 5m, 1h30m (default 60s)")
    add("--users", type=int, default=10, help="concurrent viewers (default 10)")
    add("--spawn-rate", type=float, default=0.0, help="viewers started per second")
    add(
        "--titles",
        default=DEMO_TITLES,
        help="comma-separated titles, content ids joined by '+' (default: the demo's files)",
    )
    add("--client-ip", default="127.0.0.1", help="client_ip sent to steering")
    add("--bitrate-bps", type=float, default=8e6, help="video bitrate (default 8e6)")
    add("--audio-bitrate-bps", type=float, default=128e3, help="each further track's bitrate")
    add("--segment-bytes", type=int, default=2 << 20, help="bytes per range (default 2 MiB)")
    add("--startup-buffer-s", type=float, default=4.0)
    add("--buffer-target-s", type=float, default=30.0)
    # 40 s: a one-minute run sees sessions end and new ones steer, not only long buffering.
    add("--session-s", type=float, default=40.0, help="media seconds per session (40)")
    add("--max-urls", type=int, default=3, help="failover depth asked of steering")
    add("--request-timeout-s", type=float, default=10.0)
    add("--out-dir", type=Path, default=RESULTS_DIR, help="where loadtest-<UTC>/ goes")  # fmt: skip
    opts = parser.parse_args(argv)
    try:
        opts.duration_s = parse_duration(opts.duration)
    except ValueError as exc:
        parser.error(str(exc))
    if opts.users < 1:
        parser.error(f"--users: {opts.users} must be at least 1")
    if opts.spawn_rate < 0:
        parser.error(f"--spawn-rate: {opts.spawn_rate} must not be negative")
    try:  # the players' own checks, before locust starts
        for title in opts.titles.split(","):
            parse_title(title)
    except ValueError as exc:
        parser.error(f"--titles: {exc}")
    try:
        PlayerConfig(
            bitrate_bps=opts.bitrate_bps,
            extra_track_bitrate_bps=opts.audio_bitrate_bps,
            segment_bytes=opts.segment_bytes,
            startup_buffer_s=opts.startup_buffer_s,
            buffer_target_s=opts.buffer_target_s,
            session_s=opts.session_s,
            max_urls=opts.max_urls,
        )
    except ValueError as exc:
        parser.error(option_error(exc))
    if not opts.request_timeout_s > 0:
        parser.error(f"--request-timeout-s: {opts.request_timeout_s} must be positive")
    opts.steering = opts.steering.rstrip("/")
    if not re.match(r"https?://", opts.steering):
        parser.error(f"--steering: {opts.steering!r} is not an http(s) URL")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    problem = steering_ready(opts.steering)
    if problem:
        print(
            f"bench.loadtest: {problem}.\n"
            "Start the demo fleet first, in another terminal: make demo\n"
            "(or point --steering at a running steering service).",
            file=sys.stderr,
        )
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = opts.out_dir / f"loadtest-{stamp}"
    out.mkdir(parents=True)
    command = locust_command(opts, out)
    print(f"bench.loadtest: {opts.users} viewers for {opts.duration_s} s → {out}", flush=True)
    start = time.time()
    try:
        code = run_locust(command, out / "locust.log", opts.duration_s + GRACE_S)
    except subprocess.TimeoutExpired:
        print(f"bench.loadtest: locust overran by {GRACE_S:.0f} s and was killed; see "
              f"{out / 'locust.log'}", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("bench.loadtest: interrupted", file=sys.stderr)
        return 130
    if code != 0:
        print(f"bench.loadtest: locust exited with {code}; see {out / 'locust.log'}\n"
              f"  {shlex.join(command)}", file=sys.stderr)  # fmt: skip
        return 1
    try:
        with open(out / "player.jsonl") as fh:
            log = read_player_log(fh)
    except (OSError, ValueError) as exc:
        print(f"bench.loadtest: {exc}", file=sys.stderr)
        return 1
    summary = summarise(report for _, report in log.sessions)
    tl = timeline(log, start, opts.duration_s)
    doc = summary_doc(summary, tl, opts.duration_s, opts.users, opts.steering)
    doc["command"] = shlex.join(command)
    text = summary_text(doc)
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "summary.md").write_text(f"# Playback load test ({stamp})\n\n```\n{text}\n```\n")
    from bench.plots import timeline_png  # matplotlib is imported only when plotting

    timeline_png(tl, out / "timeline.png", title=f"{opts.users} viewers, {opts.steering}")
    print(text)
    print(f"  report      {out}/report.html, locust_stats.csv, timeline.png, summary.json")
    return 0 if summary.sessions > 0 and summary.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
