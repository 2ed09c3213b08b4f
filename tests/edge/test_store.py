"""edge.store.place_file: real files on real disk roots, a real index, a reader in another process.

The guard under test: when a file is replaced at the same path (a re-import or a re-fetch with
other content), the old record leaves the index before the rename, so a reader never serves the
new bytes under the old record's size and checksum.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash

from edge.disks import TMP_DIR, Disk, open_disk
from edge.importer import import_directory
from edge.index import ContentIndex
from edge.store import content_type_of, place_file, read_catalog
from edgefleet.records import CatalogEntry


@pytest.fixture
def index(tmp_path: Path) -> Iterator[ContentIndex]:
    idx = ContentIndex(tmp_path / "index", map_size=1 << 22)
    yield idx
    idx.close()


@pytest.fixture
def disks(tmp_path: Path) -> list[Disk]:
    return [open_disk(tmp_path / f"disk{i}", create=True) for i in range(2)]


def temp_file(disk: Disk, name: str, data: bytes) -> Path:
    tmp = disk.root / TMP_DIR
    tmp.mkdir(exist_ok=True)
    path = tmp / name
    path.write_bytes(data)
    return path


def digest(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def test_place_file_moves_the_bytes_then_records_them(
    index: ContentIndex, disks: list[Disk]
) -> None:
    data = os.urandom(5000)
    tmp = temp_file(disks[0], "x.part", data)
    placed = place_file(index, disks[0], tmp, "seg-1.m4s", len(data), digest(data))
    assert placed.displaced is None
    rec = index.get("seg-1.m4s")
    assert rec == placed.record
    assert (rec.disk_id, rec.size, rec.checksum) == (disks[0].disk_id, 5000, digest(data))
    assert rec.content_type == "video/mp4" == content_type_of("seg-1.m4s")
    assert Path(disks[0].path_of(rec.relpath)).read_bytes() == data
    assert not tmp.exists()


def test_a_copy_on_another_disk_is_displaced_not_removed(
    index: ContentIndex, disks: list[Disk]
) -> None:
    old = place_file(index, disks[0], temp_file(disks[0], "a", b"old"), "f", 3, digest(b"old"))
    new = place_file(index, disks[1], temp_file(disks[1], "b", b"new!"), "f", 4, digest(b"new!"))
    assert new.displaced == old.record
    assert Path(disks[0].path_of(old.record.relpath)).read_bytes() == b"old"  # caller's to remove
    assert index.get("f") == new.record


def test_a_bad_id_touches_nothing(index: ContentIndex, disks: list[Disk]) -> None:
    tmp = temp_file(disks[0], "x", b"x")
    with pytest.raises(ValueError, match="invalid content id"):
        place_file(index, disks[0], tmp, "../escaped", 1, digest(b"x"))
    assert tmp.exists() and index.stats() == (0, 0)


def test_a_failed_rename_removes_the_temporary_and_records_nothing(
    index: ContentIndex, disks: list[Disk]
) -> None:
    tmp = temp_file(disks[0], "x", b"x")
    place_file(index, disks[0], temp_file(disks[0], "d", b"d"), "dir.bin", 1, digest(b"d"))
    rec = index.get("dir.bin")
    assert rec is not None
    final = Path(disks[0].path_of(rec.relpath))
    final.unlink()
    final.mkdir()  # a directory in the way: rename(2) refuses (EISDIR)
    with pytest.raises(OSError):
        place_file(index, disks[0], tmp, "dir.bin", 1, digest(b"x"))
    assert not tmp.exists()
    assert index.get("dir.bin") is None  # the stale record left before the rename


def test_read_catalog_of_an_index(index: ContentIndex, disks: list[Disk]) -> None:
    for cid, data in (("b.mp4", b"bb"), ("a.mp4", b"a")):
        place_file(index, disks[0], temp_file(disks[0], cid, data), cid, len(data), digest(data))
    index.close()  # LMDB opens an environment once per process
    assert list(read_catalog(index.path)) == [
        CatalogEntry("a.mp4", 1, digest(b"a")),
        CatalogEntry("b.mp4", 2, digest(b"bb")),
    ]


# A reader as a server worker would be, in its own process: read the record, open its path,
# read the record again and serve only if it did not change meanwhile (an open descriptor keeps
# the bytes it opened); every byte served is checked against the record it was served under.
READER = """
import json, os, sys
import xxhash
from edge.disks import open_disk
from edge.index import ContentIndex

index = ContentIndex(sys.argv[1], readonly=True)
disk = open_disk(sys.argv[2])
cid, stop = sys.argv[3], sys.argv[4]
counts = {"served": {}, "mismatch": 0, "absent": 0, "changed": 0}
print("ready", flush=True)
while not os.path.exists(stop):
    rec = index.get(cid)
    if rec is None:
        counts["absent"] += 1
        continue
    try:
        fd = os.open(disk.path_of(rec.relpath), os.O_RDONLY)
    except FileNotFoundError:
        counts["absent"] += 1
        continue
    try:
        again = index.get(cid)
        if again is None or again.generation != rec.generation:
            counts["changed"] += 1
            continue
        data = os.pread(fd, rec.size + 1, 0)
    finally:
        os.close(fd)
    if len(data) != rec.size or xxhash.xxh3_128(data).hexdigest() != rec.checksum:
        counts["mismatch"] += 1
    else:
        counts["served"][rec.checksum] = counts["served"].get(rec.checksum, 0) + 1
print(json.dumps(counts), flush=True)
"""


def reimport(tmp_path: Path, index: ContentIndex, disk: Disk) -> Callable[[str, bytes], None]:
    src = tmp_path / "src"
    src.mkdir()

    def write(cid: str, data: bytes) -> None:
        (src / cid).write_bytes(data)
        import_directory(src, index, [disk], progress_out=io.StringIO())

    return write


def test_reimporting_a_changed_file_never_serves_old_record_with_new_bytes(
    tmp_path: Path, index: ContentIndex, disks: list[Disk]
) -> None:
    disk = disks[0]
    cid = "movie.mp4"
    # Same size, other content: the size check a server makes cannot tell them apart.
    versions = [os.urandom(64 << 10), os.urandom(64 << 10)]
    write = reimport(tmp_path, index, disk)
    write(cid, versions[0])
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(index.path), str(disk.root), cid, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "ready\n"
        for i in range(300):
            write(cid, versions[(i + 1) % 2])
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    counts = json.loads(out)
    assert counts["mismatch"] == 0, counts
    # The reader really ran against both versions while they were being swapped.
    assert set(counts["served"]) == {digest(v) for v in versions}, counts
    rec = index.get(cid)
    assert rec is not None and rec.checksum == digest(versions[300 % 2])
