"""One attacking process (slowhttptest or a Python attacker) started at the lowest nice level
in the attackers' cgroup, and slowhttptest's command line and summary for each attack."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

from bench.hostile.cages import ATTACKER_NICE, Cages

ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


def slowhttptest_cmd(
    binary: str, attack: str, url: str, conns: int, rate: int, secs: int
) -> list[str]:
    """The slowhttptest command line for one attack (bounded by -l)."""
    common = ["-c", str(conns), "-r", str(rate), "-l", str(secs), "-u", url, "-p", "3"]
    if attack == "slowloris":
        return [binary, "-H", "-i", "5", "-x", "24", *common]
    if attack == "slow-read":
        # Window 512-1024 bytes, read 32 bytes every second, ask for the file 3 times per
        # connection: the edge must hold each response without buffering it in memory.
        return [binary, "-X", "-k", "3", "-n", "1", "-w", "512", "-y", "1024", "-z", "32", *common]
    if attack == "range-abuse":
        # `Range: bytes=0-,5-0,5-1,...,5-1100`: ~1100 overlapping ranges in ~6.5 KB, under the
        # edge's max_header_bytes (8192), so the range logic (max_ranges 16) is what answers;
        # slowhttptest's default (-b 2000) makes a head the edge refuses with 431 before that.
        return [binary, "-R", "-a", "5", "-b", "1100", *common]
    raise ValueError(attack)


class Attacker:
    """One attacking process: slowhttptest or a Python attacker."""

    def __init__(
        self, attack: str, tool: str, cmd: list[str], log: Path, cages: Cages | None = None
    ) -> None:
        self.attack, self.tool, self.log = attack, tool, log
        self.out: IO[str] = open(log, "w")  # noqa: SIM115 - closed in stop()
        # Attackers stand for other machines: they get the CPU the edge and the normal client
        # leave (a capped idle-class cgroup, see Cages, and the lowest nice level).
        self.proc = subprocess.Popen(
            ["nice", "-n", str(ATTACKER_NICE), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.out,
            text=True,
        )
        if cages is not None:
            cages.enter(self.proc.pid, attack)  # `nice` execs in place: the pid is the attacker's
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, name=f"attacker-{attack}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self.ready.set()
        self.ready.set()

    def stop(self) -> str:
        """Stop it (it should end by itself, bounded by its own length) and say what it did."""
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.out.close()
        if self.tool == "python":
            return self.lines[-1] if self.lines else f"exit {self.proc.returncode}"
        return slowhttptest_summary(self.lines, self.proc.returncode)


def slowhttptest_summary(lines: Sequence[str], code: int | None) -> str:
    """The last status block of slowhttptest's output, on one line."""
    keys = ("closed:", "pending:", "connected:", "service available:")
    last = {}
    for line in lines:
        text = ANSI.sub("", line).strip()
        for key in keys:
            if key in text:
                last[key] = " ".join(text.split(key, 1)[1].split())
    if not last:
        return f"exit {code}, no status line"
    return f"exit {code}, " + ", ".join(f"{k} {v}" for k, v in last.items())
