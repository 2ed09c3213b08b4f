"""`edgefleet edge import`: real files copied onto real disk roots and into a real index."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from edge.disks import TMP_DIR, Disk, open_disk
from edge.importer import ImportFailed, hash_file, import_directory, install_file
from edge.index import ContentIndex


@pytest.fixture
def index(tmp_path: Path) -> Iterator[ContentIndex]:
    idx = ContentIndex(tmp_path / "index", map_size=1 << 20)
    yield idx
    idx.close()


@pytest.fixture
def disks(tmp_path: Path) -> list[Disk]:
    return [open_disk(tmp_path / f"disk{i}", create=True) for i in range(2)]


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def leftovers(disks: list[Disk]) -> list[Path]:
    """Temporary files left in any disk's temporary directory."""
    return [p for d in disks if (d.root / TMP_DIR).exists() for p in (d.root / TMP_DIR).iterdir()]


TREE = {
    "intro.mp4": os.urandom(3 * (1 << 20) + 17),  # several copy chunks
    "subs/en.txt": b"1\n00:00:01,000 --> 00:00:02,000\nHello\n",
    "subs/deeper/seg-0001.bin": bytes(range(256)) * 10,
    "empty.dat": b"",
    ".hidden/skipped.mp4": b"not imported",
    ".DS_Store": b"not imported",
}


def test_import_nested_directory(tmp_path: Path, index: ContentIndex, disks: list[Disk]) -> None:
    src = tmp_path / "src"
    make_tree(src, TREE)
    out = io.StringIO()
    records = import_directory(src, index, disks, progress_out=out)
    imported = {k: v for k, v in TREE.items() if not k.startswith(".")}
    names = {Path(k).name: v for k, v in imported.items()}
    assert sorted(r.content_id for r in records) == sorted(names)
    assert index.stats() == (len(names), sum(len(v) for v in names.values()))
    by_disk = {d.disk_id: d for d in disks}
    for cid, data in names.items():
        rec = index.get(cid)
        assert rec is not None
        assert rec.size == len(data)
        assert rec.checksum == xxhash.xxh3_128(data).hexdigest()
        stored = Path(by_disk[rec.disk_id].path_of(rec.relpath))
        assert stored.read_bytes() == data
    assert index.get("skipped.mp4") is None
    assert index.get(".DS_Store") is None
    assert leftovers(disks) == []
    assert out.getvalue() == ""  # no progress bar when not a terminal


def test_content_types_are_guessed(tmp_path: Path, index: ContentIndex, disks: list[Disk]) -> None:
    make_tree(
        tmp_path / "src",
        {"a.mp4": b"v", "b.txt": b"t", "c.m4s": b"s", "d.mpd": b"m", "e.unknownext": b"?"},
    )
    import_directory(tmp_path / "src", index, disks, progress_out=io.StringIO())
    types = {r.content_id: r.content_type for r in index.records()}
    assert types == {
        "a.mp4": "video/mp4",
        "b.txt": "text/plain",
        "c.m4s": "video/mp4",
        "d.mpd": "application/dash+xml",
        "e.unknownext": "application/octet-stream",
    }


@pytest.mark.parametrize("name", ["bad name.mp4", "caf\u00e9.mp4", "-dash.mp4", "a" * 129])
def test_invalid_file_name_is_rejected_before_anything_is_copied(
    tmp_path: Path, index: ContentIndex, disks: list[Disk], name: str
) -> None:
    make_tree(tmp_path / "src", {"aaa-first.mp4": b"ok", f"sub/{name}": b"bad"})
    with pytest.raises(ImportFailed) as excinfo:
        import_directory(tmp_path / "src", index, disks, progress_out=io.StringIO())
    message = str(excinfo.value)
    assert name in message
    assert "not a valid content id" in message
    assert index.stats() == (0, 0)
    assert leftovers(disks) == []


def test_duplicate_names_are_rejected(
    tmp_path: Path, index: ContentIndex, disks: list[Disk]
) -> None:
    make_tree(tmp_path / "src", {"a/x.mp4": b"1", "b/x.mp4": b"2"})
    with pytest.raises(ImportFailed) as excinfo:
        import_directory(tmp_path / "src", index, disks, progress_out=io.StringIO())
    message = str(excinfo.value)
    assert "'x.mp4'" in message
    assert str(tmp_path / "src" / "a" / "x.mp4") in message
    assert str(tmp_path / "src" / "b" / "x.mp4") in message
    assert index.stats() == (0, 0)


def test_not_a_directory(tmp_path: Path, index: ContentIndex, disks: list[Disk]) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ImportFailed, match="not a directory"):
        import_directory(tmp_path / "file", index, disks)
    with pytest.raises(ImportFailed, match="not a directory"):
        import_directory(tmp_path / "absent", index, disks)


def test_reimport_replaces_the_file_at_a_new_generation(
    tmp_path: Path, index: ContentIndex, disks: list[Disk]
) -> None:
    src = tmp_path / "src"
    make_tree(src, {"x.bin": b"old contents"})
    (first,) = import_directory(src, index, disks[:1], progress_out=io.StringIO())
    make_tree(src, {"x.bin": b"new"})
    (second,) = import_directory(src, index, disks[:1], progress_out=io.StringIO())
    assert second.generation > first.generation
    assert second.checksum == xxhash.xxh3_128(b"new").hexdigest()
    assert Path(disks[0].path_of(second.relpath)).read_bytes() == b"new"
    assert index.stats() == (1, 3)


def test_failed_copy_leaves_no_temporary_and_no_record(
    tmp_path: Path, index: ContentIndex, disks: list[Disk]
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))

    def interrupted(nbytes: int) -> None:
        raise KeyboardInterrupt  # e.g. ^C during the copy

    with pytest.raises(KeyboardInterrupt):
        install_file(src, "big.bin", disks[0], index, interrupted)
    assert leftovers(disks) == []
    assert index.get("big.bin") is None
    assert list(disks[0].root.rglob("big.bin")) == []


def test_install_file_refuses_a_path_as_content_id(
    tmp_path: Path, index: ContentIndex, disks: list[Disk]
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="invalid content id"):
        install_file(src, "../../escaped", disks[0], index)
    assert not (tmp_path / "escaped").exists()
    assert list(tmp_path.rglob("escaped")) == []


def test_hash_file(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) + 5)
    (tmp_path / "f").write_bytes(data)
    assert hash_file(tmp_path / "f") == xxhash.xxh3_128(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert hash_file(tmp_path / "empty") == xxhash.xxh3_128(b"").hexdigest()


class FullDisk(Disk):
    """A disk with no free space left."""

    def free_bytes(self) -> int:
        return 0


def test_reimport_onto_another_disk_removes_the_old_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"first")
    d0 = open_disk(tmp_path / "d0", create=True)
    d1 = open_disk(tmp_path / "d1", create=True)
    index = ContentIndex(tmp_path / "index")
    try:
        (first,) = import_directory(src, index, [d0], progress_out=io.StringIO())
        (src / "a.bin").write_bytes(b"second")
        full_d0 = FullDisk(d0.disk_id, d0.root)  # d0 has filled up since
        (second,) = import_directory(src, index, [full_d0, d1], progress_out=io.StringIO())
    finally:
        index.close()
    assert not Path(d0.path_of(first.relpath)).exists()
    assert Path(d1.path_of(second.relpath)).read_bytes() == b"second"
