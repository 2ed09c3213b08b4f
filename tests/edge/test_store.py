"""edge.store.place_file: real files on real disk roots, a real index, a reader in another process.

The guard under test: when a file is replaced at the same path (a re-import or a re-fetch with
other content), the old record leaves the index before the rename, so a reader never serves the
new bytes under the old record's size and checksum.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from edge.disks import TMP_DIR, Disk, open_disk
from edge.importer import import_directory
from edge.index import ContentIndex
from edge.store import content_type_of, place_file, read_catalog
from edgefleet.records import CatalogEntry
from tests.edge.replacing import serve_while_replacing


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


def test_reimporting_a_changed_file_never_serves_old_record_with_new_bytes(
    tmp_path: Path, index: ContentIndex, disks: list[Disk]
) -> None:
    disk = disks[0]
    cid = "movie.mp4"
    # Same size, other content: the size check a server makes cannot tell them apart.
    versions = [os.urandom(64 << 10), os.urandom(64 << 10)]
    src = tmp_path / "src"
    src.mkdir()

    def reimport(data: bytes) -> None:
        (src / cid).write_bytes(data)
        import_directory(src, index, [disk], progress_out=io.StringIO())

    reimport(versions[0])
    counts = serve_while_replacing(tmp_path, index.path, disk, cid, versions, reimport)
    assert counts["mismatch"] == 0, counts
    # The reader really ran against both versions while they were being swapped.
    assert set(counts["served"]) == {digest(v) for v in versions}, counts
    rec = index.get(cid)
    assert rec is not None and rec.checksum == digest(versions[300 % 2])
