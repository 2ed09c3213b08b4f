"""The servers under test, as child processes on 127.0.0.1: nginx, `edgefleet edge serve` and
(with `--with-minimal`) bench/minimal_server.py.

They are started by `bench.edge` and stopped in its `finally`, even on error or Ctrl-C: nginx as
a non-daemon master process whose files (configuration, pid, logs, temporary directories) all
live in one directory, the edge with its own keyring, disk, index and runtime directory.
"""

from __future__ import annotations

import http.client
import io
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from edge.disks import open_disk
from edge.importer import import_directory
from edge.index import ContentIndex
from edgefleet.tokens import Keyring, new_key, signed_query

HOST: Final = "127.0.0.1"  # loopback only, never any other address
# nginx lives in /usr/sbin, which is not on every user's PATH.
TOOL_PATH: Final = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
READY_RE: Final = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
SERVER_START_S: Final = 60.0  # the edge opens LMDB and forks workers
NGINX_LISTEN_S: Final = 10.0
STOP_S: Final = 40.0  # the edge drains for up to drain_timeout_s (30 s) on SIGTERM
REQUEST_TIMEOUT_S: Final = 30.0
TOKEN_LIFETIME_S: Final = 6 * 3600


class BenchError(Exception):
    """The benchmark cannot produce a meaningful number; the message says why."""


# -- processes ------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """Absolute path of a command, also looking in /usr/sbin."""
    return shutil.which(name, path=TOOL_PATH)


def child_pids(pid: int) -> list[int]:
    """Direct children of *pid* (Linux /proc/<pid>/task/*/children)."""
    pids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return pids


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by *pids* (their own threads, not children)."""
    user = system = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields 3.. of proc(5); comm may hold ')'
        user += int(fields[11]) / CLK_TCK
        system += int(fields[12]) / CLK_TCK
    return user, system


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / CLK_TCK, fields[7] / CLK_TCK


def free_port() -> int:
    """A port free on 127.0.0.1 right now (only for nginx, which cannot report its port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], sig: int, timeout_s: float) -> int:
    """Send *sig*, wait up to *timeout_s*, then SIGKILL the process and its children."""
    if proc.poll() is None:
        children = child_pids(proc.pid)
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for pid in children:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait(10)
    return proc.returncode


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the `finally` blocks stop the servers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- servers --------------------------------------------------------------------------------


class Server:
    """A server under test: where it listens and the URL path (with query) of each file."""

    name = "?"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[Any] | None = None
        self.port = 0
        self.paths: dict[str, str] = {}  # file name → URL path (and query)
        self.exit_code: int | None = None

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (children of the master/supervisor)."""
        return [] if self.proc is None else child_pids(self.proc.pid)

    def messages(self) -> list[str]:
        """Warnings and errors the server logged."""
        return []


class Nginx(Server):
    """nginx as a non-daemon master process, everything it writes inside *root*."""

    name = "nginx"

    def __init__(self, binary: str, root: Path, src: Path, names: Sequence[str]) -> None:
        super().__init__()
        self.binary = binary
        self.root = root
        self.src = src
        self.paths = {name: f"/{name}" for name in names}
        self.conf = root / "nginx.conf"
        self.error_log = root / "error.log"
        self.stderr_log = root / "stderr.log"

    def config(self, port: int) -> str:
        """The nginx.conf of the reference server."""
        tmp = self.root / "tmp"
        # A master process started by root drops its workers to `nobody` unless told otherwise;
        # nobody may not be able to read the temporary directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}worker_processes 2;\n"
            f"pid {self.root / 'nginx.pid'};\n"
            f"error_log {self.error_log} warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "    default_type application/octet-stream;\n"
            "    access_log off;\n"
            "    sendfile on;\n"
            "    tcp_nopush off;\n"
            "    keepalive_requests 100000;\n"
            "    keepalive_timeout 75s;\n"
            "    open_file_cache max=1000 inactive=60s;\n"
            f"    client_body_temp_path {tmp / 'body'};\n"
            f"    proxy_temp_path {tmp / 'proxy'};\n"
            f"    fastcgi_temp_path {tmp / 'fastcgi'};\n"
            f"    uwsgi_temp_path {tmp / 'uwsgi'};\n"
            f"    scgi_temp_path {tmp / 'scgi'};\n"
            "    server {\n"
            f"        listen {HOST}:{port};\n"
            f"        root {self.src};\n"
            "    }\n"
            "}\n"
        )

    def start(self) -> Nginx:
        """Start nginx on a free loopback port; retry if another process took the port."""
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = free_port()
            self.conf.write_text(self.config(port))
            with open(self.stderr_log, "ab") as err:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        "-p",
                        f"{self.root}/",
                        "-e",
                        str(self.error_log),
                        "-c",
                        str(self.conf),
                        "-g",
                        "daemon off;",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            if self._wait_listening(port):
                self.port = port
                return self
            self.exit_code = stop_process(self.proc, signal.SIGTERM, 10)
        raise BenchError(f"nginx did not start:\n{self._log_tail()}")

    def _wait_listening(self, port: int) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + NGINX_LISTEN_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((HOST, port), timeout=1.0).close()
            except OSError:
                time.sleep(0.05)
                continue
            return True
        return False

    def _log_tail(self) -> str:
        text = ""
        for path in (self.stderr_log, self.error_log):
            if path.exists():
                text += path.read_text(errors="replace")
        return text[-2000:]

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL if needed."""
        if self.proc is not None:
            self.exit_code = stop_process(self.proc, signal.SIGTERM, 10)

    def messages(self) -> list[str]:
        lines = []
        for path in (self.stderr_log, self.error_log):
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        return [line for line in lines if line.strip()]


