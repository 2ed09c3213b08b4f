"""The fill agent's decisions, free of I/O: what to fetch, from where, how fast, until when.

The agent (`edgefleet fill run`) is a thin asyncio shell (`runner.py`, `fetch.py`,
`install.py`) around these functions:

- `diff`: manifest vs index → adds (manifest order: most valuable first), re-fetches (held with
  another checksum) and deletes.
- `source_order`: the sources to try for one file, best first, reachable ones before those
  control reports down or draining (tried last, not skipped: control's view may be stale).
- `TokenBucket`: one rate cap shared by every parallel download.
- `window_end`: when the current fill window ends (None outside it), across midnight too.
- `parse_content_range` / `resume_offset`: what a 206 to `Range: bytes=N-` must say.
- `reconcile`: after a restart, which index records to drop, which files on disk are orphans,
  which temp files to resume or remove.
- `split_due`: pending deletes whose grace period has run out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from edgefleet.manifests import FillManifest, ManifestFile

# Control's states for which a source is tried only after every other one.
LAST_RESORT_STATES = frozenset({"down", "draining"})
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19})")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True)
class Held:
    """What the index says about one file the appliance holds."""

    size: int
    checksum: str


@dataclass(frozen=True, slots=True)
class Diff:
    """What tonight's fill must change."""

    adds: tuple[ManifestFile, ...]  # manifest order; includes re-fetches
    refetch: tuple[str, ...]  # held ids whose checksum or size differs from the manifest's
    deletes: tuple[str, ...]  # held ids the manifest no longer lists

    @property
    def add_bytes(self) -> int:
        """Bytes to download."""
        return sum(f.size for f in self.adds)


def diff(manifest: FillManifest, held: Mapping[str, Held]) -> Diff:
    """Adds: listed but not held (or held with other content); deletes: held but not listed."""
    adds: list[ManifestFile] = []
    refetch: list[str] = []
    for f in manifest.files:
        have = held.get(f.content_id)
        if have is None:
            adds.append(f)
        elif have.checksum != f.checksum or have.size != f.size:
            adds.append(f)
            refetch.append(f.content_id)
    listed = {f.content_id for f in manifest.files}
    deletes = sorted(cid for cid in held if cid not in listed)
    return Diff(tuple(adds), tuple(refetch), tuple(deletes))


@dataclass(frozen=True, slots=True)
class Source:
    """One place a file can be fetched from."""

    name: str
    base_url: str


def source_order(
    file: ManifestFile, urls: Mapping[str, str], states: Mapping[str, str]
) -> list[Source]:
    """The manifest's ranking, reachable sources first; sources without a URL are left out."""
    ranked = [Source(name, urls[name].rstrip("/")) for name in file.sources if urls.get(name)]
    good = [s for s in ranked if states.get(s.name, "up") not in LAST_RESORT_STATES]
    late = [s for s in ranked if states.get(s.name, "up") in LAST_RESORT_STATES]
    return good + late


