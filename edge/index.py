"""The appliance's content index: the one module that knows the LMDB layout.

LMDB is used for its concurrency model: one writer (the importer or the fill agent) and many
lock-free readers (every server worker, in its own process). A reader always sees a consistent
snapshot and is never blocked by the writer, so installing files at night never stalls serving.

Layout (one environment, a directory):

- `content`: content id (utf-8) → packed record (see `_RECORD`): size, install time, generation,
  xxh3-128 digest, then disk id, relative path and content type as length-prefixed utf-8.
- `meta`: `generation` → u64, bumped by every change; `bytes` → u64, the sum of sizes;
  `index_id` → a random hex id given at creation (inventory versions are only comparable
  within one index).
- `changes`: generation (u64 big-endian, so keys sort) → op (`+`/`-`) and content id: the log
  from which inventory deltas are read (`changes_since`), trimmed to the last `max_changes`.

Server workers open the index read-only and cache open file descriptors keyed by the record's
generation, so a file replaced at a new generation is reopened on its next request.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import lmdb

from edgefleet.models import ContentRecord, is_content_id

_RECORD: Final = struct.Struct("<QqQ16sBHB")  # size, install, generation, digest, 3 lengths
_U64: Final = struct.Struct("<Q")
_GEN_KEY: Final = struct.Struct(">Q")
DEFAULT_MAP_SIZE: Final = 1 << 30
DEFAULT_MAX_CHANGES: Final = 1_000_000


class IndexUnavailable(Exception):
    """The index cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file to record: everything but the generation, which the index assigns."""

    content_id: str
    disk_id: str
    relpath: str
    size: int
    checksum: str
    content_type: str
    install_time: int


def encode(rec: NewFile | ContentRecord, generation: int) -> bytes:
    """Pack a record for the `content` database."""
    disk, path, ctype = rec.disk_id.encode(), rec.relpath.encode(), rec.content_type.encode()
    head = _RECORD.pack(
        rec.size,
        rec.install_time,
        generation,
        bytes.fromhex(rec.checksum),
        len(disk),
        len(path),
        len(ctype),
    )
    return head + disk + path + ctype


def decode(content_id: str, raw: bytes) -> ContentRecord:
    """Unpack a `content` value."""
    size, install, gen, digest, ld, lp, lc = _RECORD.unpack_from(raw)
    o = _RECORD.size
    return ContentRecord(
        content_id=content_id,
        disk_id=raw[o : o + ld].decode(),
        relpath=raw[o + ld : o + ld + lp].decode(),
        size=size,
        checksum=digest.hex(),
        content_type=raw[o + ld + lp : o + ld + lp + lc].decode(),
        install_time=install,
        generation=gen,
    )


class ContentIndex:
    """Reader/writer API over the LMDB environment at *path*."""

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
        max_changes: int = DEFAULT_MAX_CHANGES,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.max_changes = max_changes
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=0 if readonly else map_size,
                max_dbs=4,
                readonly=readonly,
                create=not readonly,
                # Several processes read; the writer syncs on commit (durability over speed:
                # the fill agent installs whole files, a commit per file is cheap).
                lock=True,
                readahead=False,
            )
        except lmdb.Error as exc:
            hint = " (a new appliance: run 'edgefleet edge init')" if readonly else ""
            raise IndexUnavailable(f"cannot open index at {self.path}: {exc}{hint}") from None
        try:
            self._content = self.env.open_db(b"content", create=not readonly)
            self._meta = self.env.open_db(b"meta", create=not readonly)
            self._changes = self.env.open_db(b"changes", create=not readonly)
        except lmdb.Error as exc:
            self.env.close()
            raise IndexUnavailable(
                f"index at {self.path} is not initialised "
                f"(run 'edgefleet edge init' or 'edgefleet edge import'): {exc}"
            ) from None
        if not readonly:
            with self.env.begin(write=True, db=self._meta) as txn:
                # Generations restart at 0 in a recreated index: the id tells control that an
                # inventory version belongs to another index and must not take deltas.
                txn.put(b"index_id", uuid.uuid4().hex.encode(), overwrite=False)

    def close(self) -> None:
        """Close the environment (after fork, reopen instead of sharing it)."""
        self.env.close()

    def _begin(self, **kwargs: Any) -> Any:
        """A read transaction, adopting the map size if the writer process has grown it."""
        try:
            return self.env.begin(**kwargs)
        except lmdb.MapResizedError:
            # The writer doubled the map (see `_write`) past this reader's mapping; without
            # this every later read in this process fails. Size 0 means "adopt the new size".
            self.env.set_mapsize(0)
            return self.env.begin(**kwargs)

    # -- reading -------------------------------------------------------------------------

    def get(self, content_id: str) -> ContentRecord | None:
        """The record of *content_id*, or None."""
        with self._begin(db=self._content) as txn:
            raw = txn.get(content_id.encode())
        return None if raw is None else decode(content_id, raw)

    def get_raw(self, key: bytes) -> bytes | None:
        """The packed record for the utf-8 key (hot path: callers decode only on a cache miss)."""
        with self._begin(db=self._content) as txn:
            raw: bytes | None = txn.get(key)
            return raw

    def read_view(self) -> ReadView:
        """A read transaction kept open for fast lookups (see `ReadView`)."""
        return ReadView(self)

    def index_id(self) -> str:
        """A random id given to the index when it was created ("" for an index without one)."""
        with self._begin(db=self._meta) as txn:
            raw = txn.get(b"index_id")
        return "" if raw is None else bytes(raw).decode()

    def generation(self) -> int:
        """The index generation: bumped by every put and delete."""
        with self._begin(db=self._meta) as txn:
            return _u64(txn.get(b"generation"))

    def stats(self) -> tuple[int, int]:
        """(number of files, total bytes)."""
        with self._begin() as txn:
            entries = txn.stat(self._content)["entries"]
            total = _u64(txn.get(b"bytes", db=self._meta))
        return int(entries), total

    def records(self) -> Iterator[ContentRecord]:
        """Every record, in content id order (one read transaction per call)."""
        with self._begin(db=self._content) as txn:
            for key, raw in txn.cursor():
                yield decode(bytes(key).decode(), bytes(raw))

    def record_after(self, content_id: str) -> ContentRecord | None:
        """The first record whose id sorts after *content_id* ("" for the first), or None at
        the end: a stable cursor over the index that survives changes made between calls."""
        with self._begin(db=self._content) as txn:
            cursor = txn.cursor()
            key = content_id.encode()
            if not cursor.set_range(key):
                return None
            if bytes(cursor.key()) == key and not cursor.next():
                return None
            return decode(bytes(cursor.key()).decode(), bytes(cursor.value()))

    def changes_since(self, generation: int) -> tuple[int, list[tuple[str, str]]] | None:
        """(current generation, [(op, content id)]) since *generation*; None when the log no
        longer reaches back that far (the caller must resync the whole inventory)."""
        with self._begin() as txn:
            current = _u64(txn.get(b"generation", db=self._meta))
            if generation == current:
                return current, []
            if generation > current:  # a generation this index never had: it was recreated
                return None
            cursor = txn.cursor(db=self._changes)
            if not cursor.first() or _GEN_KEY.unpack(cursor.key())[0] > generation + 1:
                return None
            out: list[tuple[str, str]] = []
            if cursor.set_range(_GEN_KEY.pack(generation + 1)):
                for _key, value in cursor:
                    raw = bytes(value)
                    out.append((chr(raw[0]), raw[1:].decode()))
            return current, out

    # -- writing (one writer process at a time; LMDB serialises writers anyway) ---------

    def put(self, new: NewFile) -> ContentRecord:
        """Record one installed file (replacing any earlier record of the same id)."""
        return self.put_many([new])[0]

    def put_many(self, files: Iterable[NewFile]) -> list[ContentRecord]:
        """Record several files in one transaction."""
        batch = list(files)
        for f in batch:
            if not is_content_id(f.content_id):
                raise ValueError(f"invalid content id {f.content_id!r}")
            if len(f.checksum) != 32:
                raise ValueError(f"checksum of {f.content_id} must be 32 hex digits (xxh3-128)")
        out: list[ContentRecord] = []

        def work(txn: Any) -> None:
            out.clear()
            gen = _u64(txn.get(b"generation", db=self._meta))
            total = _u64(txn.get(b"bytes", db=self._meta))
            for f in batch:
                gen += 1
                key = f.content_id.encode()
                old = txn.get(key, db=self._content)
                if old is not None:
                    total -= _RECORD.unpack_from(old)[0]
                txn.put(key, encode(f, gen), db=self._content)
                txn.put(_GEN_KEY.pack(gen), b"+" + key, db=self._changes)
                total += f.size
                out.append(decode(f.content_id, encode(f, gen)))
            self._finish(txn, gen, total)

        self._write(work)
        return out

    def delete(self, content_id: str) -> ContentRecord | None:
        """Remove *content_id* from the index; its old record, or None if it was not there."""
        removed: list[ContentRecord] = []

        def work(txn: Any) -> None:
            removed.clear()
            key = content_id.encode()
            old = txn.get(key, db=self._content)
            if old is None:
                return
            gen = _u64(txn.get(b"generation", db=self._meta)) + 1
            total = _u64(txn.get(b"bytes", db=self._meta)) - _RECORD.unpack_from(old)[0]
            removed.append(decode(content_id, bytes(old)))
            txn.delete(key, db=self._content)
            txn.put(_GEN_KEY.pack(gen), b"-" + key, db=self._changes)
            self._finish(txn, gen, total)

        self._write(work)
        return removed[0] if removed else None

    def delete_many(
        self, content_ids: Iterable[str], *, generations: dict[str, int] | None = None
    ) -> list[ContentRecord]:
        """Remove several ids in one transaction (so one inventory delta lists them all); the
        records removed. With *generations*, an id is removed only while its record still has
        that generation: a file the fill agent replaced meanwhile is left alone."""
        ids = list(content_ids)
        removed: list[ContentRecord] = []

        def work(txn: Any) -> None:
            removed.clear()
            gen = _u64(txn.get(b"generation", db=self._meta))
            total = _u64(txn.get(b"bytes", db=self._meta))
            for content_id in ids:
                key = content_id.encode()
                old = txn.get(key, db=self._content)
                if old is None:
                    continue
                record = decode(content_id, bytes(old))
                if generations is not None and generations.get(content_id) != record.generation:
                    continue
                gen += 1
                total -= record.size
                removed.append(record)
                txn.delete(key, db=self._content)
                txn.put(_GEN_KEY.pack(gen), b"-" + key, db=self._changes)
            if removed:
                self._finish(txn, gen, total)

        self._write(work)
        return list(removed)

    def _finish(self, txn: Any, gen: int, total: int) -> None:
        txn.put(b"generation", _U64.pack(gen), db=self._meta)
        txn.put(b"bytes", _U64.pack(max(total, 0)), db=self._meta)
        # Trim the change log from its oldest end.
        excess = txn.stat(self._changes)["entries"] - self.max_changes
        if excess > 0:
            cursor = txn.cursor(db=self._changes)
            cursor.first()
            for _ in range(excess):
                if not cursor.delete():
                    break

    def _write(self, work: Any) -> None:
        if self.readonly:
            raise IndexUnavailable("index opened read-only")
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    work(txn)
                return
            except lmdb.MapFullError:
                # Grow the map and retry the whole transaction (it was aborted).
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                # Another writer process (the fill agent, the edge's keeper) grew the map.
                self.env.set_mapsize(0)


class ReadView:
    """One read transaction held open between refreshes, so a lookup is a `get`, not a new
    transaction (server workers refresh it once a second).

    A content id missing from the view refreshes it and looks again, so a newly installed file
    is visible at once; a replaced or removed record may be seen as it was for up to one refresh
    interval. That is safe: the fill agent removes files from disk only after a grace period, a
    replaced file's old bytes stay readable through a descriptor already open, and a file opened
    anew is proven against the index as it is now (`edge.fdcache.FdCache._open_current`), so a
    stale record never labels a replacement's bytes.
    """

    def __init__(self, index: ContentIndex) -> None:
        self._index = index
        self._txn = index._begin(db=index._content)
        self.on_refresh: Callable[[], None] | None = None  # told after every refresh

    def get_raw(self, key: bytes) -> bytes | None:
        """The packed record for the utf-8 key, refreshing once on a miss."""
        raw: bytes | None = self._txn.get(key)
        if raw is None:
            self.refresh()
            raw = self._txn.get(key)
        return raw

    def refresh(self) -> None:
        """See the index as it is now."""
        self._txn.abort()
        self._txn = self._index._begin(db=self._index._content)
        if self.on_refresh is not None:
            self.on_refresh()

    def close(self) -> None:
        """End the transaction (before closing the index)."""
        self._txn.abort()


def _u64(raw: bytes | None) -> int:
    return 0 if raw is None else int(_U64.unpack(raw)[0])


def index_exists(path: str | Path) -> bool:
    """True when an LMDB environment has been created at *path*."""
    return os.path.exists(os.path.join(path, "data.mdb"))