class Edge(Server):
    """`edgefleet edge serve` with its own keyring, disk, index and runtime directory."""

    name = "edge"

    def __init__(
        self,
        root: Path,
        src: Path,
        names: Sequence[str],
        *,
        workers: int,
        header_separate_segment: bool,
        sendfile: bool,
    ) -> None:
        super().__init__()
        self.root = root
        root.mkdir(parents=True)
        self.keyring = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")
        keyring_path = root / "keys.toml"
        keyring_path.write_text(self.keyring.dumps())
        self.disk_root = root / "disk0"
        disk = open_disk(self.disk_root, create=True)
        index = ContentIndex(root / "index")
        try:
            import_directory(src, index, [disk], progress_out=io.StringIO())
        finally:
            index.close()
        expiry = int(time.time()) + TOKEN_LIFETIME_S
        # One signed URL per file, not bound to the client address, reused by every request.
        self.paths = {n: f"/c/{n}?{signed_query(self.keyring, n, expiry)}" for n in names}
        self.config_path = root / "edge.toml"
        self.config_path.write_text(
            f'index = "{root / "index"}"\n'
            f'disks = ["{self.disk_root}"]\n'
            f"workers = {workers}\n"
            f'runtime_dir = "{root / "run"}"\n'
            'access_log = ""\n'
            f"header_coalesce_max_bytes = {0 if header_separate_segment else 32768}\n"
            f"sendfile = {str(sendfile).lower()}\n"
            "[listen]\n"
            f'host = "{HOST}"\n'
            "port = 0\n"
            "[tokens]\n"
            "required = true\n"
            f'keyring = "{keyring_path}"\n'
        )
        self.stderr_log = root / "stderr.log"

    def start(self) -> Edge:
        """Start the edge and wait for its readiness line (it listens on port 0)."""
        start_announced(
            self,
            [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(self.config_path)],
            self.stderr_log,
        )
        return self

    def stop(self) -> None:
        """SIGTERM: the edge drains and exits 0; SIGKILL after STOP_S."""
        if self.proc is not None:
            self.exit_code = stop_process(self.proc, signal.SIGTERM, STOP_S)

    def messages(self) -> list[str]:
        if not self.stderr_log.exists():
            return []
        return [s for s in self.stderr_log.read_text(errors="replace").splitlines() if s.strip()]

    def scrape(self) -> tuple[dict[str, int], dict[str, int]]:
        """(responses by status code, errors by kind) from /metrics, all workers together."""
        status, _, body = http_get(self.port, "/metrics")
        if status != 200:
            raise BenchError(f"edge /metrics answered {status}")
        codes: dict[str, int] = {}
        errors: dict[str, int] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "edgefleet_edge_requests_total":
                    codes[sample.labels["code"]] = int(sample.value)
                elif sample.name == "edgefleet_edge_errors_total":
                    errors[sample.labels["kind"]] = int(sample.value)
        return codes, errors


def start_announced(server: Server, cmd: Sequence[str], stderr_log: Path) -> None:
    """Start *cmd* as *server*'s process and wait for its line `serving on http://HOST:PORT`."""
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []
    with open(stderr_log, "ab") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True
        )
    server.proc = proc

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            lines.put(line)
        lines.put(None)

    # A thread keeps reading stdout, so the wait below is bounded and the pipe never fills.
    threading.Thread(target=read_stdout, name=f"{server.name}-stdout", daemon=True).start()
    deadline = time.monotonic() + SERVER_START_S
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        match = READY_RE.search(line)
        if match:
            server.port = int(match.group(1))
            return
    raise BenchError(
        f"{server.name} did not start: "
        + "".join(seen)
        + stderr_log.read_text(errors="replace")[-2000:]
    )


class Minimal(Server):
    """bench/minimal_server.py: the floor for a Python server (no tokens, index or metrics)."""

    name = "minimal"

    def __init__(
        self,
        root: Path,
        src: Path,
        names: Sequence[str],
        *,
        workers: int,
        header_separate_segment: bool,
    ) -> None:
        super().__init__()
        root.mkdir(parents=True)
        self.src = src
        self.paths = {name: f"/{name}" for name in names}
        self.workers = workers
        self.header_separate_segment = header_separate_segment
        self.stderr_log = root / "stderr.log"

    def start(self) -> Minimal:
        """Start it on port 0 and wait for its readiness line."""
        cmd = [
            sys.executable, "-m", "bench.minimal_server",
            "--root", str(self.src), "--workers", str(self.workers),
        ]  # fmt: skip
        if self.header_separate_segment:
            cmd.append("--header-separate-segment")
        start_announced(self, cmd, self.stderr_log)
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if needed."""
        if self.proc is not None:
            self.exit_code = stop_process(self.proc, signal.SIGTERM, 10)

    def messages(self) -> list[str]:
        if not self.stderr_log.exists():
            return []
        return [s for s in self.stderr_log.read_text(errors="replace").splitlines() if s.strip()]


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection: (status, headers with lower-case names, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()
