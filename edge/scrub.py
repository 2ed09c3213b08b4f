"""The background scrub and the keeper process that runs it with the disk watch.

The scrub re-hashes indexed files (xxh3-128, as edge.importer and the fill agent recorded them)
at `scrub.rate_bytes_per_s`, in content id order, one file after another and round and round.
Its position (the last content id finished) and its counters are saved next to the index every
few seconds, so a restart continues where the last run stopped instead of starting over.

A file whose size or checksum differs from its record, or that cannot be read (an I/O error,
also told to the disk watch), is quarantined: its record leaves the index (the edge answers
404, the next inventory delta lists it as removed, the next fill fetches it again from a good
source) and the file moves to `<disk>/.quarantine/`, kept for an operator to look at. A record
that changed while its file was hashed (the fill agent replaced it) is not judged.

The keeper is one process next to the workers (edge.supervisor starts and restarts it): it is
the edge's only index writer, besides the importer and the fill agent (LMDB serialises writers
across processes). It works in small steps on one thread: a disk probe when one is due, then at
most a quarter second of scrub reading, so neither waits long for the other. Every second it
writes `<runtime_dir>/keeper.json`, which /metrics and the reporter's heartbeats read.
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import xxhash

from edge.config import EdgeConfig
from edge.disks import Disk, DiskError, open_disk
from edge.diskwatch import DiskKeeper, DiskWatch
from edge.index import ContentIndex
from edge.runtime import keeper_file, write_json_atomic
from edge.store import fsync_dir
from edgefleet.models import ContentRecord

log = logging.getLogger("edgefleet.edge.scrub")
STATE_FILE: Final = "scrub-state.json"
QUARANTINE_DIR: Final = ".quarantine"
SAVE_EVERY_S: Final = 5.0
STATUS_EVERY_S: Final = 1.0
STEP_S: Final = 0.25  # longest stretch of scrub work between two looks at the clock
MAX_CHUNK: Final = 1 << 20
MIN_CHUNK: Final = 64 << 10
MAX_SKIPS: Final = 1000  # files skipped per step at most (all on a failed disk: no spinning)
ALIGN: Final = 4096  # O_DIRECT wants buffer, offset and length aligned to the block size


# -- pure: budget, state, verdicts ------------------------------------------------------------


class RateBudget:
    """Token bucket over bytes: the scrub may read `rate` bytes a second, in bursts of at most
    a quarter second's worth (so the disk sees a steady trickle, not a flood then a pause)."""

    def __init__(self, rate_bytes_per_s: int, now: float) -> None:
        self.rate = rate_bytes_per_s
        self.burst = max(rate_bytes_per_s * STEP_S, 1.0)
        self.tokens = 0.0
        self.stamp = now

    def available(self, now: float) -> int:
        """Bytes that may be read now."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def spend(self, nbytes: int) -> None:
        """Count *nbytes* read (a read may overshoot by its last chunk: the debt is repaid)."""
        self.tokens -= nbytes

    def wait_s(self, nbytes: int) -> float:
        """Seconds until *nbytes* are available (after `available` was called)."""
        missing = nbytes - self.tokens
        return 0.0 if missing <= 0 or self.rate <= 0 else missing / self.rate


def chunk_for(rate_bytes_per_s: int) -> int:
    """Read size: about a tenth of a second's budget, aligned, within 64 KiB..1 MiB."""
    size = min(MAX_CHUNK, max(MIN_CHUNK, rate_bytes_per_s // 10))
    return size - size % ALIGN


@dataclass
class ScrubState:
    """What survives a restart: the position and the counters (which never go backwards)."""

    after: str = ""  # the last content id finished; "" starts from the first
    bytes: int = 0
    files: int = 0
    quarantined: int = 0
    passes: int = 0  # complete rounds over the index
    disks: dict[str, str] | None = None  # root → disk id, for disks that fail before a read

    def to_json(self) -> dict[str, Any]:
        """The state file's document."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> ScrubState:
        """A state from its document; anything malformed starts that field afresh."""
        if not isinstance(doc, dict):
            return cls()
        out = cls()
        if isinstance(doc.get("after"), str):
            out.after = doc["after"]
        for key in ("bytes", "files", "quarantined", "passes"):
            value = doc.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(out, key, value)
        disks = doc.get("disks")
        if isinstance(disks, dict):
            out.disks = {str(k): str(v) for k, v in disks.items() if isinstance(v, str)}
        return out


def verdict(record: ContentRecord, size: int, checksum: str | None) -> str | None:
    """Why the file must be quarantined, or None when it matches its record. *checksum* is
    None when the size already differs (there is no point hashing the rest)."""
    if size != record.size:
        return f"size {size}, index says {record.size}"
    if checksum is not None and checksum != record.checksum:
        return f"checksum {checksum}, index says {record.checksum}"
    return None


def quarantine_name(record: ContentRecord, now: float) -> str:
    """The quarantined file's name: the id, the checksum it should have had, when."""
    return f"{record.content_id}.{record.checksum}.{int(now)}"


# -- I/O: one file at a time ------------------------------------------------------------------


class FileCheck:
    """The re-hash of one file, advanced a chunk at a time."""

    def __init__(self, record: ContentRecord, path: str, *, direct: bool, chunk: int) -> None:
        self.record = record
        self.path = path
        self.hasher = xxhash.xxh3_128()
        self.offset = 0
        self.fd = -1
        self.size = 0
        self.chunk = chunk
        self.buf: mmap.mmap | None = None
        flags = os.O_RDONLY | os.O_CLOEXEC
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self.fd = os.open(path, flags | os.O_DIRECT)
                # An anonymous mapping is page-aligned, as O_DIRECT requires.
                self.buf = mmap.mmap(-1, chunk)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: this filesystem has no O_DIRECT
                    raise
        if self.fd < 0:
            self.fd = os.open(path, flags)
        self.size = os.fstat(self.fd).st_size

    def advance(self, budget: int) -> int:
        """Hash up to about *budget* bytes (whole chunks); bytes read."""
        done = 0
        while done < budget and self.offset < self.size:
            if self.buf is not None:
                n = os.preadv(self.fd, [self.buf], self.offset)
                data: bytes | memoryview = memoryview(self.buf)[:n]
            else:
                data = os.pread(self.fd, self.chunk, self.offset)
                n = len(data)
            if n == 0:  # shrank under us: the size check at the end says so
                self.size = self.offset
                break
            self.hasher.update(data)
            self.offset += n
            done += n
        return done

    @property
    def finished(self) -> bool:
        return self.offset >= self.size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.buf is not None:
            self.buf.close()
            self.buf = None


class Scrubber:
    """The scrub loop's state: the file in progress, the budget, the counters."""

    def __init__(self, config: EdgeConfig, index: ContentIndex, keeper: DiskKeeper) -> None:
        self.config = config
        self.index = index
        self.keeper = keeper
        self.state_path = Path(config.index) / STATE_FILE
        self.state = self._load()
        if self.state.disks:
            keeper.watch.remember(self.state.disks)
        self.enabled = config.scrub.enabled and config.scrub.rate_bytes_per_s > 0
        self.budget = RateBudget(config.scrub.rate_bytes_per_s, time.monotonic())
        self.chunk = chunk_for(config.scrub.rate_bytes_per_s)
        self.current: FileCheck | None = None
        self._saved = time.monotonic()

    def _load(self) -> ScrubState:
        try:
            return ScrubState.from_json(json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return ScrubState()
        except (OSError, ValueError) as exc:
            log.error(
                "scrub: %s unreadable (%s); starting from the first file", self.state_path, exc
            )
            return ScrubState()

    def save(self) -> None:
        """Persist position and counters (a crash loses at most SAVE_EVERY_S of progress)."""
        self.state.disks = {
            d.root: d.disk_id for d in self.keeper.watch.disks.values() if d.disk_id
        }
        tmp = self.state_path.with_name(f".{STATE_FILE}.tmp")
        try:
            tmp.write_text(json.dumps(self.state.to_json()))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.warning("scrub: cannot save %s: %s", self.state_path, exc)
        self._saved = time.monotonic()

    def step(self, now: float) -> float:
        """Scrub within the budget; seconds until more work can be done."""
        if not self.enabled:
            return STEP_S
        allowed = self.budget.available(now)
        if allowed < self.chunk:
            return min(STEP_S, self.budget.wait_s(self.chunk))
        deadline = now + STEP_S
        skipped = 0
        while allowed >= self.chunk and time.monotonic() < deadline:
            if self.current is None:
                if not self._open_next():
                    return STEP_S  # an empty index
                if self.current is None:  # skipped (unusable disk, judged at open)
                    skipped += 1
                    if skipped >= MAX_SKIPS:
                        break
                    continue
            check = self.current
            try:
                n = check.advance(self.chunk)
            except OSError as exc:
                check.close()
                self.current = None
                self._read_error(check.record, check.path, exc)
                continue
            self.budget.spend(n)
            self.state.bytes += n
            allowed -= n
            if check.finished:
                check.close()
                self.current = None
                self.state.files += 1
                self._judge(check.record, check.path, check.offset, check.hasher.hexdigest())
        if time.monotonic() - self._saved >= SAVE_EVERY_S:
            self.save()
        return 0.0 if allowed >= self.chunk else min(STEP_S, self.budget.wait_s(self.chunk))

    def _open_next(self) -> bool:
        """Move to the file after the position (wrapping round) and open it, or judge it at
        once; False only when the index is empty."""
        record = self.index.record_after(self.state.after)
        if record is None:
            if self.state.after == "":
                return False
            self.state.after = ""
            self.state.passes += 1
            record = self.index.record_after("")
            if record is None:
                return False
        self.state.after = record.content_id
        disk = self._disk(record.disk_id) if self.keeper.watch.usable(record.disk_id) else None
        if disk is None:
            return True  # the disk watch deals with it
        path = disk.path_of(record.relpath)
        try:
            check = FileCheck(record, path, direct=self.config.scrub.direct_io, chunk=self.chunk)
        except FileNotFoundError:
            self._judge(record, path, -1, None)
            return True
        except OSError as exc:
            self._read_error(record, path, exc)
            return True
        if check.size != record.size:  # no need to hash: judged on the size alone
            check.close()
            self.state.files += 1
            self._judge(record, path, check.size, None)
            return True
        self.current = check
        return True

    def _disk(self, disk_id: str) -> Disk | None:
        """The disk holding *disk_id* if its id file reads back right now."""
        root = self.keeper.watch.root_of(disk_id)
        if root is None:
            return None
        try:
            disk = open_disk(root)
        except DiskError:
            return None
        return disk if disk.disk_id == disk_id else None

    def _judge(self, record: ContentRecord, path: str, size: int, checksum: str | None) -> None:
        """Quarantine a file that does not match its record (size -1: the file is missing)."""
        reason = "file missing" if size < 0 else verdict(record, size, checksum)
        if reason is None:
            return
        # A disk that vanished a moment ago (unmounted, id file gone) makes every file look
        # missing or short: that is the disk watch's business, not a verdict on the file.
        if self._disk(record.disk_id) is None:
            self.keeper.read_error(record.disk_id, f"disk unreadable while scrubbing {path}")
            return
        self._quarantine(record, path, reason, move=size >= 0)

    def _read_error(self, record: ContentRecord, path: str, exc: OSError) -> None:
        reason = f"read error: {exc.strerror or exc}"
        self.keeper.read_error(record.disk_id, reason)
        self._quarantine(record, path, reason)

    def _quarantine(self, record: ContentRecord, path: str, reason: str, move: bool = True) -> None:
        """Out of the index (only if unchanged since it was read), then into `.quarantine/`."""
        removed = self.index.delete_many(
            [record.content_id], generations={record.content_id: record.generation}
        )
        if not removed:
            return  # replaced or deleted meanwhile: the new record is another file
        self.state.quarantined += 1
        log.error("scrub: %s quarantined: %s (%s)", record.content_id, reason, path)
        if not move:
            return
        disk = self._disk(record.disk_id)
        if disk is None:
            return
        qdir = disk.root / QUARANTINE_DIR
        try:
            qdir.mkdir(exist_ok=True)
            os.replace(path, qdir / quarantine_name(record, time.time()))
            fsync_dir(str(qdir))
        except OSError as exc:
            log.error("scrub: cannot move %s to %s: %s", path, qdir, exc)

    def status(self) -> dict[str, Any]:
        """The scrub part of keeper.json."""
        return {
            "enabled": self.enabled,
            "rate_bytes_per_s": self.config.scrub.rate_bytes_per_s,
            "bytes": self.state.bytes,
            "files": self.state.files,
            "quarantined": self.state.quarantined,
            "passes": self.state.passes,
            "position": self.state.after,
        }

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        self.save()


# -- the keeper process -----------------------------------------------------------------------


def run_keeper(config: EdgeConfig, ready_fd: int) -> int:
    """Entry point of the forked keeper process: probe disks and scrub until SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(True))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGHUP))
    # The edge's own index writer: opened after the fork (LMDB environments must not cross one).
    index = ContentIndex(config.index)
    watch = DiskWatch(
        tuple(config.disks), config.diskwatch.fail_after, config.diskwatch.recover_after
    )
    keeper = DiskKeeper(watch, index, config.runtime_dir)
    scrubber = Scrubber(config, index, keeper)
    os.write(ready_fd, b"R")
    os.close(ready_fd)
    next_probe = next_status = time.monotonic()
    try:
        while not stop:
            now = time.monotonic()
            if now >= next_probe:
                keeper.probe_all()
                next_probe = now + config.diskwatch.probe_interval_s
            wait = scrubber.step(time.monotonic())
            now = time.monotonic()
            if now >= next_status:
                write_status(config, keeper, scrubber)
                next_status = now + STATUS_EVERY_S
            pause = min(wait, next_probe - now, next_status - now)
            if pause > 0 and not stop:
                time.sleep(pause)  # a signal ends the sleep early enough (STEP_S at most)
    finally:
        scrubber.close()
        write_status(config, keeper, scrubber)
        index.close()
    return 0


def write_status(config: EdgeConfig, keeper: DiskKeeper, scrubber: Scrubber) -> None:
    """keeper.json: the disks as the watch sees them, and the scrub's counters."""
    try:
        write_json_atomic(
            keeper_file(config.runtime_dir),
            {
                "pid": os.getpid(),
                "disks": keeper.watch.to_json(),
                "disk_failures": keeper.failures_total,
                "disk_files_removed": keeper.removed_total,
                "scrub": scrubber.status(),
            },
        )
    except OSError as exc:
        log.warning("keeper: cannot write its status: %s", exc)
