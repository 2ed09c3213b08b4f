"""`edgefleet edge import DIR`: copy a directory of files onto the disks and into the index.

Each file is copied to a temporary file on the chosen disk while being hashed (one read pass),
fsynced, renamed into place, and only then recorded in the index: a crash leaves at worst an
unindexed temporary file, never an indexed torn one. Content ids are the file names.
"""

from __future__ import annotations

import mimetypes
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import xxhash

from edge.disks import TMP_DIR, Disk, choose_disk, relpath_for
from edge.index import ContentIndex, NewFile
from edgefleet.models import ContentRecord, is_content_id

CHUNK = 1 << 20
mimetypes.add_type("video/mp4", ".m4s")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("application/dash+xml", ".mpd")
mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")


class ImportError_(Exception):
    """A file cannot be imported; the message names it."""


@dataclass
class Progress:
    """A one-line progress bar on a terminal (files, bytes, rate); silent when not a tty."""

    total_bytes: int
    out: TextIO = sys.stderr
    done_bytes: int = 0
    done_files: int = 0
    _started: float = 0.0
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._started = self._last = time.monotonic()

    def advance(self, nbytes: int, files: int = 0) -> None:
        self.done_bytes += nbytes
        self.done_files += files
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done_bytes == self.total_bytes:
            self._last = now
            self.draw(now)

    def draw(self, now: float) -> None:
        if not self.out.isatty():
            return
        frac = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        bar = "#" * int(frac * 30)
        rate = self.done_bytes / max(now - self._started, 1e-6) / 1e6
        self.out.write(
            f"\r[{bar:<30}] {frac:6.1%} {self.done_files} files "
            f"{self.done_bytes / 1e6:,.1f} MB {rate:,.0f} MB/s"
        )
        self.out.flush()

    def finish(self) -> None:
        if self.out.isatty():
            self.draw(time.monotonic())
            self.out.write("\n")


def hash_file(path: str | Path) -> str:
    """xxh3-128 of a file, as 32 hex digits."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def install_file(
    src: Path,
    content_id: str,
    disk: Disk,
    index: ContentIndex,
    on_bytes: Callable[[int], None] = lambda n: None,
) -> ContentRecord:
    """Copy *src* onto *disk* as *content_id*, hashing it, then record it in *index*."""
    relpath = relpath_for(content_id)
    final = disk.path_of(relpath)
    tmp_dir = disk.root / TMP_DIR
    tmp_dir.mkdir(exist_ok=True)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tmp_dir / f"{content_id}.{os.getpid()}.part"
    h = xxhash.xxh3_128()
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
                size += len(chunk)
                on_bytes(len(chunk))
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, final)
        _fsync_dir(os.path.dirname(final))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    ctype = mimetypes.guess_type(content_id)[0] or "application/octet-stream"
    return index.put(
        NewFile(
            content_id=content_id,
            disk_id=disk.disk_id,
            relpath=relpath,
            size=size,
            checksum=h.hexdigest(),
            content_type=ctype,
            install_time=int(time.time()),
        )
    )


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def import_directory(
    src_dir: str | Path,
    index: ContentIndex,
    disks: list[Disk],
    *,
    reserve_bytes: int = 0,
    progress_out: TextIO = sys.stderr,
) -> list[ContentRecord]:
    """Import every regular file under *src_dir* (not recursing into dot-directories)."""
    src = Path(src_dir)
    if not src.is_dir():
        raise ImportError_(f"{src}: not a directory")
    files: list[Path] = []
    seen: dict[str, Path] = {}
    for root, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if not is_content_id(name):
                raise ImportError_(
                    f"{path}: file name is not a valid content id ([A-Za-z0-9][A-Za-z0-9._-]*)"
                )
            if name in seen:
                raise ImportError_(f"{path}: content id '{name}' also names {seen[name]}")
            seen[name] = path
            files.append(path)
    progress = Progress(sum(p.stat().st_size for p in files), out=progress_out)
    records = []
    by_id = {d.disk_id: d for d in disks}
    for path in files:
        old = index.get(path.name)
        disk = choose_disk(disks, path.stat().st_size, reserve_bytes)
        record = install_file(path, path.name, disk, index, progress.advance)
        if old is not None and old.disk_id != record.disk_id and old.disk_id in by_id:
            # Re-imported onto another disk: the index no longer points at the old copy.
            Path(by_id[old.disk_id].path_of(old.relpath)).unlink(missing_ok=True)
        records.append(record)
        progress.advance(0, files=1)
    progress.finish()
    return records
