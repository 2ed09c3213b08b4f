"""The content store as the programs that write it see it: `place_file()` and its parts.

This is one of the edge's two public modules (with edge.runtime): the fill agent (fill/agent/)
and the planner (fill/planner/) import nothing else of the edge. It places a complete file on
a disk and into the index, reads an index as a catalog, and re-exports the few names of the
edge's disks, index and configuration that a writer needs.

Placing a file, step by step (a SIGKILL may land between any two):

1. the bytes are complete in a temporary file under the disk's `.tmp/`, which nothing serves;
2. the temporary file is fsynced;
3. when the id's current record names the very path about to be replaced, that record leaves
   the index first (see `place_file`);
4. the file is renamed to its final path and the directory fsynced;
5. only then is it recorded in the index, which is what the edge serves from.

A crash after 4 and before 5 leaves a complete but unindexed file (the fill agent's reconcile
removes it as an orphan, a re-import replaces it); a file is never indexed before its bytes are
durable, so no torn file is ever served.
"""

from __future__ import annotations

import mimetypes
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.config import EdgeConfig
from edge.config import load as load_config
from edge.disks import TMP_DIR, Disk, DiskError, choose_disk, open_disks, relpath_for
from edge.index import ContentIndex, IndexUnavailable, NewFile
from edgefleet.models import ContentRecord
from edgefleet.records import CatalogEntry

# Types the stdlib table lacks for streaming segments and playlists.
mimetypes.add_type("video/mp4", ".m4s")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("application/dash+xml", ".mpd")
mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")


def content_type_of(content_id: str) -> str:
    """The Content-Type a file is served with, from its id's extension."""
    return mimetypes.guess_type(content_id)[0] or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Placed:
    """What `place_file` did: the new record, and the one it displaced from another path."""

    record: ContentRecord
    # The id's previous record when its bytes live at another path (another disk): those bytes
    # are still there, for the caller to remove (at once, or after a grace period).
    displaced: ContentRecord | None


def place_file(
    index: ContentIndex, disk: Disk, tmp: Path, content_id: str, size: int, checksum: str
) -> Placed:
    """Make the complete temporary file *tmp* (on *disk*, under `.tmp/`) the content of
    *content_id*: fsync it, rename it into place, fsync the directory, then record it.

    *size* and *checksum* (xxh3-128, 32 hex digits) are what the caller measured while writing
    *tmp*. When the id is held at the very path being replaced, its record leaves the index
    before the rename: a reader that reads the record, opens the path and reads the record
    again then either sees the old record both times (and opened the old bytes) or notices the
    change; it never serves the new bytes under the old record's size and checksum. The id
    answers 404 from the delete until the new record is in.

    ValueError for an id that is not a content id (nothing is touched); OSError when the disk
    refuses, *tmp* is then removed.
    """
    relpath = relpath_for(content_id)
    final = disk.path_of(relpath)
    try:
        _fsync_file(tmp)
        old = index.get(content_id)
        if old is not None and (old.disk_id, old.relpath) == (disk.disk_id, relpath):
            index.delete(content_id)
            old = None
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(tmp, final)
        fsync_dir(os.path.dirname(final))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    record = index.put(
        NewFile(
            content_id=content_id,
            disk_id=disk.disk_id,
            relpath=relpath,
            size=size,
            checksum=checksum,
            content_type=content_type_of(content_id),
            install_time=int(time.time()),
        )
    )
    return Placed(record, old)


def _fsync_file(path: Path) -> None:
    # fsync flushes the file's data whatever the descriptor's access mode (fsync(2)).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make the directory entries of *path* durable (after a rename or create in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_catalog(index_path: str | Path) -> Iterator[CatalogEntry]:
    """The catalog of the index at *index_path*, opened read-only, in content id order (an
    origin appliance's index as the planner's input); IndexUnavailable when it cannot be
    opened."""
    index = ContentIndex(index_path, readonly=True)
    try:
        for r in index.records():
            yield CatalogEntry(r.content_id, r.size, r.checksum)
    finally:
        index.close()


__all__ = [
    "TMP_DIR",
    "ContentIndex",
    "Disk",
    "DiskError",
    "EdgeConfig",
    "IndexUnavailable",
    "Placed",
    "choose_disk",
    "content_type_of",
    "fsync_dir",
    "load_config",
    "open_disks",
    "place_file",
    "read_catalog",
    "relpath_for",
]
