"""The LMDB content index, on real environments in tmp_path.

LMDB refuses to open one environment twice in a process, so a reader that must watch another
writer's commits gets that writer in a subprocess, as on an appliance.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.index import ContentIndex, IndexUnavailable, NewFile, decode, encode, index_exists
from edgefleet.models import CONTENT_ID_RE, ContentRecord


def new(content_id: str, size: int = 100, disk: str = "d0", checksum: str = "ab" * 16) -> NewFile:
    return NewFile(
        content_id=content_id,
        disk_id=disk,
        relpath=f"xx/{content_id}",
        size=size,
        checksum=checksum,
        content_type="video/mp4",
        install_time=1_700_000_000,
    )


@pytest.fixture
def index(tmp_path: Path) -> Iterator[ContentIndex]:
    idx = ContentIndex(tmp_path / "index", map_size=1 << 20)
    yield idx
    idx.close()


def write_in_subprocess(path: Path, count: int, prefix: str = "w") -> None:
    """Put *count* records into the index at *path* from another process, in one commit."""
    code = (
        "import sys\n"
        "from edge.index import ContentIndex, NewFile\n"
        "idx = ContentIndex(sys.argv[1], map_size=1 << 16)\n"
        "cids = [f'{sys.argv[3]}{i:05d}' + 'x' * 100 for i in range(int(sys.argv[2]))]\n"
        "idx.put_many(\n"
        "    NewFile(cid, 'd0', 'xx/' + cid, i, 'cd' * 16, 'text/plain', 1)\n"
        "    for i, cid in enumerate(cids)\n"
        ")\n"
        "idx.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(count), prefix], check=True)


def test_put_get_round_trip(index: ContentIndex) -> None:
    rec = index.put(new("movie.mp4", size=12345))
    assert rec == ContentRecord(
        content_id="movie.mp4",
        disk_id="d0",
        relpath="xx/movie.mp4",
        size=12345,
        checksum="ab" * 16,
        content_type="video/mp4",
        install_time=1_700_000_000,
        generation=1,
    )
    assert index.get("movie.mp4") == rec
    raw = index.get_raw(b"movie.mp4")
    assert raw is not None
    assert decode("movie.mp4", raw) == rec
    assert index.get("other.mp4") is None
    assert index.get_raw(b"other.mp4") is None


def test_generation_counts_every_change(index: ContentIndex) -> None:
    assert index.generation() == 0
    index.put(new("a"))
    assert index.generation() == 1
    recs = index.put_many([new("b"), new("c")])
    assert [r.generation for r in recs] == [2, 3]
    assert index.generation() == 3
    replaced = index.put(new("a", size=1))
    assert replaced.generation == 4
    assert index.delete("b") is not None
    assert index.generation() == 5
    assert index.delete("b") is None  # not there: nothing changes
    assert index.generation() == 5


def test_stats_follow_replace_and_delete(index: ContentIndex) -> None:
    assert index.stats() == (0, 0)
    index.put_many([new("a", size=100), new("b", size=50)])
    assert index.stats() == (2, 150)
    index.put(new("a", size=10))  # replaced, not added
    assert index.stats() == (2, 60)
    old = index.delete("b")
    assert old is not None
    assert old.size == 50
    assert index.stats() == (1, 10)
    index.delete("a")
    assert index.stats() == (0, 0)


def test_same_id_twice_in_one_batch_counts_once(index: ContentIndex) -> None:
    index.put_many([new("a", size=100), new("a", size=7)])
    assert index.stats() == (1, 7)
    rec = index.get("a")
    assert rec is not None
    assert rec.size == 7


def test_records_in_content_id_order(index: ContentIndex) -> None:
    for cid in ["b", "a2", "Z", "a10", "0"]:
        index.put(new(cid))
    assert [r.content_id for r in index.records()] == ["0", "Z", "a10", "a2", "b"]
    assert all(r == index.get(r.content_id) for r in index.records())


def test_changes_since(index: ContentIndex) -> None:
    index.put(new("a"))  # 1
    index.put_many([new("b"), new("c")])  # 2, 3
    index.delete("a")  # 4
    index.put(new("b"))  # 5
    assert index.changes_since(0) == (
        5,
        [("+", "a"), ("+", "b"), ("+", "c"), ("-", "a"), ("+", "b")],
    )
    assert index.changes_since(3) == (5, [("-", "a"), ("+", "b")])
    assert index.changes_since(5) == (5, [])


def test_changes_since_a_generation_this_index_never_had(index: ContentIndex) -> None:
    # A caller remembering generation 9 of an index since rebuilt must resync, not be told
    # "nothing changed" until the new index happens to pass generation 9.
    index.put(new("a"))
    assert index.changes_since(9) is None


def test_changes_since_beyond_the_trimmed_log_is_none(tmp_path: Path) -> None:
    idx = ContentIndex(tmp_path / "index", max_changes=3)
    try:
        for cid in ["a", "b", "c", "d", "e"]:
            idx.put(new(cid))
        assert idx.changes_since(2) == (5, [("+", "c"), ("+", "d"), ("+", "e")])
        assert idx.changes_since(4) == (5, [("+", "e")])
        assert idx.changes_since(1) is None
        assert idx.changes_since(0) is None
        idx.delete("c")
        assert idx.changes_since(2) is None
        assert idx.changes_since(3) == (6, [("+", "d"), ("+", "e"), ("-", "c")])
    finally:
        idx.close()


@pytest.mark.parametrize("cid", ["", ".hidden", "../etc/passwd", "a/b", "a" * 129, "sp ace"])
def test_invalid_content_id_is_rejected(index: ContentIndex, cid: str) -> None:
    with pytest.raises(ValueError, match="invalid content id"):
        index.put(new(cid))
    assert index.generation() == 0


def test_bad_checksum_rejects_the_whole_batch(index: ContentIndex) -> None:
    with pytest.raises(ValueError, match="32 hex digits"):
        index.put_many([new("good"), new("bad", checksum="abc")])
    assert index.get("good") is None
    assert index.stats() == (0, 0)


def test_readonly_open_of_a_missing_index(tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailable, match="cannot open index"):
        ContentIndex(tmp_path / "nowhere", readonly=True)
    assert not (tmp_path / "nowhere").exists()
    assert not index_exists(tmp_path / "nowhere")


def test_readonly_index_refuses_writes(tmp_path: Path) -> None:
    ContentIndex(tmp_path / "index").close()
    assert index_exists(tmp_path / "index")
    reader = ContentIndex(tmp_path / "index", readonly=True)
    try:
        with pytest.raises(IndexUnavailable, match="read-only"):
            reader.put(new("a"))
        with pytest.raises(IndexUnavailable, match="read-only"):
            reader.delete("a")
        assert reader.stats() == (0, 0)
    finally:
        reader.close()


def test_reader_sees_commits_made_after_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "index"
    writer = ContentIndex(path)
    writer.put(new("first"))
    writer.close()
    reader = ContentIndex(path, readonly=True)
    try:
        assert reader.stats() == (1, 100)
        write_in_subprocess(path, 3)
        assert reader.generation() == 4
        assert reader.stats() == (4, 100 + 0 + 1 + 2)
        rec = reader.get("w00002" + "x" * 100)
        assert rec is not None
        assert rec.generation == 4
    finally:
        reader.close()


def test_reader_survives_the_writer_growing_the_map(tmp_path: Path) -> None:
    # The writer doubles its map when full; a worker that opened the index earlier must
    # adopt the new size instead of failing every read with MDB_MAP_RESIZED.
    path = tmp_path / "index"
    write_in_subprocess(path, 1)
    reader = ContentIndex(path, readonly=True)
    try:
        assert reader.stats()[0] == 1
        write_in_subprocess(path, 2000, prefix="g")
        assert reader.stats()[0] == 2001
        last = reader.get_raw(("g01999" + "x" * 100).encode())
        assert last is not None
        assert [r.content_id for r in reader.records()][-1] == "w00000" + "x" * 100
        assert reader.changes_since(2000) == (2001, [("+", "g01999" + "x" * 100)])
    finally:
        reader.close()


files = st.builds(
    NewFile,
    content_id=st.from_regex(CONTENT_ID_RE, fullmatch=True),
    disk_id=st.text(st.characters(codec="utf-8"), max_size=60),
    relpath=st.text(st.characters(codec="utf-8"), max_size=300),
    size=st.integers(0, 2**64 - 1),
    checksum=st.binary(min_size=16, max_size=16).map(bytes.hex),
    content_type=st.text(st.characters(codec="utf-8"), max_size=60),
    install_time=st.integers(-(2**63), 2**63 - 1),
)


@given(files, st.integers(0, 2**64 - 1))
def test_encode_decode_round_trip(f: NewFile, generation: int) -> None:
    rec = decode(f.content_id, encode(f, generation))
    assert rec == ContentRecord(
        content_id=f.content_id,
        disk_id=f.disk_id,
        relpath=f.relpath,
        size=f.size,
        checksum=f.checksum,
        content_type=f.content_type,
        install_time=f.install_time,
        generation=generation,
    )
