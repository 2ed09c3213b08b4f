"""`edgefleet edge import DIR`: copy a directory of files onto the disks and into the index.

Each file is copied to a temporary file on the chosen disk while being hashed (one read pass),
then placed by edge.store.place_file (fsync, rename, then the index record; the same steps as
the fill agent's): a crash leaves at worst an unindexed temporary file, never an indexed torn
one. Content ids are the file names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import xxhash

from edge.disks import TMP_DIR, Disk, choose_disk, relpath_for
from edge.index import ContentIndex
from edge.store import Placed, place_file
from edgefleet.models import ContentRecord, is_content_id
from edgefleet.progress import Progress

CHUNK = 1 << 20


class ImportFailed(Exception):
    """A file cannot be imported; the message names it."""


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
    return _copy_and_place(src, content_id, disk, index, on_bytes).record


def _copy_and_place(
    src: Path,
    content_id: str,
    disk: Disk,
    index: ContentIndex,
    on_bytes: Callable[[int], None],
) -> Placed:
    """Copy *src* to a temporary file on *disk* while hashing it (one read pass), then place
    it (edge.store.place_file: fsync, the stale-record guard, rename, record)."""
    relpath_for(content_id)  # refuse an id that is not one before writing anything
    tmp_dir = disk.root / TMP_DIR
    tmp_dir.mkdir(exist_ok=True)
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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return place_file(index, disk, tmp, content_id, size, h.hexdigest())


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
        raise ImportFailed(f"{src}: not a directory")
    files: list[Path] = []
    seen: dict[str, Path] = {}
    for root, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if not is_content_id(name):
                raise ImportFailed(
                    f"{path}: file name is not a valid content id ([A-Za-z0-9][A-Za-z0-9._-]*)"
                )
            if name in seen:
                raise ImportFailed(f"{path}: content id '{name}' also names {seen[name]}")
            seen[name] = path
            files.append(path)
    progress = Progress(sum(p.stat().st_size for p in files), out=progress_out)
    records = []
    by_id = {d.disk_id: d for d in disks}
    for path in files:
        disk = choose_disk(disks, path.stat().st_size, reserve_bytes)
        placed = _copy_and_place(path, path.name, disk, index, progress.advance)
        old = placed.displaced
        if old is not None and old.disk_id in by_id:
            # Re-imported onto another disk: the index no longer points at the old copy.
            Path(by_id[old.disk_id].path_of(old.relpath)).unlink(missing_ok=True)
        records.append(placed.record)
        progress.advance(0, files=1)
    progress.finish()
    return records
