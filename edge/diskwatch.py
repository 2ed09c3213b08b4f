"""Disk failure: probe every disk, confirm a failure, take the disk's files out of the index.

Workers already stop using a disk whose id file cannot be read (edge.worker.check_disks: its
files answer 503). That keeps the bytes safe but leaves the files in the inventory, so steering
keeps sending players to an appliance that cannot serve them. The keeper process (edge.scrub)
runs this watch once per `diskwatch.probe_interval_s`:

- a probe re-reads the disk's id file after dropping it from the page cache (so the read reaches
  the device) and calls statvfs; a scrub read that fails with an I/O error counts as a failed
  probe too;
- `fail_after` consecutive failures (any good probe resets the count) fail the disk: every
  record on it leaves the index in one write transaction, so the next inventory delta lists
  them all as removed and the next fill places them elsewhere;
- a failed disk comes back after `recover_after` consecutive good probes; the files it still
  holds are no longer indexed, and the fill agent's reconcile removes them as orphans.

Fault injection for tests and drills: a file `<runtime_dir>/fault-disks` naming disk ids or
roots, one per line, makes their probes fail with EIO (`FAULT_FILE`).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.disks import DISK_ID_FILE
from edge.index import ContentIndex

log = logging.getLogger("edgefleet.edge.disks")
FAULT_FILE = "fault-disks"


# -- pure: the confirmation rule -------------------------------------------------------------


@dataclass
class DiskRecord:
    """What the watch knows of one configured disk root."""

    root: str
    disk_id: str = ""  # the last id read from the root ("" until one was)
    failed: bool = False
    reason: str = ""  # the last failure, for logs, metrics and heartbeats
    bad: int = 0  # consecutive failed observations
    good: int = 0  # consecutive good probes (counts towards recovery while failed)
    free_bytes: int = 0
    total_bytes: int = 0


@dataclass
class DiskWatch:
    """Consecutive-failure rule per disk root: `observe` says when a disk fails or recovers."""

    roots: tuple[str, ...]
    fail_after: int = 3
    recover_after: int = 30
    disks: dict[str, DiskRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for root in self.roots:
            self.disks.setdefault(root, DiskRecord(root))

    def observe(self, root: str, disk_id: str | None, error: str | None) -> str | None:
        """One probe result (an id when good, an error when not); "failed" or "recovered"
        when the disk's state changes, else None."""
        disk = self.disks[root]
        if error is None:
            if disk_id:
                disk.disk_id = disk_id
            disk.bad = 0
            if not disk.failed:
                return None
            disk.good += 1
            if disk.good >= self.recover_after:
                disk.failed, disk.good, disk.reason = False, 0, ""
                return "recovered"
            return None
        return self.read_error(root, error)

    def read_error(self, root: str, error: str) -> str | None:
        """An I/O error seen while reading a file on *root* (the scrub reports these)."""
        disk = self.disks[root]
        disk.good = 0
        disk.bad += 1
        disk.reason = error
        if not disk.failed and disk.bad >= self.fail_after:
            disk.failed = True
            return "failed"
        return None

    def root_of(self, disk_id: str) -> str | None:
        """The configured root last seen holding *disk_id*."""
        for disk in self.disks.values():
            if disk.disk_id == disk_id:
                return disk.root
        return None

    def usable(self, disk_id: str) -> bool:
        """True when *disk_id* is on a disk that is neither failed nor failing right now."""
        root = self.root_of(disk_id)
        return root is not None and not self.disks[root].failed and self.disks[root].bad == 0

    def to_json(self) -> list[dict[str, Any]]:
        """The disks for the keeper's status file (metrics, heartbeats)."""
        return [
            {
                "root": d.root,
                "id": d.disk_id,
                "failed": d.failed,
                "reason": d.reason,
                "free_bytes": d.free_bytes,
                "total_bytes": d.total_bytes,
            }
            for d in self.disks.values()
        ]

    def remember(self, known: dict[str, str]) -> None:
        """Root → id learnt by an earlier keeper (a disk failed before this one read it)."""
        for root, disk_id in known.items():
            if root in self.disks and not self.disks[root].disk_id:
                self.disks[root].disk_id = disk_id


