"""The chaos drill's fleet: control, two steering replicas, edges in two sites and an origin.

Everything runs on 127.0.0.1 under one directory, each service started with the same
`edgefleet …` command an operator would use, in its own process group (so that a whole
appliance, supervisor and workers, can be SIGKILLed or SIGSTOPped at once, as a machine dying
or hanging would). Services first listen on port 0 and are found through their "serving on"
line; a restart reuses the port the service had, as a rebooted machine keeps its address.

Content: every edge (and the origin) imports the same few random files with `edgefleet edge
import`, so that every player has a failover in its own site and one in the other; the drill
keeps the source files to compare every byte a player receives.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edgefleet.fleet import role_token
from edgefleet.tokens import Keyring, new_key

READY: Final = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))")
MIB: Final = 1 << 20
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 20.0
# Client addresses: steering finds a player's site by its address, and a signed URL is bound
# to it, so the drill's players really connect from these (any 127/8 address is loopback).
SITE_PREFIXES: Final = {"ams1": "127.0.0.0/25", "lon1": "127.0.0.128/25"}
SITE_CLIENTS: Final = {"ams1": "127.0.0.10", "lon1": "127.0.0.140"}
ORIGIN: Final = "origin-1"


@dataclass
class Service:
    """One running (or stopped) service process."""

    name: str
    args: list[str]  # after `edgefleet`, without --port
    log: Path
    port: int = 0  # 0 until the first start; then kept for restarts
    popen: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The base URL it serves on."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Its process id (and process group id: every service leads its own group)."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process runs (or is stopped by SIGSTOP)."""
        return self.popen is not None and self.popen.poll() is None


def _drain_stdout(popen: subprocess.Popen[str], log: Path) -> None:
    # A service's stdout is a pipe: it must be read to the end or a chatty service would
    # block on a full pipe in the middle of the drill.
    assert popen.stdout is not None
    with open(log, "a") as out:
        for line in popen.stdout:
            out.write(line)


def start_service(service: Service) -> Service:
    """Start *service* (on its known port, or port 0) and wait for its "serving on" line."""
    argv = [sys.executable, "-m", "edgefleet.cli", *service.args, "--port", str(service.port)]
    with open(service.log, "a") as err:
        popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
    assert popen.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = popen.stdout.readline()
        if not line:
            break
        match = READY.search(line)
        if match:
            service.port = int(match.group(2))
            service.popen = popen
            threading.Thread(
                target=_drain_stdout, args=(popen, service.log), name=f"stdout-{service.name}"
            ).start()
            return service
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
    raise RuntimeError(f"{service.name} did not start; see {service.log}")


def signal_service(service: Service, sig: int) -> None:
    """Send *sig* to the service's whole process group."""
    if service.popen is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, sig)


