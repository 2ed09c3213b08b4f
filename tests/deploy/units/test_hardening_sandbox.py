"""The edge really running inside the sandbox the rendered units describe: its system calls
within the unit's SystemCallFilter= (strace, read with deploy/units/hardening.py) and serving
with write+execute memory refused (MemoryDenyWriteExecute=, via PR_SET_MDWE).

systemd is not PID 1 in the test container, so the units themselves are not started here."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from deploy.units.analyze import syscall_groups
from deploy.units.hardening import allowed_syscalls
from tests.deploy.units.common import needs_analyze
from tests.edge.edgeproc import KEEPER_NAME, READY_RE, EdgeProcess, _name, request
from tests.edge.probes import assert_serves, wait_until
from tests.processes import wait_for_line

# -- the edge inside the units' sandbox ----------------------------------------------------


class WrappedEdge(EdgeProcess):
    """An EdgeProcess started through *prefix* (strace, or a sandboxing exec wrapper)."""

    def __init__(self, root: Path, files: dict[str, bytes], prefix: list[str]) -> None:
        super().__init__(root, files, workers=2)
        self.prefix = prefix

    def start(self, timeout: float = 60.0) -> WrappedEdge:
        self._stderr = open(self.root / "stderr.log", "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(self.config_path)]
        self.proc = subprocess.Popen(
            [*self.prefix, *cmd], stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.proc.stdout is not None
        match = wait_for_line(self.proc.stdout, READY_RE, timeout)
        if match is None:
            self.stop()
            raise RuntimeError(f"edge did not start:\n{self.stderr()}")
        self.port = int(match.group(1))
        return self

    def supervisor(self) -> psutil.Process:
        """The edge's main process: the wrapper itself after exec, or strace's child."""
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        if self.prefix[0] != "strace":
            return main
        return next(c for c in main.children() if c.cmdline()[1:3] == ["-m", "edgefleet.cli"])

    def workers(self) -> list[int]:
        """The worker processes (the keeper, disk watch and scrub, is not one)."""
        return [
            c.pid
            for c in self.supervisor().children()
            if c.is_running() and _name(c) != KEEPER_NAME
        ]

    def signal(self, sig: int) -> None:
        self.supervisor().send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess, StopIteration):
                self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.workers():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode


SMALL = os.urandom(50_000)
BIG = os.urandom(3 << 20)


def exercise(edge: WrappedEdge) -> None:
    """Every path the units must allow: serve (sendfile), ranges, conditionals, reload,
    a worker crash and restart (fork), then the SIGTERM drain."""
    assert_serves(edge, "small.bin", SMALL)
    status, _, body = request(edge.port, edge.url("big.bin"), {"Range": "bytes=1000-2000000"})
    assert (status, body) == (206, BIG[1000:2000001])
    status, headers, _ = request(edge.port, edge.url("big.bin"), method="HEAD")
    assert status == 200
    status, _, _ = request(edge.port, edge.url("big.bin"), {"If-None-Match": headers["etag"]})
    assert status == 304
    edge.signal(signal.SIGHUP)
    assert_serves(edge, "small.bin", SMALL)
    victim = edge.workers()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(edge.workers()) == 2 and victim not in edge.workers(), 30, "worker restart"
    )
    assert_serves(edge, "big.bin", BIG)
    assert edge.stop() == 0


STRACE_RE = re.compile(r"^\d+\s+(?:<\.\.\. ([a-z0-9_]+) resumed>|([a-z0-9_]+)\()")
needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")


def traced_syscalls(*paths: Path) -> set[str]:
    """The system call names in `strace -f` output files."""
    used: set[str] = set()
    for path in paths:
        for line in path.read_text().splitlines():
            match = STRACE_RE.match(line)
            if match:
                used.add(match.group(1) or match.group(2))
    return used


@pytest.mark.slow
@needs_analyze
@needs_strace
def test_edge_system_calls_are_within_the_units_filter(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    trace = tmp_path / "strace.txt"
    edge = WrappedEdge(
        tmp_path / "edge",
        {"small.bin": SMALL, "big.bin": BIG},
        ["strace", "-f", "-qq", "-o", str(trace)],
    ).start()
    try:
        exercise(edge)
    finally:
        edge.stop()
    # The writer side too: `edge import` writes the LMDB index and the disks (as the fill does).
    more = tmp_path / "more"
    more.mkdir()
    (more / "new.bin").write_bytes(SMALL)
    subprocess.run(
        [
            *("strace", "-f", "-qq", "-o", f"{trace}.import"),
            *(sys.executable, "-m", "edgefleet.cli", "edge", "import"),
            *("-c", str(edge.config_path), str(more)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    used = traced_syscalls(trace, Path(f"{trace}.import"))
    # The trace saw what matters: without it an empty trace would pass.
    assert {"sendfile", "clone", "prctl", "mmap", "setsockopt"} <= used, sorted(used)
    groups = syscall_groups()
    for name in ("edgefleet-edge.service", "edgefleet-fill.service"):
        allowed = allowed_syscalls(rendered[name], groups)
        assert sorted(used - allowed) == [], name


@pytest.mark.slow
@needs_analyze
@needs_strace
def test_fill_agent_system_calls_are_within_its_units_filter(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    from tests.fill.agent.fillproc import (
        FillTarget,
        edge_with_keyring,
        manifest_doc,
        shared_keyring,
    )

    keyring = shared_keyring()
    files = {f"v{i}.mp4": os.urandom(200_000 + i) for i in range(3)}
    origin = edge_with_keyring(tmp_path / "origin", files, keyring).start()
    try:
        target = FillTarget(tmp_path / "target", keyring)
        urls = {"origin": f"http://127.0.0.1:{origin.port}"}
        target.write_manifest(manifest_doc(files, ["origin"], urls))
        trace = tmp_path / "strace.txt"
        done = subprocess.run(
            ["strace", "-f", "-qq", "-o", str(trace), *target.command()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        origin.stop()
    assert done.returncode == 0, done.stderr
    assert set(target.indexed()) == set(files)  # it really downloaded, wrote and indexed
    used = traced_syscalls(trace)
    assert {"connect", "fsync", "rename", "clone3"} <= used, sorted(used)  # a real trace
    allowed = allowed_syscalls(rendered["edgefleet-fill.service"], syscall_groups())
    assert sorted(used - allowed) == []


# Linux >= 6.3: PR_SET_MDWE refuses write+execute mappings for the process and what it
# executes; systemd 252 gets the same effect from MemoryDenyWriteExecute= with seccomp.
MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""
WX_PROBE = """
import mmap, sys
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    sys.exit(0)
sys.exit(4)
"""


def mdwe_works() -> bool:
    """The wrapper makes a W+X mapping fail in the program it executes."""
    probe = [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", WX_PROBE]
    return subprocess.run(probe, timeout=60, check=False, capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not mdwe_works(), reason="no PR_SET_MDWE here (Linux < 6.3)")
def test_edge_serves_with_write_execute_memory_refused(tmp_path: Path) -> None:
    edge = WrappedEdge(
        tmp_path / "edge",
        {"small.bin": SMALL, "big.bin": BIG},
        [sys.executable, "-c", MDWE_EXEC],
    ).start()
    try:
        exercise(edge)
    finally:
        edge.stop()
