"""The open-file cache, over real files installed on a real disk and a real index."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from edge.disks import Disk, open_disk
from edge.fdcache import FdCache, FileUnavailable, OpenFile
from edge.httpdate import format_http_date
from edge.importer import install_file
from edge.index import ContentIndex
from edgefleet.models import ContentRecord


class Appliance:
    """One disk, one index, and a way to install files: what the server's cache sits on."""

    def __init__(self, root: Path) -> None:
        self.disk = open_disk(root / "disk", create=True)
        self.disks: dict[str, Disk] = {self.disk.disk_id: self.disk}
        self.index = ContentIndex(root / "index", map_size=1 << 20)
        self.src = root / "src"
        self.src.mkdir()

    def install(self, content_id: str, data: bytes) -> ContentRecord:
        (self.src / content_id).write_bytes(data)
        return install_file(self.src / content_id, content_id, self.disk, self.index)

    def raw(self, content_id: str) -> bytes:
        raw = self.index.get_raw(content_id.encode())
        assert raw is not None
        return raw

    def resolve(self, record: ContentRecord) -> str:
        return self.disks[record.disk_id].path_of(record.relpath)

    def cache(self, capacity: int = 8) -> FdCache:
        return FdCache(capacity, self.resolve)

    def acquire(self, cache: FdCache, content_id: str) -> OpenFile:
        return cache.acquire(content_id.encode(), self.raw(content_id))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    appliance = Appliance(tmp_path)
    yield appliance
    appliance.index.close()


