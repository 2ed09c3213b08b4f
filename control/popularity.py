"""The fleet's own popularity counts: heartbeats' `served` maps → bytes per day, region, file.

Pure (no asyncio, aiohttp or SQLite). Heartbeats arrive every couple of seconds from every
appliance; writing each one to SQLite would put a disk sync on the heartbeat's path. Control
instead adds each heartbeat's counts to a `PopularityBuffer` in memory and, every few seconds
and at shutdown, takes the whole buffer and adds it to the store in one transaction (in the
store thread). A failed write puts the taken counts back, so nothing is lost or counted twice.

Counts are keyed by the UTC day on which control received them, and by the region of the
serving appliance's site: what the planner forecasts from (docs/fleet-api.md, "Fill").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

# (day "YYYY-MM-DD", region, content id)
Key = tuple[str, str, str]


def utc_day(wall_time: float) -> str:
    """The UTC date of unix time *wall_time*, as "YYYY-MM-DD"."""
    return datetime.fromtimestamp(wall_time, UTC).date().isoformat()


def parse_day(text: str, field: str) -> str:
    """*text* checked as an ISO date (YYYY-MM-DD); ValueError naming *field* otherwise."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{field}: must be a date YYYY-MM-DD, not {text[:40]!r}") from None


class PopularityBuffer:
    """Counts not yet written to the store."""

    def __init__(self) -> None:
        self._counts: dict[Key, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def pending_bytes(self) -> int:
        """Bytes counted and not yet taken."""
        return self._bytes

    def add(self, day: str, region: str, served: Mapping[str, int]) -> int:
        """Add one heartbeat's counts; returns the bytes added."""
        total = 0
        counts = self._counts
        for cid, n in served.items():
            if n > 0:  # a zero count would only write a row of nothing
                key = (day, region, cid)
                counts[key] = counts.get(key, 0) + n
                total += n
        self._bytes += total
        return total

    def take(self) -> dict[Key, int]:
        """Everything counted so far; the buffer starts empty again."""
        taken, self._counts, self._bytes = self._counts, {}, 0
        return taken

    def put_back(self, taken: Mapping[Key, int]) -> None:
        """Return counts whose write failed (added to what arrived meanwhile)."""
        counts = self._counts
        for key, n in taken.items():
            counts[key] = counts.get(key, 0) + n
            self._bytes += n
