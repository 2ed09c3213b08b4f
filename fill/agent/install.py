"""The fill agent's disk and index side: partial files, atomic installs, deletes, reconcile.

Every function here blocks (disk writes, fsync, LMDB commits); the agent calls them from one
executor thread, never from the event loop.

Crash safety, step by step (a SIGKILL may land between any two):

1. bytes go to `<disk>/.tmp/fill-<id>.<checksum>.part`, which nothing serves; the name says
   what the bytes should become, so a later run resumes it (from any source: the checksum
   identifies the content);
2. the whole file is checked against the manifest's xxh3-128, then placed by
   edge.store.place_file (the edge's importer uses it too): fsynced, renamed to its final path,
   and the directory fsynced;
3. only then is it recorded in the index, which is what the edge serves from.

A crash after 2 and before 3 leaves a complete but unindexed file: reconcile removes it as an
orphan. A file is never indexed before its bytes are durable, so no torn file is ever served.

Deletes run the other way round: the record leaves the index at once (the edge answers 404 and
the next inventory delta tells control), the path goes to a small durable list of pending
deletes next to the index, and the bytes are unlinked once the grace period is over.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import xxhash

from edge.store import (
    TMP_DIR,
    ContentIndex,
    Disk,
    DiskError,
    choose_disk,
    fsync_dir,
    place_file,
)
from edgefleet.manifests import ManifestFile
from edgefleet.models import ContentRecord, is_content_id
from fill.agent.decisions import IndexedFile, PendingDelete, Reconcile, TempFile, split_due

log = logging.getLogger("edgefleet.fill")
PENDING_FILE = "fill-pending.json"
_FANOUT = re.compile(r"[0-9a-f]{2}")
TEMP_PREFIX = "fill-"
TEMP_SUFFIX = ".part"


def temp_name(content_id: str, checksum: str) -> str:
    """The partial file's name: what its bytes should become."""
    return f"{TEMP_PREFIX}{content_id}.{checksum}{TEMP_SUFFIX}"


def parse_temp_name(name: str) -> tuple[str, str] | None:
    """(content id, checksum) of a fill temp file name, or None for any other name."""
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return None
    stem = name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)]
    cid, dot, checksum = stem.rpartition(".")
    if not dot or len(checksum) != 32 or not is_content_id(cid):
        return None
    return cid, checksum


class DiskTrouble(Exception):
    """A disk failed or filled up under a write; the agent skips it for the rest of the run."""

    def __init__(self, disk: Disk, detail: str) -> None:
        super().__init__(f"disk {disk.disk_id} ({disk.root}): {detail}")
        self.disk = disk


class PartFile:
    """A partial download: an open temp file and the running xxh3-128 of its bytes."""

    def __init__(self, disk: Disk, path: Path, expected: ManifestFile) -> None:
        self.disk = disk
        self.path = path
        self.expected = expected
        self.hasher = xxhash.xxh3_128()
        self.written = 0
        self.fh = open(path, "a+b")  # noqa: SIM115 - closed by finish/close
        self.fh.seek(0)
        # Resume: hash what an earlier attempt left, unless it cannot be a prefix of the file.
        try:
            have = os.fstat(self.fh.fileno()).st_size
            if have >= expected.size:
                self.restart()
            else:
                # Read no more than the size seen: the hash must cover exactly what is kept.
                while self.written < have:
                    chunk = self.fh.read(min(1 << 20, have - self.written))
                    if not chunk:
                        break
                    self.hasher.update(chunk)
                    self.written += len(chunk)
                if self.written < have:  # the file shrank under us: keep what was hashed
                    self.fh.truncate(self.written)
        except OSError:
            self.fh.close()
            raise

    def write(self, data: bytes) -> None:
        """Append *data*; DiskTrouble when the disk refuses it."""
        self.write_all((data,))

    def write_all(self, chunks: Iterable[bytes]) -> None:
        """Append each of *chunks* (as received: no joining copy); DiskTrouble when the disk
        refuses them."""
        for data in chunks:
            try:
                self.fh.write(data)
            except OSError as exc:
                raise DiskTrouble(self.disk, exc.strerror or str(exc)) from None
            self.hasher.update(data)
            self.written += len(data)

    def restart(self) -> None:
        """Forget every byte (the source sent the whole file, or the checksum failed)."""
        self.fh.seek(0)
        self.fh.truncate()
        self.hasher = xxhash.xxh3_128()
        self.written = 0

    def digest(self) -> str:
        """xxh3-128 of the bytes so far."""
        return self.hasher.hexdigest()

    def close(self) -> None:
        """Close, keeping the bytes for a later resume (flushed to the page cache)."""
        try:
            self.fh.close()
        except OSError as exc:
            log.warning("fill: closing %s: %s", self.path, exc)

    def discard(self) -> None:
        """Close and remove."""
        self.close()
        self.path.unlink(missing_ok=True)


