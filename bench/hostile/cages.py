"""The attackers' CPU cgroup: on a real network they are other machines, here they share the
cores with the edge and the normal client (see `Cages`)."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Final

ATTACKER_NICE: Final = 19
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
CGROUP_PERIOD_US: Final = 10_000  # short: a capped attacker waits at most ~10 ms to run again


class Cages:
    """One CPU cgroup for all the attackers: capped at *percent* of one core together and
    idle-class (`cpu.idle`: it runs on CPU time nothing else wants).

    On a real network the attackers are other machines and their CPU costs the edge nothing.
    Here they share the 2 cores, and slowhttptest busy-polls: measured with `strace -c`, its
    slow-read mode makes ~15,000 poll() calls a second over 500 sockets, and with slowloris
    it took 142 % of the 200 % of CPU while the edge's workers used 8 %; the hypervisor
    then steals time from the whole guest (6 % measured). nice 19 or SCHED_IDLE alone did not
    help, nor did a cap of 25 % per attacker (about 60 % in all): the normal client's p99 went
    from ~0.5 ms to 2-4 ms with the edge itself mostly idle. With all of them held to 25 % of
    one core in one idle-class group, every attack still runs at full size (the report's
    attacker lines and the edge's timeout counters show it). Needs a writable cgroup v1 `cpu`
    or v2 hierarchy (root on most machines); without one the attackers run uncapped at nice
    19 and the report says so."""

    def __init__(self, percent: float) -> None:
        self.percent = percent
        self.path: Path | None = None
        self.base: Path | None = None
        self.version = 0
        self.problem = ""
        if percent <= 0:
            self.problem = "uncapped (--attacker-cpu 0)"
            return
        v1 = CGROUP_ROOT / "cpu"
        v2 = CGROUP_ROOT / "cgroup.controllers"
        if (v1 / "cpu.cfs_quota_us").exists():
            self.base, self.version = v1, 1
        elif v2.exists() and "cpu" in v2.read_text().split():
            self.base, self.version = CGROUP_ROOT, 2
        else:
            self.problem = "uncapped: no cgroup cpu controller found"

    def describe(self) -> str:
        if self.problem:
            return f"at nice {ATTACKER_NICE}, {self.problem}"
        return (
            f"together in one idle-class CPU cgroup (v{self.version}) capped at"
            f" {self.percent:g} % of one core, at nice {ATTACKER_NICE}"
        )

    def cage(self) -> Path | None:
        """The attackers' cgroup, made on first use (None when caging is off or fails)."""
        if self.base is None or self.problem:
            return None
        if self.path is not None:
            return self.path
        path = self.base / f"edgefleet-hostile-{os.getpid()}"
        quota = int(CGROUP_PERIOD_US * self.percent / 100)
        try:
            path.mkdir(exist_ok=True)
            self.path = path
            if self.version == 1:
                (path / "cpu.cfs_period_us").write_text(str(CGROUP_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                with suppress(OSError):  # the cpu controller may not be delegated yet
                    (self.base / "cgroup.subtree_control").write_text("+cpu")
                (path / "cpu.max").write_text(f"{quota} {CGROUP_PERIOD_US}")
            with suppress(OSError):  # cpu.idle: Linux 5.15 and newer
                (path / "cpu.idle").write_text("1")
        except OSError as exc:
            self.problem = f"uncapped: cannot set up a cgroup ({exc.strerror})"
            return None
        return path

    def enter(self, pid: int, name: str) -> None:
        """Move a just-started attacker into the cgroup (from this process: nothing runs in
        the forked child). A failure leaves it uncapped, and the report says so."""
        path = self.cage()
        if path is None:
            return
        try:
            (path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            self.problem = f"uncapped: cannot move {name} into the cgroup ({exc.strerror})"

    def close(self) -> None:
        """Remove the cgroup (its processes have exited)."""
        if self.path is not None:
            with suppress(OSError):
                self.path.rmdir()
            self.path = None