def stop_service(service: Service, sig: int = signal.SIGTERM) -> None:
    """Stop the service's process group with *sig* (bounded: SIGKILL if it hangs) and reap it."""
    popen = service.popen
    if popen is None:
        return
    if popen.poll() is None:
        signal_service(service, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        signal_service(service, sig)
        try:
            popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            signal_service(service, signal.SIGKILL)
            popen.wait()
    # The group may outlive its leader (workers of a SIGKILLed supervisor): kill what is left.
    signal_service(service, signal.SIGKILL)


@dataclass
class ChaosFleet:
    """The drill's fleet under *root*; `start()` brings it up, `stop()` takes it down."""

    root: Path
    edges_per_site: int = 2
    files: int = 6
    heartbeat_s: float = 0.5
    snapshot_s: float = 0.5
    seed: int = 0
    services: dict[str, Service] = field(default_factory=dict)
    sources: dict[str, bytes] = field(default_factory=dict)  # content id → the origin's bytes
    site_of: dict[str, str] = field(default_factory=dict)  # appliance → site

    @property
    def edges(self) -> list[str]:
        """The edge appliances players are steered to (the origin is not one)."""
        return [n for n, s in self.site_of.items() if s != "origin"]

    @property
    def steering(self) -> list[str]:
        """The steering replicas' service names."""
        return sorted(n for n in self.services if n.startswith("steering-"))

    def runtime_dir(self, appliance: str) -> Path:
        """The appliance's runtime directory (where the fault switches go)."""
        return self.root / appliance / "run"

    # -- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Secret, keyring, content, topology and configs (the ports come at start)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret = os.urandom(32)
        (self.root / "fleet.secret").write_text(self.secret.hex())
        (self.root / "keys.toml").write_text(
            Keyring({"k1": bytes.fromhex(new_key())}, "k1").dumps()
        )
        rng = random.Random(self.seed)
        src = self.root / "src"
        src.mkdir(exist_ok=True)
        for i in range(self.files):
            # Sizes that are no multiple of a segment: the last range of a file is short.
            data = rng.randbytes(rng.randrange(2 * MIB, 5 * MIB))
            (src / f"title-{i:02d}.bin").write_bytes(data)
            self.sources[f"title-{i:02d}.bin"] = data
        for site in SITE_PREFIXES:
            for j in range(self.edges_per_site):
                self.site_of[f"{site}-{chr(ord('a') + j)}"] = site
        self.site_of[ORIGIN] = "origin"

    def _write_topology(self) -> None:
        lines = [
            "[fleet]",
            f"heartbeat_interval_s = {self.heartbeat_s}",
            "down_after_missed = 3",
            # All appliances share this machine's two cores with the players: CPU saturation
            # would rank every URL last and says nothing about resilience.
            "saturation_threshold = 100.0",
            '\n[[regions]]\nname = "r1"\n',
        ]
        sites = {**SITE_PREFIXES, "origin": None}
        for i, (site, prefix) in enumerate(sites.items()):
            role = "origin" if prefix is None else "edge"
            costs = [f"{other} = {50 if 'origin' in (site, other) else 10}" for other in sites]
            prefixes = json.dumps([prefix] if prefix else [])
            lines += [
                "[[sites]]", f'name = "{site}"', 'region = "r1"', f'role = "{role}"',
                f"lat = {50 + i}", "lon = 4.0", f"prefixes = {prefixes}",
                "[sites.costs]", *(c for c in costs if not c.startswith(f"{site} ")), "",
            ]  # fmt: skip
        for name, site in self.site_of.items():
            lines += ["[[appliances]]", f'name = "{name}"', f'site = "{site}"', ""]
        (self.root / "topology.toml").write_text("\n".join(lines))

    def _write_configs(self, control_port: int) -> None:
        control = f"http://127.0.0.1:{control_port}"
        (self.root / "control.toml").write_text(
            'topology = "topology.toml"\nsecret_file = "fleet.secret"\nstore = "control.db"\n'
            f'tick_interval_s = 0.1\n[listen]\nhost = "127.0.0.1"\nport = {control_port}\n'
        )
        (self.root / "steering.toml").write_text(
            f'control_url = "{control}"\nsecret_file = "fleet.secret"\nkeyring = "keys.toml"\n'
            f'snapshot_interval_s = {self.snapshot_s}\n[listen]\nhost = "127.0.0.1"\nport = 0\n'
        )
        for name in self.site_of:
            d = self.root / name
            d.mkdir(exist_ok=True)
            (d / "edge.toml").write_text(
                'index = "index"\ndisks = ["disk0"]\nworkers = 1\nruntime_dir = "run"\n'
                'drain_timeout_s = 5.0\n[listen]\nhost = "127.0.0.1"\nport = 0\n'
                '[tokens]\nrequired = true\nkeyring = "../keys.toml"\n'
                f'[control]\nurl = "{control}"\nappliance = "{name}"\n'
                'secret_file = "../fleet.secret"\n'
            )

    def _import(self) -> None:
        # One `edgefleet edge import` per appliance, all at once (each is a process of its own).
        cli = [sys.executable, "-m", "edgefleet.cli", "edge", "import", str(self.root / "src")]
        runs = [
            subprocess.Popen(
                [*cli, "-c", str(self.root / name / "edge.toml")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in self.site_of
        ]
        for name, run in zip(self.site_of, runs, strict=True):
            _, err = run.communicate(timeout=120)
            if run.returncode != 0:
                raise RuntimeError(f"edge import on {name} failed: {err.strip()}")

    def start(self) -> None:
        """Prepare, then start control, every appliance and both steering replicas."""
        self.prepare()
        self._write_topology()
        self._write_configs(0)
        self._import()
        control = Service("control", ["control", "serve", "-c", str(self.root / "control.toml")],
                          self.root / "control.log")  # fmt: skip
        self.services["control"] = start_service(control)
        self._write_configs(control.port)  # the appliances and steering need its real port
        for name in self.site_of:
            edge_conf = str(self.root / name / "edge.toml")
            service = Service(name, ["edge", "serve", "-c", edge_conf], self.root / f"{name}.log")
            self.services[name] = start_service(service)
        for i in (1, 2):
            name = f"steering-{i}"
            service = Service(
                name, ["steering", "serve", "-c", str(self.root / "steering.toml")],
                self.root / f"{name}.log",
            )  # fmt: skip
            self.services[name] = start_service(service)

    def stop(self) -> None:
        """Stop everything (steering, appliances, control), each bounded."""
        for name in [*self.steering, *self.site_of, "control"]:
            if name in self.services:
                stop_service(self.services[name])

    def restart(self, name: str) -> None:
        """Start a stopped or killed service again on its old port."""
        service = self.services[name]
        if service.alive():
            stop_service(service)
        start_service(service)

    # -- operator commands --------------------------------------------------------------

    def drain(self, appliance: str, undo: bool = False) -> None:
        """`edgefleet control drain APPLIANCE [--undo]`, as an operator would type it."""
        control = self.services["control"].url
        argv = [sys.executable, "-m", "edgefleet.cli", "control", "drain", appliance,
                "-c", str(self.root / "control.toml"), "--url", control]  # fmt: skip
        if undo:
            argv.append("--undo")
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"drain {appliance}: {run.stderr.strip()}")

    def admin_token(self) -> str:
        """A bearer token for control's admin endpoints."""
        return role_token(self.secret, "admin")
