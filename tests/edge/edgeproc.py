"""A real edge server in a subprocess, on 127.0.0.1 port 0, for tests and benchmarks."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from edge.disks import open_disk
from edge.importer import import_directory
from edge.index import ContentIndex
from edge.supervisor import KEEPER_NAME
from edgefleet.tokens import Keyring, new_key, signed_query
from tests.processes import terminate, wait_for_line

READY_RE = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


def write_keyring(path: Path, key_ids: tuple[str, ...] = ("k1",)) -> Keyring:
    """A keyring with fresh keys, the last one current."""
    ring = Keyring(keys={k: bytes.fromhex(new_key()) for k in key_ids}, current=key_ids[-1])
    path.write_text(ring.dumps())
    return ring


class EdgeProcess:
    """Owns one `edgefleet edge serve` process and the directory it serves from."""

    def __init__(
        self,
        root: Path,
        files: dict[str, bytes] | None = None,
        *,
        workers: int = 1,
        tokens: bool = True,
        extra_config: str = "",
        env: dict[str, str] | None = None,
        disks: int = 1,
    ) -> None:
        self.root = root
        self.src = root / "src"
        self.src.mkdir(parents=True, exist_ok=True)
        for name, data in (files or {}).items():
            (self.src / name).write_bytes(data)
        self.keyring_path = root / "keys.toml"
        self.keyring = write_keyring(self.keyring_path)
        disk_list = ", ".join(f'"{root / f"disk{i}"}"' for i in range(disks))
        self.config_path = root / "edge.toml"
        self.config_path.write_text(
            f'index = "{root / "index"}"\n'
            f"disks = [{disk_list}]\n"
            f"workers = {workers}\n"
            f'runtime_dir = "{root / "run"}"\n'
            f"{extra_config}\n"
            "[listen]\nport = 0\n"
            f"[tokens]\nrequired = {'true' if tokens else 'false'}\n"
            f'keyring = "{self.keyring_path}"\n'
        )
        disk_objs = [open_disk(root / f"disk{i}", create=True) for i in range(disks)]
        index = ContentIndex(root / "index")
        try:
            import_directory(self.src, index, disk_objs, progress_out=io.StringIO())
            self.records = {r.content_id: r for r in index.records()}
        finally:
            index.close()
        self.disks = disk_objs
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> EdgeProcess:
        """Start the server and wait for its readiness line."""
        env = {**os.environ, **self.env}
        self._stderr = open(self.root / "stderr.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        match = wait_for_line(self.proc.stdout, READY_RE, timeout)
        if match:
            self.port = int(match.group(1))
            return self
        self.stop()
        raise RuntimeError(f"edge did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        return (self.root / "stderr.log").read_text()

    def url(self, content_id: str, path_range: str | None = None, **sign: Any) -> str:
        """A signed URL path+query for *content_id*."""
        query = signed_query(self.keyring, content_id, int(time.time()) + 3600, **sign)
        rng = f"/range/{path_range}" if path_range else ""
        return f"/c/{content_id}{rng}?{query}"

    def workers(self) -> list[int]:
        """Pids of the live worker processes (not the keeper: disk watch and scrub)."""
        assert self.proc is not None
        return [
            c.pid
            for c in psutil.Process(self.proc.pid).children()
            if c.is_running() and _name(c) != KEEPER_NAME
        ]

    def keeper(self) -> int:
        """Pid of the keeper process (0 while there is none)."""
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children()
        return next((c.pid for c in children if _name(c) == KEEPER_NAME), 0)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.proc is None:
            return None
        code = terminate(self.proc, timeout, stragglers=self.workers)
        self._stderr.close()
        return code

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw TCP connection to the server."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


class ResponseReader:
    """Reads consecutive HTTP/1.1 responses (Content-Length framed) from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def next(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next response; *head* for a reply to HEAD (no body follows)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before a full header: {self.buf!r}")
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head or status == 304 else int(headers.get("content-length", "0"))
        if len(self.buf) < length:
            # Collect the chunks and join once: `buf += chunk` is quadratic on large bodies.
            parts, have = [self.buf], len(self.buf)
            while have < length:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("closed mid-body")
                parts.append(chunk)
                have += len(chunk)
            self.buf = b"".join(parts)
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            return not self._fill()
        except ConnectionResetError:
            return True


def request(
    port: int, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return ResponseReader(sock).next(head=method == "HEAD")
