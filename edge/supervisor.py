"""`edgefleet edge serve`: fork one worker per core, restart the ones that die, drain on SIGTERM.

The supervisor binds the port first (SO_REUSEPORT, not listening) to learn it when 0 was asked
for and to hold it while workers restart; each worker binds its own listening socket on it, and
the kernel spreads new connections over the workers. Next to them run the reporter (with a
control URL: heartbeats) and, always, the keeper (edge.scrub: disk watch and scrub, the edge's
own index writer, a separate process so that neither its disk reads nor its LMDB write
transactions ever run on a worker's event loop). The supervisor never opens the index: LMDB
environments must not cross a fork.

Signals: SIGTERM/SIGINT drain (STOPPING=1 to systemd, SIGTERM to workers, wait for them up to
the drain deadline, then SIGKILL); SIGHUP is forwarded (workers reload their keyring and reopen
the access log). Under systemd it sends READY=1 once every worker listens, and WATCHDOG=1 while
it is healthy.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from edge.config import EdgeConfig
from edge.disks import open_disks
from edge.index import ContentIndex, IndexUnavailable
from edge.reporter import run_reporter
from edge.runtime import supervisor_file, write_json_atomic
from edge.scrub import run_keeper
from edge.worker import listen_socket, run_worker
from edgefleet import sdnotify
from edgefleet.tokens import Keyring, KeyringError

log = logging.getLogger("edgefleet.edge")
STARTUP_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
KEEPER_NAME = "edge-keeper"  # the keeper process name in ps (the kernel keeps 15 bytes)
# A worker that dies this soon after starting is crash-looping: restart it no faster than this.
MIN_RESTART_INTERVAL_S = 1.0
# Signals a worker acts on through its event loop: blocked from before the fork until the loop
# handles them (edge.worker unblocks them), so one sent while a worker starts is held, not fatal.
WORKER_SIGNALS = frozenset((signal.SIGTERM, signal.SIGHUP))


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


@dataclass
class Slot:
    """One worker position: the process in it now, and when it started."""

    index: int
    # or "reporter": the control-plane heartbeat process; or "keeper": disk watch and scrub
    kind: str = "worker"
    pid: int = 0
    started: float = 0.0
    ready_fd: int = -1
    restarts: int = 0


@dataclass
class Supervisor:
    """Forks and watches the workers of one edge server."""

    config: EdgeConfig
    out: TextIO = sys.stdout
    slots: list[Slot] = field(default_factory=list)
    port: int = 0
    restarts: int = 0
    _stop: bool = False
    _reload: bool = False

    def preflight(self) -> None:
        """Fail fast, with a clear message, on what would make every worker die."""
        try:
            ContentIndex(self.config.index, readonly=True).close()
        except IndexUnavailable as exc:
            raise StartupError(str(exc)) from None
        if self.config.tokens.required:
            try:
                Keyring.load(self.config.tokens.keyring)
            except KeyringError as exc:
                raise StartupError(f"keyring: {exc}") from None
        if not open_disks(self.config.disks):
            raise StartupError(
                f"none of the disks {list(self.config.disks)} is an edgefleet disk "
                "(run 'edgefleet edge init' for an empty appliance, or 'edgefleet edge import')"
            )
        os.makedirs(os.path.join(self.config.runtime_dir, "metrics"), exist_ok=True)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        self.preflight()
        try:
            reserve = listen_socket(self.config.listen.host, self.config.listen.port)
        except OSError as exc:
            raise StartupError(
                f"cannot bind {self.config.listen.host}:{self.config.listen.port}: {exc.strerror}"
            ) from None
        self.port = reserve.getsockname()[1]
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        try:
            self.slots = [Slot(i) for i in range(self.config.worker_count)]
            if self.config.control.url:
                self.slots.append(Slot(len(self.slots), kind="reporter"))
            # Always: a failed disk must leave the index on a standalone edge too.
            self.slots.append(Slot(len(self.slots), kind="keeper"))
            for slot in self.slots:
                self._spawn(slot, reserve.fileno(), wake_r, wake_w)
            self._wait_ready()
            self._announce()
            return self._watch(reserve.fileno(), wake_r, wake_w)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            reserve.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop = True
        elif signum == signal.SIGHUP:
            self._reload = True

    def _spawn(self, slot: Slot, *inherited: int) -> None:
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent(supervisor_pid)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                os.close(ready_r)
                for fd in inherited:
                    os.close(fd)
                for other in self.slots:
                    if other.ready_fd >= 0:
                        os.close(other.ready_fd)
                if slot.kind == "reporter":
                    code = run_reporter(self.config, self.port, ready_w)
                elif slot.kind == "keeper":
                    _set_name(KEEPER_NAME)
                    code = run_keeper(self.config, ready_w)
                else:
                    code = run_worker(self.config, slot.index, self.port, ready_w)
            except BaseException:
                logging.getLogger("edgefleet.edge").exception("worker %d died", slot.index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(ready_w)
        if slot.ready_fd >= 0:
            os.close(slot.ready_fd)
        slot.pid, slot.started, slot.ready_fd = pid, time.monotonic(), ready_r

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        pending = {s.ready_fd: s for s in self.slots}
        while pending:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or self._stop:
                self._terminate_all()
                raise StartupError("workers did not start in time")
            ready, _, _ = select.select(list(pending), [], [], min(timeout, 0.5))
            for fd in ready:
                slot = pending.pop(fd)
                if os.read(fd, 1) != b"R":
                    self._terminate_all()
                    raise StartupError(f"worker {slot.index} failed to start (see its error above)")

    def _announce(self) -> None:
        host = self.config.listen.host
        shown = f"[{host}]" if ":" in host else host
        workers = [s for s in self.slots if s.kind == "worker"]
        pids = ", ".join(str(s.pid) for s in workers)
        self.out.write(
            f"edgefleet edge: serving on http://{shown}:{self.port} "
            f"(supervisor pid {os.getpid()}, {len(workers)} workers: {pids})\n"
        )
        if any(s.kind == "reporter" for s in self.slots):
            link = self.config.control
            self.out.write(f"edgefleet edge: reporting to {link.url} as '{link.appliance}'\n")
        self.out.flush()
        sdnotify.notify(f"READY=1\nSTATUS=serving on port {self.port}\nMAINPID={os.getpid()}")
        self._write_status()

    def _watch(self, *inherited: int) -> int:
        watchdog = sdnotify.watchdog_interval_s()
        last_ping = 0.0
        wake_r = inherited[1]
        while not self._stop:
            timeout = 1.0 if watchdog is None else min(1.0, watchdog)
            with contextlib.suppress(InterruptedError):
                select.select([wake_r], [], [], timeout)
            _drain_pipe(wake_r)
            if self._reload:
                self._reload = False
                self._signal_all(signal.SIGHUP)
            self._reap_and_restart(inherited)
            now = time.monotonic()
            if watchdog is not None and now - last_ping >= watchdog and self._alive("worker") > 0:
                sdnotify.notify("WATCHDOG=1")
                last_ping = now
            self._write_status()
        return self._shutdown(wake_r)

    def _reap(self) -> list[tuple[Slot, int, int]]:
        """(slot, pid, wait status) of every worker that exited, without blocking."""
        exited = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for slot in self.slots:
                if slot.pid == pid:
                    slot.pid = 0
                    exited.append((slot, pid, status))
        return exited

    def _reap_and_restart(self, inherited: tuple[int, ...]) -> None:
        for slot, pid, status in self._reap():
            log.error(
                "edge %s %d (pid %d) %s; restarting", slot.kind, slot.index, pid, _describe(status)
            )
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid == 0 and now - slot.started >= MIN_RESTART_INTERVAL_S:
                slot.restarts += 1
                self.restarts += 1
                self._spawn(slot, *inherited)

    def _alive(self, kind: str | None = None) -> int:
        return sum(1 for s in self.slots if s.pid and (kind is None or s.kind == kind))

    def _signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, sig)

    def _terminate_all(self) -> None:
        self._signal_all(signal.SIGKILL)
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(slot.pid, 0)
                slot.pid = 0

    def _shutdown(self, wake_r: int) -> int:
        sdnotify.notify("STOPPING=1")
        self.out.write("edgefleet edge: draining\n")
        self.out.flush()
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_timeout_s + 5.0
        code = 0
        # Never a blocking wait: a wedged worker must not keep us past the deadline.
        while True:
            for _, _, status in self._reap():
                if status != 0:
                    code = 1
            remaining = deadline - time.monotonic()
            if not self._alive() or remaining <= 0:
                break
            with contextlib.suppress(InterruptedError):
                select.select([wake_r], [], [], min(remaining, 1.0))  # SIGCHLD wakes us
            _drain_pipe(wake_r)
        if self._alive():
            log.error("edge workers did not drain in time; killing them")
            self._terminate_all()
            code = 1
        self._write_status()
        self.out.write("edgefleet edge: stopped\n")
        self.out.flush()
        return code

    def _write_status(self) -> None:
        with contextlib.suppress(OSError):
            write_json_atomic(
                supervisor_file(self.config.runtime_dir),
                {
                    "pid": os.getpid(),
                    "port": self.port,
                    "workers_alive": self._alive("worker"),
                    "worker_pids": [s.pid for s in self.slots if s.pid and s.kind == "worker"],
                    "reporter_pid": next((s.pid for s in self.slots if s.kind == "reporter"), 0),
                    "keeper_pid": next((s.pid for s in self.slots if s.kind == "keeper"), 0),
                    "restarts": self.restarts,
                },
            )


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this child SIGTERM when the supervisor dies (even by SIGKILL), so a
    killed supervisor never leaves orphan workers serving (or a reporter heartbeating)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: systemd's KillMode still cleans up
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _set_name(name: str) -> None:
    """Give this process its own name in ps/top (and to tests telling workers apart)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
    except OSError as exc:  # pragma: no cover
        if exc.errno != errno.EAGAIN:
            raise


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
