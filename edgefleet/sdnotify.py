"""systemd's notify protocol (sd_notify(3)): READY=1, STOPPING=1, WATCHDOG=1, STATUS=…

A no-op when the service does not run under systemd (no NOTIFY_SOCKET in the environment).
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send *message* to the service manager; False when there is none or it is unreachable."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec when this process must ping the watchdog, else None.

    Mirrors sd_watchdog_enabled(3): WATCHDOG_PID, when set, must be this process.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6


async def ping_watchdog() -> None:
    """Send WATCHDOG=1 every half WatchdogSec for as long as the event loop runs; returns at
    once when no watchdog is asked for. A loop that stops turning stops the pings, and systemd
    restarts the service: the point of running this on the loop rather than in a thread."""
    import asyncio

    interval = watchdog_interval_s()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
