"""Control and steering speak systemd's notify protocol: READY=1, WATCHDOG=1 pings, STOPPING=1.

(The edge's supervisor has its own test in tests/edge/test_supervisor.py.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.control.controlproc import ControlFiles
from tests.steering.test_app import write_files


def _listener(tmp_path: Path) -> tuple[socket.socket, str]:
    path = tmp_path / "notify.sock"
    address = str(path) if len(str(path)) < 100 else f"@edgefleet-sd-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address if not address.startswith("@") else "\0" + address[1:])
    sock.settimeout(5)
    return sock, address


def _config(service: str, tmp_path: Path) -> Path:
    if service == "control":
        files = ControlFiles(tmp_path / "control")
        return files.config_path
    keyring, secret, _ = write_files(tmp_path)
    config = tmp_path / "steering.toml"
    config.write_text(
        f'control_url = "http://127.0.0.1:1"\nsecret_file = "{secret.name}"\n'
        f'keyring = "{keyring.name}"\n'
    )
    return config


@pytest.mark.parametrize("service", ["control", "steering"])
def test_ready_watchdog_and_stopping(service: str, tmp_path: Path) -> None:
    listener, address = _listener(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    cmd = [sys.executable, "-m", "edgefleet.cli", service, "serve", "-c"]
    with listener:
        proc = subprocess.Popen(
            [*cmd, str(_config(service, tmp_path)), "--port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        messages: list[str] = []

        def receive_until(line: str, count: int = 1) -> None:
            deadline = time.monotonic() + 10
            while sum(m.count(line) for m in messages) < count:
                assert time.monotonic() < deadline, f"no {line!r} x{count}: {messages}"
                messages.append(listener.recv(4096).decode())

        try:
            receive_until("READY=1")
            receive_until("WATCHDOG=1", 3)  # every 0.2 s: half of WATCHDOG_USEC
            proc.send_signal(signal.SIGTERM)
            receive_until("STOPPING=1")
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