def ids_to_remove(
    failed_ids: set[str], healthy_ids: set[str], unknown_failed: bool, indexed: Iterable[str]
) -> set[str]:
    """Disk ids whose records leave the index when a disk fails.

    The failed disks' ids; and when a failed root's id was never read (it failed before the
    keeper first saw it), every indexed disk id that no healthy disk holds: those files cannot
    be served from anywhere on this appliance either.
    """
    out = set(failed_ids)
    if unknown_failed:
        out |= {d for d in indexed if d not in healthy_ids}
    return out - healthy_ids


# -- I/O: probes and the index change --------------------------------------------------------


def faulty(runtime_dir: str) -> set[str]:
    """Disk ids and roots named in the fault-injection file (empty when there is none)."""
    try:
        text = (Path(runtime_dir) / FAULT_FILE).read_text()
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def probe(root: str, faults: set[str]) -> tuple[str | None, str | None, int, int]:
    """(disk id, error, free bytes, total bytes) of the disk at *root*, read from the device."""
    try:
        fd = os.open(os.path.join(root, DISK_ID_FILE), os.O_RDONLY)
        try:
            # Drop the id file's cached page first: a disk that died keeps answering from the
            # page cache otherwise, and the probe would never see the device.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            disk_id = os.read(fd, 256).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        st = os.statvfs(root)
    except OSError as exc:
        return None, f"{exc.strerror or exc}", 0, 0
    if not disk_id.isalnum():
        return None, f"corrupt {DISK_ID_FILE}", 0, 0
    if disk_id in faults or root in faults:
        return None, f"{os.strerror(errno.EIO)} (injected)", 0, 0
    return disk_id, None, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def remove_disks(index: ContentIndex, disk_ids: set[str]) -> int:
    """Take every record on *disk_ids* out of the index in one transaction; how many left."""
    if not disk_ids:
        return 0
    doomed = {r.content_id: r.generation for r in index.records() if r.disk_id in disk_ids}
    # Generations guard against a record the fill agent replaced (onto a good disk) meanwhile.
    return len(index.delete_many(list(doomed), generations=doomed))


@dataclass
class DiskKeeper:
    """The watch plus its effects: probes, logs, index removals."""

    watch: DiskWatch
    index: ContentIndex
    runtime_dir: str
    removed_total: int = 0
    failures_total: int = 0

    def probe_all(self) -> None:
        """Probe every disk once and act on the transitions."""
        faults = faulty(self.runtime_dir)
        for root in self.watch.roots:
            disk_id, error, free, total = probe(root, faults)
            record = self.watch.disks[root]
            record.free_bytes, record.total_bytes = free, total
            if error is not None and record.bad == 0 and not record.failed:
                log.warning("disk %s (%s): %s; failed if it persists", record.disk_id, root, error)
            self.act(root, self.watch.observe(root, disk_id, error))

    def read_error(self, disk_id: str, error: str) -> None:
        """An I/O error reading a file of *disk_id* (from the scrub)."""
        root = self.watch.root_of(disk_id)
        if root is not None:
            self.act(root, self.watch.read_error(root, error))

    def act(self, root: str, change: str | None) -> None:
        """Carry out a transition of the disk at *root*."""
        if change is None:
            return
        record = self.watch.disks[root]
        if change == "recovered":
            log.warning("disk %s (%s) answers again: back in use (empty)", record.disk_id, root)
            return
        self.failures_total += 1
        healthy = {d.disk_id for d in self.watch.disks.values() if not d.failed and d.disk_id}
        failed = {d.disk_id for d in self.watch.disks.values() if d.failed and d.disk_id}
        unknown = any(d.failed and not d.disk_id for d in self.watch.disks.values())
        indexed = {r.disk_id for r in self.index.records()} if unknown else set()
        removed = remove_disks(self.index, ids_to_remove(failed, healthy, unknown, indexed))
        self.removed_total += removed
        log.error(
            "disk %s (%s) FAILED (%s): %d file(s) removed from the index",
            record.disk_id or "?",
            root,
            record.reason,
            removed,
        )