class TokenBucket:
    """A token bucket in bytes: `take` says how long to wait before *n* more bytes may pass.

    Tokens are debited at once (the balance may go negative), so concurrent takers queue up
    behind each other in order and the long-run rate is the cap whatever the parallelism.
    """

    def __init__(self, rate_bytes_per_s: float, burst_bytes: float, now: float) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate_bytes_per_s
        self.burst = max(burst_bytes, 1.0)
        self.tokens = self.burst
        self.stamp = now

    def take(self, n: int, now: float) -> float:
        """Debit *n* bytes; seconds the caller must wait before using them (0: go on)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def parse_hhmm(text: str) -> time:
    """ "HH:MM" (24 h) → time; ValueError otherwise."""
    match = _HHMM.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time of day HH:MM (00:00-23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def window_end(now: datetime, start: time, length_s: float) -> datetime | None:
    """The end of the fill window containing *now* (local time), or None outside every window.

    A window may cross midnight: started yesterday at *start* and still open now.
    """
    if length_s <= 0:
        return None
    length = timedelta(seconds=length_s)
    today = now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    # The window that may contain *now* started today or on one of the previous days (a
    # window longer than a day always contains now).
    for begin in (today, today - timedelta(days=1), today - timedelta(days=2)):
        if begin <= now < begin + length:
            return begin + length
    return None


def next_window_start(now: datetime, start: time) -> datetime:
    """When the next window opens after *now*."""
    today = now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


def parse_content_range(value: str) -> tuple[int, int, int] | None:
    """`bytes first-last/total` → (first, last, total); None if malformed (RFC 9110 §14.4)."""
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last, total = (int(g) for g in match.groups())
    if first > last or last >= total:
        return None
    return first, last, total


def resume_offset(status: int, content_range: str | None, offset: int, size: int) -> int | None:
    """Where the body of a response to `Range: bytes=offset-` starts in the file: *offset* for a
    206 that says so, 0 for a 200 (the source sent the whole file); None for anything else."""
    if status == 200:
        return 0
    if status != 206 or content_range is None:
        return None
    parsed = parse_content_range(content_range)
    if parsed != (offset, size - 1, size):
        return None
    return offset


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """An index record as reconcile sees it."""

    content_id: str
    disk_id: str
    relpath: str
    size: int


@dataclass(frozen=True, slots=True)
class TempFile:
    """A partial download on some disk."""

    disk_id: str
    path: str
    content_id: str | None  # None: not a fill temp file (e.g. an interrupted import)
    checksum: str | None
    mtime: float


@dataclass
class Reconcile:
    """What a restart must repair."""

    drop: list[IndexedFile] = field(default_factory=list)  # indexed, missing or wrong size
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (disk id, relpath)
    remove_temps: list[TempFile] = field(default_factory=list)
    resume: dict[str, TempFile] = field(default_factory=dict)  # content id → its partial file


def reconcile(
    records: Iterable[IndexedFile],
    on_disk: Mapping[tuple[str, str], int],
    temps: Iterable[TempFile],
    *,
    live_disks: set[str],
    pending: set[tuple[str, str]],
    wanted: Mapping[str, str],
    run_started: float,
) -> Reconcile:
    """Compare the index with the disks.

    *on_disk* maps (disk id, relpath) → size for every content file on the live disks;
    *pending* holds the (disk id, relpath) of files waiting out their delete grace period
    (unindexed on purpose, not orphans); *wanted* maps content ids to fetch → checksum, for
    resuming their temp files. Records on a disk that is not live are left alone: the edge
    reports that disk failed, and the files come back when it does.
    """
    out = Reconcile()
    indexed: set[tuple[str, str]] = set()
    for rec in records:
        key = (rec.disk_id, rec.relpath)
        indexed.add(key)
        if rec.disk_id not in live_disks:
            continue
        if on_disk.get(key) != rec.size:
            out.drop.append(rec)
    out.orphans = sorted(k for k in on_disk if k not in indexed and k not in pending)
    for tmp in temps:
        if tmp.mtime >= run_started:
            continue  # another writer's file from after we started: not ours to judge
        want = wanted.get(tmp.content_id or "")
        if want is not None and want == tmp.checksum and tmp.content_id not in out.resume:
            out.resume[tmp.content_id] = tmp  # type: ignore[index]
        else:
            out.remove_temps.append(tmp)
    return out


@dataclass(frozen=True, slots=True)
class PendingDelete:
    """A file out of the index whose bytes stay on disk until `due` (unix seconds)."""

    content_id: str
    disk_id: str
    relpath: str
    due: float


def split_due(
    pending: Iterable[PendingDelete], now: float
) -> tuple[list[PendingDelete], list[PendingDelete]]:
    """(due now, still waiting)."""
    due: list[PendingDelete] = []
    wait: list[PendingDelete] = []
    for p in pending:
        (due if p.due <= now else wait).append(p)
    return due, wait


@dataclass
class Tally:
    """Counts of one run, for the summary line and the status file."""

    added: int = 0
    deleted: int = 0
    failed: int = 0
    bytes_done: int = 0
    bytes_to_go: int = 0
    by_source: dict[str, int] = field(default_factory=dict)  # files fetched per source
    errors: dict[str, int] = field(default_factory=dict)  # failed attempts per source
    misses: dict[str, int] = field(default_factory=dict)  # 404s: the source lacks the file
    dropped: int = 0  # index records dropped by reconcile
    cut: str = ""  # why the run stopped before the fill was done ("window ended", ...)

    def summary(self, seconds: float) -> str:
        """One line: what the run did."""
        rate = self.bytes_done / max(seconds, 1e-9) / 1e6
        sources = ", ".join(f"{k}={v}" for k, v in sorted(self.by_source.items())) or "-"
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "-"
        misses = ", ".join(f"{k}={v}" for k, v in sorted(self.misses.items()))
        missed = f"; not yet at: {misses}" if misses else ""
        end = f" ({self.cut}; the rest resumes next run)" if self.cut else ""
        return (
            f"fill: {self.added} added, {self.deleted} deleted, {self.failed} failed, "
            f"{self.dropped} dropped by reconcile, {self.bytes_done / 1e6:,.1f} MB in "
            f"{seconds:.1f} s ({rate:,.1f} MB/s), {self.bytes_to_go / 1e6:,.1f} MB to go; "
            f"sources: {sources}{missed}; errors: {errors}{end}"
        )
