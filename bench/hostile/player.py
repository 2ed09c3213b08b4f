"""The normal client: a process of its own (its own GIL) that fetches random 64 KiB ranges of
the served file on one keep-alive connection, checking every byte, and the handle the run
drives it through. Both sides of the pipe between them live here:

    python -m bench.hostile.player PORT PATH FILE SEED RATE

reads one line per measurement from stdin (a duration in seconds) and answers one JSON line.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench.hostile.httpread import read_response
from bench.servers import HOST, BenchError

RANGE_BYTES: Final = 64 << 10
PLAYER_TIMEOUT_S: Final = 30.0  # one normal request that takes this long counts as failed


def player_main(port: int, path: str, file: Path, seed: int, rate: float) -> None:
    """Serve measurement requests from stdin: each line is a duration in seconds; answer one
    JSON line {"times": [...], "at": [...], "failed": n} after fetching random 64 KiB ranges
    that long, *rate* a second (0: back to back).

    Paced like a player, not a closed loop: back to back, the client and one edge worker
    would fill the two cores by themselves and the figure would measure CPU share, not how
    the edge treats a normal client beside the attackers."""
    data = file.read_bytes()
    rng = random.Random(seed)
    sock: socket.socket | None = None
    buf = b""
    for line in sys.stdin:
        seconds = float(line)
        times: list[float] = []
        at: list[float] = []  # when each request began, seconds into the run
        failed = 0
        start = time.monotonic()
        end = start + seconds
        sent = 0
        while (now := time.monotonic()) < end:
            if rate > 0:
                due = start + sent / rate
                if due > now:
                    time.sleep(due - now)
            sent += 1
            first = rng.randrange(0, len(data) - RANGE_BYTES)
            last = first + RANGE_BYTES - 1
            req = f"GET {path} HTTP/1.1\r\nHost: a\r\nRange: bytes={first}-{last}\r\n\r\n"
            began = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection((HOST, port), timeout=PLAYER_TIMEOUT_S)
                    buf = b""
                sock.sendall(req.encode())
                status, body, buf = read_response(sock, buf)
                ok = status == 206 and body == data[first : last + 1]
            except OSError:
                ok = False
            if ok:
                times.append(time.perf_counter() - began)
                at.append(now - start)
            else:  # a wrong answer or a cut connection: count it, start afresh
                failed += 1
                if sock is not None:
                    sock.close()
                sock = None
        print(json.dumps({"times": times, "at": at, "failed": failed}), flush=True)


class Player:
    """The normal client's process, driven over a pipe."""

    def __init__(self, port: int, path: str, file: Path, seed: int, rate: float) -> None:
        cmd = [sys.executable, "-m", "bench.hostile.player", str(port), path, str(file)]
        self.proc = subprocess.Popen(
            [*cmd, str(seed), str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def measure(self, seconds: float) -> tuple[list[float], list[float], int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{seconds}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("the normal client died")
        doc = json.loads(line)
        return [float(t) for t in doc["times"]], [float(t) for t in doc["at"]], int(doc["failed"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.hostile.player PORT PATH FILE SEED RATE` (started by `Player`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    player_main(int(args[0]), args[1], Path(args[2]), int(args[3]), float(args[4]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
