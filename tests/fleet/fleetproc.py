"""A real fleet on loopback for tests: control, steering and edges as separate processes.

Every process listens on 127.0.0.1 port 0 and is found through its "serving on" line. Control
starts first; edges point at its real port and report their own base URL when they register
(the topology leaves base_url out); steering starts last. Edges run in their own process
groups so a test can kill a whole appliance at once, as a machine dying would.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.disks import open_disk
from edge.importer import import_directory
from edge.index import ContentIndex
from edgefleet.fleet import role_token
from edgefleet.tokens import Keyring, new_key
from tests.processes import terminate, wait_for_line

READY = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))")


@dataclass
class Proc:
    """One started service."""

    name: str
    popen: subprocess.Popen[str]
    url: str
    log: Path
    group: bool = False  # started as its own process group (an edge)

    def alive(self) -> bool:
        return self.popen.poll() is None


def start(name: str, args: list[str], log: Path, *, group: bool = False) -> Proc:
    """Start `edgefleet ARGS…` and wait (bounded) for its "serving on" line."""
    with open(log, "a") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.cli", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=group,
        )
    assert popen.stdout is not None
    match = wait_for_line(popen.stdout, READY, 30)
    if match:
        return Proc(name, popen, match.group(1), log, group)
    popen.kill()
    popen.wait()
    raise RuntimeError(f"{name} did not start:\n{log.read_text()}")


def stop(proc: Proc, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop a service (an edge's whole process group: supervisor, workers, reporter)."""
    terminate(proc.popen, timeout, sig=sig, group=proc.group)


@dataclass
class Fleet:
    """Control + steering + edges, all on loopback."""

    root: Path
    sites: dict[str, list[str]]  # site → client prefixes
    edges: dict[str, tuple[str, dict[str, bytes]]]  # appliance → (site, files)
    heartbeat_s: float = 0.5
    snapshot_s: float = 0.5
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.secret = os.urandom(32)
        (self.root / "fleet.secret").write_text(self.secret.hex())
        self.keyring = Keyring({"k1": bytes.fromhex(new_key())}, "k1")
        (self.root / "keys.toml").write_text(self.keyring.dumps())

    # -- configuration ------------------------------------------------------------------

    def write_topology(self) -> None:
        lines = [
            "[fleet]",
            f"heartbeat_interval_s = {self.heartbeat_s}",
            "down_after_missed = 3",
            # The edges share this machine's CPU, which other tests keep busy: CPU saturation
            # has its own tests (tests/control, tests/steering), so it is off here.
            "saturation_threshold = 100.0",
            "",
            '[[regions]]\nname = "r1"',
        ]
        names = list(self.sites)
        for i, (site, prefixes) in enumerate(self.sites.items()):
            lines += [
                "[[sites]]",
                f'name = "{site}"',
                'region = "r1"',
                f"lat = {50 + i}",
                "lon = 4.0",
                f"prefixes = {json.dumps(prefixes)}",
                "[sites.costs]",
                *(f"{other} = 10" for other in names if other != site),
            ]
        for name, (site, _) in self.edges.items():
            lines += ["[[appliances]]", f'name = "{name}"', f'site = "{site}"']
        (self.root / "topology.toml").write_text("\n".join(lines) + "\n")

    def start_control(self) -> Proc:
        self.write_topology()
        conf = self.root / "control.toml"
        conf.write_text(
            'topology = "topology.toml"\nsecret_file = "fleet.secret"\nstore = "control.db"\n'
            "tick_interval_s = 0.1\n"
            f'[listen]\nhost = "127.0.0.1"\nport = {self.control_port()}\n'
        )
        proc = start("control", ["control", "serve", "-c", str(conf)], self.root / "control.log")
        self.procs["control"] = proc
        return proc

    def control_port(self) -> int:
        proc = self.procs.get("control")
        return int(proc.url.rsplit(":", 1)[1]) if proc else 0

    def start_edge(self, name: str) -> Proc:
        _, files = self.edges[name]
        d = self.root / name
        if not (d / "index").exists():
            src = d / "src"
            src.mkdir(parents=True)
            for cid, data in files.items():
                (src / cid).write_bytes(data)
            disk = open_disk(d / "disk0", create=True)
            index = ContentIndex(d / "index")
            try:
                import_directory(src, index, [disk], progress_out=io.StringIO())
            finally:
                index.close()
        conf = d / "edge.toml"
        conf.write_text(
            'index = "index"\ndisks = ["disk0"]\nworkers = 1\nruntime_dir = "run"\n'
            "drain_timeout_s = 5.0\n"
            '[listen]\nhost = "127.0.0.1"\nport = 0\n'
            '[tokens]\nkeyring = "../keys.toml"\n'
            f'[control]\nurl = "http://127.0.0.1:{self.control_port()}"\n'
            f'appliance = "{name}"\nsecret_file = "../fleet.secret"\n'
        )
        proc = start(name, ["edge", "serve", "-c", str(conf)], d / "edge.log", group=True)
        self.procs[name] = proc
        return proc

    def start_steering(self) -> Proc:
        conf = self.root / "steering.toml"
        conf.write_text(
            f'control_url = "http://127.0.0.1:{self.control_port()}"\n'
            'secret_file = "fleet.secret"\nkeyring = "keys.toml"\n'
            f"snapshot_interval_s = {self.snapshot_s}\n"
            '[listen]\nhost = "127.0.0.1"\nport = 0\n'
        )
        proc = start("steering", ["steering", "serve", "-c", str(conf)], self.root / "steer.log")
        self.procs["steering"] = proc
        return proc

    def restart_control(self, port: int) -> Proc:
        """Start control again on *port*, the one the edges and steering were given."""
        conf = self.root / "control.toml"
        args = ["control", "serve", "-c", str(conf), "--port", str(port)]
        proc = start("control", args, self.root / "control.log")
        self.procs["control"] = proc
        return proc

    def restart_stopped(self) -> None:
        """Start again what a test stopped or killed: control (on its port), then edges."""
        if not self.procs["control"].alive():
            self.restart_control(self.control_port())
        for name in self.edges:
            if not self.procs[name].alive():
                stop(self.procs[name])  # reaps it and closes its stdout
                self.start_edge(name)

    def start_all(self) -> Fleet:
        self.start_control()
        for name in self.edges:
            self.start_edge(name)
        self.start_steering()
        return self

    def stop_all(self) -> None:
        for name in ["steering", *self.edges, "control"]:
            if name in self.procs:
                stop(self.procs[name])

    # -- asking the services --------------------------------------------------------------

    def steer(self, client_ip: str, content_ids: list[str], max_urls: int = 5) -> dict[str, Any]:
        body = {"client_ip": client_ip, "content_ids": content_ids, "max_urls": max_urls}
        return post_json(f"{self.procs['steering'].url}/v1/steer", body)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        token = role_token(self.secret, "admin")
        return call_json(method, f"{self.procs['control'].url}{path}", body, token)


def call_json(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    """One JSON request; HTTP errors come back as {"status": code, ...}."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        with exc:
            return {"status": exc.code, **json.load(exc)}


def post_json(url: str, body: Any) -> dict[str, Any]:
    answer: dict[str, Any] = call_json("POST", url, body)
    return answer


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll *predicate* until true; returns the seconds it took (bounded by *timeout*)."""
    start_t = time.monotonic()
    last: Any = None
    while time.monotonic() - start_t < timeout:
        try:
            last = predicate()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            last = exc
        if last is True:
            return time.monotonic() - start_t
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