def digest(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def read_all(entry: OpenFile) -> bytes:
    return os.pread(entry.fd, entry.record.size + 1, 0)


def test_hit_returns_the_same_open_file(app: Appliance) -> None:
    app.install("a.mp4", b"hello")
    cache = app.cache()
    first = app.acquire(cache, "a.mp4")
    second = app.acquire(cache, "a.mp4")
    assert second is first
    assert second.fd == first.fd
    assert read_all(first) == b"hello"
    assert len(cache) == 1
    first.release()
    second.release()
    assert is_open(first.fd)  # the cache still holds it
    cache.clear()
    assert not is_open(first.fd)


def test_entry_carries_the_response_validators(app: Appliance) -> None:
    rec = app.install("a.mp4", b"hello")
    cache = app.cache()
    entry = app.acquire(cache, "a.mp4")
    assert entry.etag == f'"{rec.checksum}"'
    assert entry.last_modified == rec.install_time
    assert entry.last_modified_http == format_http_date(rec.install_time).encode()
    assert entry.content_type == b"video/mp4"
    assert (
        entry.header_block
        == (
            "Content-Type: video/mp4\r\n"
            f'ETag: "{rec.checksum}"\r\n'
            f"Last-Modified: {format_http_date(rec.install_time)}\r\n"
            "Accept-Ranges: bytes\r\n"
        ).encode()
    )
    entry.release()
    cache.clear()


def test_new_generation_reopens_while_in_flight_responses_keep_the_old_file(
    app: Appliance,
) -> None:
    app.install("a.bin", b"version one")
    cache = app.cache()
    old = app.acquire(cache, "a.bin")  # a response still sending the old file
    app.install("a.bin", b"version two!")
    new = app.acquire(cache, "a.bin")
    assert new is not old
    assert new.generation > old.generation
    assert read_all(new) == b"version two!"
    assert read_all(old) == b"version one"  # not closed under the response
    assert len(cache) == 1
    old.release()
    assert not is_open(old.fd)
    assert is_open(new.fd)
    new.release()
    cache.clear()
    assert not is_open(new.fd)


def test_size_mismatch_is_503(app: Appliance) -> None:
    rec = app.install("a.bin", b"0123456789")
    os.truncate(app.resolve(rec), 4)  # a torn file: never serve it as if whole
    cache = app.cache()
    with pytest.raises(FileUnavailable) as excinfo:
        app.acquire(cache, "a.bin")
    assert (excinfo.value.status, excinfo.value.kind) == (503, "size_mismatch")
    assert "4 bytes on disk, 10 indexed" in str(excinfo.value)
    assert len(cache) == 0


def test_missing_file_is_404(app: Appliance) -> None:
    rec = app.install("a.bin", b"x")
    os.unlink(app.resolve(rec))
    with pytest.raises(FileUnavailable) as excinfo:
        app.acquire(app.cache(), "a.bin")
    assert (excinfo.value.status, excinfo.value.kind) == (404, "missing_file")


def test_unknown_disk_is_503(app: Appliance) -> None:
    app.install("a.bin", b"x")
    app.disks.clear()  # the disk failed and was taken out of service
    with pytest.raises(FileUnavailable) as excinfo:
        app.acquire(app.cache(), "a.bin")
    assert (excinfo.value.status, excinfo.value.kind) == (503, "disk_failed")


def test_path_that_is_no_longer_our_file_is_503(app: Appliance) -> None:
    rec = app.install("a.bin", b"x")
    path = Path(app.resolve(rec))
    os.unlink(path)
    path.mkdir()  # a directory opens O_RDONLY, but it is not the indexed file
    with pytest.raises(FileUnavailable) as excinfo:
        app.acquire(app.cache(), "a.bin")
    assert excinfo.value.status == 503


def test_eviction_closes_only_released_files(app: Appliance) -> None:
    for cid in ("a", "b", "c"):
        app.install(cid, cid.encode() * 10)
    cache = app.cache(capacity=2)
    a = app.acquire(cache, "a")  # held by a response
    b = app.acquire(cache, "b")
    b.release()
    c = app.acquire(cache, "c")  # evicts a, the least recently used
    c.release()
    assert len(cache) == 2
    assert is_open(a.fd)
    assert read_all(a) == b"a" * 10
    assert is_open(b.fd)
    a.release()  # the response finished: now it closes
    assert not is_open(a.fd)
    assert app.acquire(cache, "b") is b  # still cached
    b.release()


def test_eviction_is_least_recently_used(app: Appliance) -> None:
    for cid in ("a", "b", "c"):
        app.install(cid, b"x")
    cache = app.cache(capacity=2)
    a = app.acquire(cache, "a")
    a.release()
    b = app.acquire(cache, "b")
    b.release()
    assert app.acquire(cache, "a") is a  # touch a: b is now the oldest
    a.release()
    app.acquire(cache, "c").release()
    assert not is_open(b.fd)
    assert is_open(a.fd)
    assert app.acquire(cache, "a") is a
    a.release()
    cache.clear()


def test_invalidate_forgets_the_entry(app: Appliance) -> None:
    app.install("a", b"x")
    cache = app.cache()
    entry = app.acquire(cache, "a")
    cache.invalidate(b"a")
    cache.invalidate(b"never-cached")
    assert len(cache) == 0
    assert is_open(entry.fd)  # still in use
    entry.release()
    assert not is_open(entry.fd)
    again = app.acquire(cache, "a")
    assert again is not entry
    again.release()
    cache.clear()


def test_capacity_is_at_least_one(app: Appliance) -> None:
    app.install("a", b"x")
    cache = FdCache(0, app.resolve)
    entry = app.acquire(cache, "a")
    entry.release()
    assert len(cache) == 1
    assert app.acquire(cache, "a") is entry
    entry.release()
    cache.clear()


# -- the fast path's hot entries ------------------------------------------------------------


def test_current_entries_go_hot_and_leave_when_the_view_changes(app: Appliance) -> None:
    app.install("a.bin", b"abc")
    cache = app.cache()
    assert cache.current(b"a.bin", app.raw("a.bin")) is None  # not opened yet: general path
    entry = app.acquire(cache, "a.bin")
    entry.release()  # the general path's response is done
    assert cache.current(b"a.bin", app.raw("a.bin")) is entry
    assert cache.hot == {b"a.bin": entry}
    cache.view_changed()
    assert cache.hot == {}
    assert is_open(entry.fd)  # still cached


def test_a_hot_entry_evicted_stays_open_until_the_view_changes(app: Appliance) -> None:
    for name in ("a.bin", "b.bin"):
        app.install(name, name.encode())
    cache = app.cache(capacity=1)
    app.acquire(cache, "a.bin").release()
    hot = cache.current(b"a.bin", app.raw("a.bin"))
    assert hot is not None
    app.acquire(cache, "b.bin").release()  # evicts a.bin from the LRU...
    assert b"a.bin" not in cache.hot  # ...and from the hot entries
    assert not is_open(hot.fd)  # nobody holds it any more


def test_a_new_generation_is_not_current(app: Appliance) -> None:
    app.install("a.bin", b"one")
    cache = app.cache()
    app.acquire(cache, "a.bin").release()
    old_raw = app.raw("a.bin")
    app.install("a.bin", b"two")
    assert cache.current(b"a.bin", app.raw("a.bin")) is None
    assert cache.current(b"a.bin", old_raw) is not None


def test_an_in_flight_reference_outlives_the_hot_one(app: Appliance) -> None:
    app.install("a.bin", b"abc")
    cache = app.cache(capacity=1)
    app.acquire(cache, "a.bin").release()
    entry = cache.current(b"a.bin", app.raw("a.bin"))
    assert entry is not None
    entry.refs += 1  # a response that will finish later (what the server does)
    cache.clear()
    cache.view_changed()
    assert is_open(entry.fd)
    entry.release()
    assert not is_open(entry.fd)


# -- a file replaced after the worker's view was read ---------------------------------------


def confirming_cache(app: Appliance, capacity: int = 8) -> FdCache:
    """The cache as a worker builds it: opens proven against the index as it is now."""
    return FdCache(capacity, app.resolve, app.index.get_raw)


def test_a_file_replaced_since_the_view_opens_with_its_new_record(app: Appliance) -> None:
    old, new = os.urandom(4096), os.urandom(4096)  # same size: the size check cannot tell
    app.install("a.mp4", old)
    stale = app.raw("a.mp4")  # what a worker's view (refreshed once a second) still says
    app.install("a.mp4", new)
    entry = confirming_cache(app).acquire(b"a.mp4", stale)
    try:
        assert os.pread(entry.fd, 8192, 0) == new
        assert entry.etag == f'"{digest(new)}"'  # never the old record's ETag on new bytes
    finally:
        entry.release()


def test_without_the_proof_the_stale_record_would_label_the_new_bytes(app: Appliance) -> None:
    """Why the proof exists: the same sequence through a cache that trusts the view."""
    old, new = os.urandom(4096), os.urandom(4096)
    app.install("a.mp4", old)
    stale = app.raw("a.mp4")
    app.install("a.mp4", new)
    entry = app.cache().acquire(b"a.mp4", stale)
    try:
        assert os.pread(entry.fd, 8192, 0) == new and entry.etag == f'"{digest(old)}"'
    finally:
        entry.release()


def test_a_file_removed_from_the_index_since_the_view_is_not_served(app: Appliance) -> None:
    app.install("a.mp4", os.urandom(4096))
    stale = app.raw("a.mp4")
    app.index.delete("a.mp4")
    with pytest.raises(FileUnavailable) as caught:
        confirming_cache(app).acquire(b"a.mp4", stale)
    assert (caught.value.status, caught.value.kind) == (404, "replaced")


def test_a_hit_costs_no_index_read(app: Appliance) -> None:
    reads: list[bytes] = []

    def counting(key: bytes) -> bytes | None:
        reads.append(key)
        return app.index.get_raw(key)

    app.install("a.mp4", os.urandom(4096))
    cache = FdCache(8, app.resolve, counting)
    for _ in range(3):
        app.acquire(cache, "a.mp4").release()
    assert reads == [b"a.mp4"]  # the miss only


def test_a_file_replaced_by_one_of_another_size_opens_with_its_new_record(
    app: Appliance,
) -> None:
    """Not a torn file (503 size_mismatch): the view's record is merely older than the file."""
    app.install("a.mp4", os.urandom(4096))
    stale = app.raw("a.mp4")
    new = os.urandom(5000)
    app.install("a.mp4", new)
    entry = confirming_cache(app).acquire(b"a.mp4", stale)
    try:
        assert entry.size == 5000 and os.pread(entry.fd, 8192, 0) == new
    finally:
        entry.release()


def test_a_torn_file_is_still_refused_when_its_record_is_current(app: Appliance) -> None:
    record = app.install("a.mp4", os.urandom(4096))
    os.truncate(app.resolve(record), 100)
    with pytest.raises(FileUnavailable) as caught:
        app.acquire(confirming_cache(app), "a.mp4")
    assert (caught.value.status, caught.value.kind) == (503, "size_mismatch")


def test_an_index_that_fails_while_proving_an_open_leaks_no_descriptor(app: Appliance) -> None:
    app.install("a.mp4", os.urandom(4096))

    def failing(key: bytes) -> bytes | None:
        raise OSError("MDB_READERS_FULL")

    cache = FdCache(8, app.resolve, failing)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(OSError, match="READERS_FULL"):
            app.acquire(cache, "a.mp4")
    assert len(os.listdir("/proc/self/fd")) == before


def test_an_entry_proven_newer_than_the_view_is_kept_until_the_view_catches_up(
    app: Appliance,
) -> None:
    app.install("a.mp4", os.urandom(4096))
    stale = app.raw("a.mp4")
    app.install("a.mp4", os.urandom(4096))
    reads: list[bytes] = []

    def counting(key: bytes) -> bytes | None:
        reads.append(key)
        return app.index.get_raw(key)

    cache = FdCache(8, app.resolve, counting)
    first = cache.acquire(b"a.mp4", stale)
    proofs = len(reads)  # the stale record disproven, then the current one proven
    # The view still says the old generation: the newer entry serves, with no reopen.
    again = cache.acquire(b"a.mp4", stale)
    assert again is first and cache.current(b"a.mp4", stale) is first
    assert (proofs, len(reads)) == (2, 2)
    first.release()
    again.release()