class Installer:
    """The disks and index of one appliance, as the fill agent changes them."""

    def __init__(
        self,
        index: ContentIndex,
        disks: list[Disk],
        *,
        reserve_bytes: int = 0,
        grace_s: float = 3600.0,
    ) -> None:
        self.index = index
        self.disks = {d.disk_id: d for d in disks}
        self.skipped: dict[str, str] = {}  # disk id → why it is not used this run
        self.reserve_bytes = reserve_bytes
        self.grace_s = grace_s
        self.pending_path = index.path / PENDING_FILE
        self.pending = self._load_pending()

    # -- pending deletes ------------------------------------------------------------------

    def _load_pending(self) -> list[PendingDelete]:
        try:
            doc = json.loads(self.pending_path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            # Losing the list only leaves bytes on disk: reconcile removes them as orphans.
            log.error("fill: %s unreadable (%s); its files become orphans", self.pending_path, exc)
            return []
        out = []
        for i, item in enumerate(doc if isinstance(doc, list) else []):
            try:
                out.append(
                    PendingDelete(
                        str(item["content_id"]),
                        str(item["disk_id"]),
                        str(item["relpath"]),
                        float(item["due"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.error("fill: %s: entry %d is malformed, ignored", self.pending_path, i)
        return out

    def _save_pending(self) -> None:
        tmp = self.pending_path.with_name(f".{PENDING_FILE}.tmp")
        with open(tmp, "w") as fh:
            json.dump([asdict(p) for p in self.pending], fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.pending_path)
        fsync_dir(self.pending_path.parent)

    def pending_keys(self) -> set[tuple[str, str]]:
        """(disk id, relpath) of every file waiting out its grace period."""
        return {(p.disk_id, p.relpath) for p in self.pending}

    def delete(self, content_id: str, now: float, *, grace: bool = True) -> ContentRecord | None:
        """Take *content_id* out of the index now; its bytes go after the grace period (or at
        once without *grace*: a file about to be re-fetched under the same path)."""
        old = self.index.delete(content_id)
        if old is None:
            return None
        if grace:
            due = now + self.grace_s
            self.pending.append(PendingDelete(content_id, old.disk_id, old.relpath, due))
            self._save_pending()
        else:
            self._unlink(old.disk_id, old.relpath)
        return old

    def run_due(self, now: float) -> int:
        """Unlink the pending deletes whose grace period is over; how many."""
        due, wait = split_due(self.pending, now)
        if not due:
            return 0
        for p in due:
            current = self.index.get(p.content_id)
            if current is not None and (current.disk_id, current.relpath) == (p.disk_id, p.relpath):
                continue  # listed again since (re-added at the same path): keep the bytes
            self._unlink(p.disk_id, p.relpath)
        self.pending = wait
        self._save_pending()
        return len(due)

    def _unlink(self, disk_id: str, relpath: str) -> None:
        disk = self.disks.get(disk_id)
        if disk is None:
            return
        try:
            Path(disk.path_of(relpath)).unlink(missing_ok=True)
        except OSError as exc:
            log.error("fill: cannot remove %s: %s", disk.path_of(relpath), exc)

    # -- partial files and installs -------------------------------------------------------

    def usable_disks(self) -> list[Disk]:
        """Disks not skipped this run."""
        return [d for d in self.disks.values() if d.disk_id not in self.skipped]

    def skip_disk(self, disk: Disk, why: str) -> None:
        """Stop using *disk* for this run (reported in the log and the summary)."""
        if disk.disk_id not in self.skipped:
            self.skipped[disk.disk_id] = why
            log.error("fill: skipping disk %s (%s): %s", disk.disk_id, disk.root, why)

    def open_part(self, file: ManifestFile, resume: TempFile | None) -> PartFile:
        """The partial file to download *file* into: *resume*'s if its disk is usable, else a
        new one on the usable disk with the most free space. DiskError when none fits."""
        if resume is not None:
            disk = self.disks.get(resume.disk_id)
            if disk is not None and disk.disk_id not in self.skipped:
                return self._part(disk, file)
        disk = choose_disk(self.usable_disks(), file.size, self.reserve_bytes)
        return self._part(disk, file)

    def _part(self, disk: Disk, file: ManifestFile) -> PartFile:
        try:
            tmp_dir = disk.root / TMP_DIR
            tmp_dir.mkdir(exist_ok=True)
            return PartFile(disk, tmp_dir / temp_name(file.content_id, file.checksum), file)
        except OSError as exc:
            raise DiskTrouble(disk, exc.strerror or str(exc)) from None

    def install(self, part: PartFile) -> ContentRecord:
        """Flush and close the verified *part*, then place it (edge.store.place_file: fsync,
        rename, fsync the directory, then record in the index).

        A held copy with other content (a re-fetch) at the same path leaves the index before
        the rename, so the edge never pairs the old record with the new bytes; one on another
        disk waits out the grace period like any delete.
        """
        file = part.expected
        try:
            part.fh.flush()  # a write-back failure must fail the install, not be lost on close
            part.fh.close()
            placed = place_file(
                self.index, part.disk, part.path, file.content_id, file.size, file.checksum
            )
        except OSError as exc:
            part.discard()
            raise DiskTrouble(part.disk, exc.strerror or str(exc)) from None
        old = placed.displaced
        if old is not None:
            due = time.time() + self.grace_s
            self.pending.append(PendingDelete(old.content_id, old.disk_id, old.relpath, due))
            self._save_pending()
        return placed.record

    # -- reconcile ------------------------------------------------------------------------

    def scan(self) -> tuple[dict[tuple[str, str], int], list[TempFile]]:
        """Content files and temp files on the usable disks; a disk that cannot be read is
        skipped (and reported)."""
        on_disk: dict[tuple[str, str], int] = {}
        temps: list[TempFile] = []
        for disk in self.usable_disks():
            try:
                on_disk.update(_scan_content(disk))
                temps.extend(_scan_temps(disk))
            except OSError as exc:
                self.skip_disk(disk, f"cannot scan: {exc.strerror or exc}")
        return on_disk, temps

    def reconcile_inputs(self) -> list[IndexedFile]:
        """The index records, as reconcile needs them."""
        return [
            IndexedFile(r.content_id, r.disk_id, r.relpath, r.size) for r in self.index.records()
        ]

    def apply(self, plan: Reconcile) -> None:
        """Carry out a reconcile plan: drop missing/wrong-size records, remove orphans and
        temp files no manifest entry wants."""
        for rec in plan.drop:
            self.index.delete(rec.content_id)
            log.warning(
                "fill: %s dropped from the index: its file is missing or has the wrong size",
                rec.content_id,
            )
        for disk_id, relpath in plan.orphans:
            log.info("fill: removing orphan %s on disk %s", relpath, disk_id)
            self._unlink(disk_id, relpath)
        for tmp in plan.remove_temps:
            try:
                os.unlink(tmp.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("fill: cannot remove %s: %s", tmp.path, exc)

    def free_bytes(self) -> int:
        """Free bytes on the usable disks above the reserve."""
        total = 0
        for disk in self.usable_disks():
            try:
                total += max(0, disk.free_bytes() - self.reserve_bytes)
            except OSError:
                continue
        return total


def _scan_content(disk: Disk) -> Iterable[tuple[tuple[str, str], int]]:
    """(disk id, relpath) → size for the files in a disk's fan-out directories."""
    with os.scandir(disk.root) as top:
        # Only the fan-out directories (two hex digits, see edge.store.relpath_for): anything
        # else on the mount (lost+found, an operator's files) is none of the agent's business.
        dirs = [e for e in top if e.is_dir(follow_symlinks=False) and _FANOUT.fullmatch(e.name)]
    for sub in dirs:
        with os.scandir(sub.path) as files:
            for entry in files:
                if entry.is_file(follow_symlinks=False):
                    yield (disk.disk_id, f"{sub.name}/{entry.name}"), entry.stat().st_size


def _scan_temps(disk: Disk) -> list[TempFile]:
    tmp_dir = disk.root / TMP_DIR
    out: list[TempFile] = []
    try:
        entries = list(os.scandir(tmp_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue
        parsed = parse_temp_name(entry.name)
        cid, checksum = parsed if parsed is not None else (None, None)
        out.append(TempFile(disk.disk_id, entry.path, cid, checksum, entry.stat().st_mtime))
    return out


__all__ = ["DiskError", "DiskTrouble", "Installer", "PartFile", "parse_temp_name", "temp_name"]
