"""Part (c) of bench/steering.py: one steering process under wrk, fed by a fake control.

The fake control is a thread of the benchmark process (http.server) serving the snapshot with
an ETag and 304s; `edgefleet steering serve` runs as a subprocess on 127.0.0.1 port 0; wrk -t1
posts one content id per request (bench/wrk_steer.lua) with client addresses drawn from the
snapshot's prefixes. One more run publishes a new snapshot version two seconds in, to show
what a full reload costs the requests answered meanwhile.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Final

import psutil

from bench.steering_fleet import Fleet, content_id
from edgefleet.tokens import Keyring, new_key

HERE: Final = Path(__file__).resolve().parent
LUA: Final = HERE / "wrk_steer.lua"
HOST: Final = "127.0.0.1"
WRK_RE: Final = re.compile(r"^WRK_RESULT (\{.*\})$", re.MULTILINE)
READY_RE: Final = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
READY_TIMEOUT_S: Final = 180.0
POST_STATUS_RE: Final = re.compile(
    r'edgefleet_steering_responses_total\{route="post",status="(\d+)"\} (\S+)'
)


class FakeControl:
    """GET /v1/snapshot with an ETag and 304s, from a thread of this process."""

    def __init__(self, body: bytes) -> None:
        self.body, self.etag = body, '"1"'
        control = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body, etag = control.body, control.etag
                if self.path != "/v1/snapshot":
                    self.send_error(404)
                elif self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(200)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-control")
        self.thread.start()
        self.url = f"http://{HOST}:{self.server.server_address[1]}"

    def replace(self, body: bytes, version: int) -> None:
        """Serve *body* as snapshot *version* from now on."""
        self.body, self.etag = body, f'"{version}"'

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request; (status, body) also for error statuses."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_steering(
    workdir: Path, control_url: str, log: IO[str]
) -> tuple[subprocess.Popen[str], int, float]:
    """Start `edgefleet steering serve`; (process, port, seconds until /healthz is 200)."""
    ring = Keyring(keys={"bench": bytes.fromhex(new_key())}, current="bench")
    (workdir / "keys.toml").write_text(ring.dumps())
    (workdir / "secret").write_text(new_key())
    conf = workdir / "steering.toml"
    conf.write_text(
        f'control_url = "{control_url}"\nsecret_file = "secret"\nkeyring = "keys.toml"\n'
        "uvloop = true\n[listen]\nport = 0\n"
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefleet.cli", "steering", "serve", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    match = READY_RE.search(proc.stdout.readline())
    if match is None:
        proc.kill()
        proc.wait()
        raise SystemExit(f"steering did not start: {(workdir / 'steering.log').read_text()}")
    port = int(match.group(1))
    while time.monotonic() - started < READY_TIMEOUT_S:
        if http(f"http://{HOST}:{port}/healthz")[0] == 200:
            return proc, port, time.monotonic() - started
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise SystemExit("steering never loaded the snapshot")


def write_bodies(fleet: Fleet, path: Path, count: int, rng: random.Random) -> list[bytes]:
    """*count* request bodies, one per line; returns them."""
    bodies = [
        json.dumps(
            {
                "client_ip": fleet.client_ip(rng),
                "content_ids": [content_id(rng.randrange(fleet.content_ids))],
                "max_urls": 3,
            },
            separators=(",", ":"),
        ).encode()
        for _ in range(count)
    ]
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return bodies


def run_wrk(
    wrk: str,
    port: int,
    connections: int,
    duration_s: int,
    bodies: Path,
    meanwhile: Callable[[], None] | None = None,
) -> Any:
    """One wrk run (calling *meanwhile* while it runs); the Lua script's figures."""
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration_s}s", "-s", str(LUA)]
    cmd += [f"http://{HOST}:{port}", "--", str(bodies)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        if meanwhile is not None:
            meanwhile()
        out, err = proc.communicate(timeout=duration_s + 60)
    match = WRK_RE.search(out)
    if match is None:
        raise SystemExit(f"wrk failed: {out}\n{err}")
    return json.loads(match.group(1))


def reload_under_load(
    control: FakeControl, body: bytes, port: int, pid: int, figures: dict[str, Any]
) -> Callable[[], None]:
    """A `meanwhile` for run_wrk: after 2 s, publish snapshot version 2 and time its arrival."""

    def act() -> None:
        time.sleep(2.0)
        started = time.monotonic()
        control.replace(body.replace(b'"version":1,', b'"version":2,', 1), 2)
        while time.monotonic() - started < READY_TIMEOUT_S:
            status, health = http(f"http://{HOST}:{port}/healthz")
            if status == 200 and json.loads(health).get("snapshot_version") == 2:
                figures["reload_s"] = time.monotonic() - started
                break
            time.sleep(0.05)
        figures["rss_peak_after_reload"] = _vm_hwm(pid)

    return act


def throughput(
    fleet: Fleet, snapshot_path: Path, conns: list[int], duration_s: int, workdir: Path
) -> dict[str, Any]:
    """Serve the snapshot, check sample answers, then wrk at each connection count."""
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    control = FakeControl(snapshot_path.read_bytes())
    log = open(workdir / "steering.log", "w")  # noqa: SIM115 - closed in the finally clause
    try:
        proc, port, ready_s = start_steering(workdir, control.url, log)
    except BaseException:
        log.close()
        control.stop()
        raise
    try:
        server = psutil.Process(proc.pid)
        rss_loaded = server.memory_info().rss
        bodies_path = workdir / "bodies.txt"
        bodies = write_bodies(fleet, bodies_path, 20_000, random.Random(7))
        classes: dict[str, int] = {}
        for body in bodies[:500]:
            status, answer = http(f"http://{HOST}:{port}/v1/steer", body)
            if status != 200:
                raise SystemExit(f"sample request failed: {status} {answer[:200]!r}")
            result = json.loads(answer)["results"][0]
            classes[result["class"]] = classes.get(result["class"], 0) + 1
        runs = []
        for c in conns:
            cpu0 = sum(server.cpu_times()[:2])
            figures = run_wrk(wrk, port, c, duration_s, bodies_path)
            cpu = sum(server.cpu_times()[:2]) - cpu0
            figures["connections"] = c
            figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
            figures["cpu_us_per_req"] = cpu * 1e6 / max(1, figures["requests"])
            runs.append(figures)
        # A snapshot update (a full 1,000,000-id snapshot decoded and indexed) under load.
        reload: dict[str, Any] = {}
        c = conns[0]
        cpu0 = sum(server.cpu_times()[:2])
        act = reload_under_load(control, fleet.body, port, proc.pid, reload)
        figures = run_wrk(wrk, port, c, duration_s, bodies_path, act)
        cpu = sum(server.cpu_times()[:2]) - cpu0
        figures["connections"] = f"{c}, snapshot reload after 2 s"
        figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
        figures["cpu_us_per_req"] = cpu * 1e6 / max(1, figures["requests"])
        runs.append(figures)
        status_text = http(f"http://{HOST}:{port}/metrics")[1].decode()
        non_200 = sum(
            float(m.group(2)) for m in POST_STATUS_RE.finditer(status_text) if m.group(1) != "200"
        )
        hwm = _vm_hwm(proc.pid)
        return {
            "ready_s": ready_s,
            "rss_loaded": rss_loaded,
            "rss_after": server.memory_info().rss,
            "rss_peak": hwm,
            "reload": reload,
            "classes": classes,
            "runs": runs,
            "non_200": non_200,
        }
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
        control.stop()


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
