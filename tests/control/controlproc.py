"""Test fleets for control: topology text, secrets and config files, and `edgefleet control
serve` as a real subprocess on 127.0.0.1 port 0."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgefleet.fleet import role_token
from tests.processes import terminate, wait_for_line

READY_RE = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


def topology_text(interval_s: float = 2.0, extra: str = "") -> str:
    """Two regions, three sites, four appliances (ams1-a, ams1-b, lon1-a, nyc1-a)."""
    return f"""
[fleet]
heartbeat_interval_s = {interval_s}
down_after_missed = 3
saturation_threshold = 0.9

[[regions]]
name = "eu-west"
[[regions]]
name = "us-east"

[[sites]]
name = "ams1"
region = "eu-west"
lat = 52.37
lon = 4.9
prefixes = ["198.51.100.0/24", "2001:db8:1::/48"]
[sites.costs]
lon1 = 10

[[sites]]
name = "lon1"
region = "eu-west"
lat = 51.51
lon = -0.13
prefixes = ["203.0.113.0/25"]

[[sites]]
name = "nyc1"
region = "us-east"
lat = 40.71
lon = -74.01

[[appliances]]
name = "ams1-a"
site = "ams1"
base_url = "http://127.0.0.1:9001"
nic_capacity_bps = 1e10

[[appliances]]
name = "ams1-b"
site = "ams1"
base_url = "http://127.0.0.1:9002"
weight = 2.0

[[appliances]]
name = "lon1-a"
site = "lon1"
base_url = "http://127.0.0.1:9003"

[[appliances]]
name = "nyc1-a"
site = "nyc1"
base_url = "http://127.0.0.1:9004"
{extra}
"""


def heartbeat_doc(
    state: str = "serving",
    cpu: float = 0.1,
    inventory: dict[str, Any] | None = None,
    prefixes: list[str] | None = None,
) -> dict[str, Any]:
    """A well-formed heartbeat document."""
    doc: dict[str, Any] = {
        "state": state,
        "health": {"cpu": cpu, "load1": 0.5, "memory": 0.3, "connections": 7},
        "prefixes": prefixes or [],
    }
    if inventory is not None:
        doc["inventory"] = inventory
    return doc


class ControlFiles:
    """A control directory: topology, secret and control.toml, for in-process or subprocess use."""

    def __init__(self, root: Path, interval_s: float = 2.0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.secret = secrets.token_bytes(32)
        self.secret_path = root / "fleet.secret"
        self.secret_path.write_text(self.secret.hex() + "\n")
        self.topology_path = root / "topology.toml"
        self.topology_path.write_text(topology_text(interval_s))
        self.config_path = root / "control.toml"
        self.config_path.write_text(
            'topology = "topology.toml"\n'
            'secret_file = "fleet.secret"\n'
            'store = "control.sqlite3"\n'
            "uvloop = false\n"
            "[listen]\nport = 0\n"
        )

    def token(self, role: str) -> str:
        """The bearer token of *role*."""
        return role_token(self.secret, role)


class ControlProcess:
    """Owns one `edgefleet control serve` subprocess."""

    def __init__(self, files: ControlFiles) -> None:
        self.files = files
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log_path = files.root / "stderr.log"

    def start(self, timeout: float = 30.0) -> ControlProcess:
        """Start the server and wait for its readiness line."""
        cmd = [sys.executable, "-m", "edgefleet.cli", "control", "serve"]
        self._stderr = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*cmd, "-c", str(self.files.config_path)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=dict(os.environ),
        )
        assert self.proc.stdout is not None
        match = wait_for_line(self.proc.stdout, READY_RE, timeout)
        if match:
            self.port = int(match.group(1))
            return self
        self.stop()
        raise RuntimeError(f"control did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        """Send *sig* to the server."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); returns the exit code."""
        if self.proc is None:
            return None
        code = terminate(self.proc, timeout)
        self._stderr.close()
        return code

    def call(
        self, method: str, path: str, role: str | None = None, body: Any = None
    ) -> tuple[int, dict[str, str], Any]:
        """One HTTP request; returns (status, headers, parsed JSON or text)."""
        headers = {"Content-Type": "application/json"}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.files.token(role)}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), _decode(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers), _decode(exc.read())


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()
