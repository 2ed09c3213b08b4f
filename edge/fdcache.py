"""Open file descriptors of served files, kept across requests, keyed by index generation.

Opening a file costs an open, an fstat and a close per request; keeping descriptors open
makes a request one LMDB read and one sendfile. An entry is valid only for the generation of
the index record it was opened for: when the fill agent replaces or deletes a file, the record
(and its generation) changes, and the next request reopens. Entries also carry the file's
precomputed header block, so a response needs no per-request formatting of validators.

A descriptor in use by a response in flight is never closed under it: eviction only unlinks
the entry, and the last `release` closes it.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Callable

from edge.httpdate import format_http_date
from edge.index import decode
from edge.plan import representation_headers
from edge.responses import SERVER, STATUS_LINE
from edgefleet.models import ContentRecord

_CONFIRM_TRIES = 3  # a file replaced three times during one open is refused (503), not chased
_GEN_AT_16 = struct.Struct("<Q")  # a record's generation sits at byte 16 (see edge.index)


class FileUnavailable(Exception):
    """The indexed file cannot be served: `status` is 404 (missing) or 503 (disk trouble)."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind


class OpenFile:
    """One open descriptor and what a response needs to know about its file."""

    __slots__ = (
        "checksum",
        "content_type",
        "date",
        "etag",
        "fd",
        "fixed",
        "generation",
        "head200",
        "head206",
        "header_block",
        "last_modified",
        "last_modified_http",
        "record",
        "refs",
        "size",
    )

    def __init__(self, fd: int, record: ContentRecord) -> None:
        self.fd = fd
        self.record = record
        self.generation = record.generation
        self.size = record.size
        # The validators and type, each on its own (edge.plan builds a path-form slice's
        # headers from them), and the header lines they make, precomputed for every response.
        self.checksum = record.checksum
        self.content_type = record.content_type.encode("latin-1")
        self.etag = f'"{record.checksum}"'
        self.last_modified = record.install_time
        self.last_modified_http = format_http_date(record.install_time).encode("latin-1")
        self.header_block = representation_headers(
            self.content_type, self.etag.encode("latin-1"), self.last_modified_http
        )
        self.fixed = SERVER + self.header_block  # what every 200/206 carries after Date
        self.refs = 1  # the cache's own reference
        # Status line + Date + `fixed`, rebuilt when the worker's Date line changes (1/s).
        self.date = b""
        self.head200 = b""
        self.head206 = b""

    def set_date(self, date_line: bytes) -> None:
        """Rebuild the 200/206 header prefixes for the worker's current Date line."""
        self.date = date_line
        self.head200 = STATUS_LINE[200] + date_line + self.fixed
        self.head206 = STATUS_LINE[206] + date_line + self.fixed

    def release(self) -> None:
        """Drop one reference; the last one closes the descriptor."""
        self.refs -= 1
        if self.refs == 0:
            os.close(self.fd)


class FdCache:
    """An LRU of `OpenFile`s by content id; `resolve_path` maps a record to its file path."""

    def __init__(
        self,
        capacity: int,
        resolve_path: Callable[[ContentRecord], str],
        current_record: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self._resolve = resolve_path
        # The index as it is now (a fresh read, not the worker's view): see `_open_current`.
        self._current_record = current_record
        self._entries: OrderedDict[bytes, OpenFile] = OrderedDict()
        # Entries already checked against the index view in use, each holding a reference of
        # its own: the fast path's whole lookup is one dictionary get. Emptied whenever the
        # view changes (`view_changed`, at least once a second) or the entry leaves the cache.
        self.hot: dict[bytes, OpenFile] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, key: bytes, raw_record: bytes) -> OpenFile:
        """The open file for *key* at the generation in *raw_record*; call `release` after use.

        Raises FileUnavailable when the file is missing, the wrong size or unreadable.
        """
        entry = self._entries.get(key)
        if entry is not None:
            # Generations only grow: an entry newer than the view was proven against a newer
            # index (`_open_current`) and stays good until the view catches up.
            if entry.generation >= _GEN_AT_16.unpack_from(raw_record, 16)[0]:
                self._entries.move_to_end(key)
                entry.refs += 1
                return entry
            self._drop(key)
        record = decode(key.decode(), raw_record)
        if self._current_record is None:
            fd = self._checked(record, *self._open(record))
        else:
            fd, record = self._open_current(key, record, self._current_record)
        entry = OpenFile(fd, record)
        self._entries[key] = entry
        if len(self._entries) > self.capacity:
            self._drop(next(iter(self._entries)))
        entry.refs += 1
        return entry

    def current(self, key: bytes, raw_record: bytes) -> OpenFile | None:
        """The cached open file for *key* if it is at the generation of *raw_record*, now also
        in `hot`; else None (the fast path then falls back to `acquire`). No reference is
        taken for the caller: `hot` holds one until the view changes, so a caller that is done
        before returning to the event loop needs none (take one to keep it longer)."""
        entry = self._entries.get(key)
        if entry is None or entry.generation < _GEN_AT_16.unpack_from(raw_record, 16)[0]:
            return None
        self._entries.move_to_end(key)
        if key not in self.hot:
            entry.refs += 1
            self.hot[key] = entry
        return entry

    def view_changed(self) -> None:
        """The index view moved on: entries must be checked against it again."""
        hot = self.hot
        if hot:
            self.hot = {}
            for entry in hot.values():
                entry.release()

    def invalidate(self, key: bytes) -> None:
        """Forget *key* (its file failed while being served)."""
        if key in self._entries:
            self._drop(key)

    def clear(self) -> None:
        """Forget every entry (descriptors in use close when released)."""
        for key in list(self._entries):
            self._drop(key)

    def _drop(self, key: bytes) -> None:
        hot = self.hot.pop(key, None)
        if hot is not None:
            hot.release()
        self._entries.pop(key).release()

    def _open_current(
        self, key: bytes, record: ContentRecord, current_record: Callable[[bytes], bytes | None]
    ) -> tuple[int, ContentRecord]:
        """An open descriptor of *key*'s file and the record its bytes belong to, proven by
        reading the index after the open.

        The worker's view of the index is refreshed once a second, so *record* may already be
        replaced: a file re-imported or re-fetched at the same path would then pair the view's
        record (size, ETag) with the new bytes. `edge.store.place_file` drops the old record
        before it renames the new file into place, so a record still current after the open
        proves that the open found that record's bytes; a newer one is opened and proven in
        turn. Costs one short read transaction per cache miss, none per hit."""
        for _ in range(_CONFIRM_TRIES):
            fd, size = self._open(record)
            try:
                raw = current_record(key)
            except BaseException:
                os.close(fd)
                raise
            if raw is not None and _GEN_AT_16.unpack_from(raw, 16)[0] == record.generation:
                return self._checked(record, fd, size), record
            os.close(fd)
            if raw is None:  # removed, or being replaced right now: not servable as indexed
                raise FileUnavailable(404, "replaced", f"{key.decode()}: no longer indexed")
            record = decode(key.decode(), raw)
        raise FileUnavailable(503, "replaced", f"{key.decode()}: replaced while being opened")

    def _open(self, record: ContentRecord) -> tuple[int, int]:
        """The file's descriptor and its size on disk."""
        try:
            path = self._resolve(record)
        except KeyError:
            raise FileUnavailable(
                503, "disk_failed", f"disk {record.disk_id} is not available"
            ) from None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileUnavailable(404, "missing_file", f"{path}: indexed but missing") from None
        except OSError as exc:
            raise FileUnavailable(503, "disk_error", f"{path}: {exc.strerror}") from None
        try:
            return fd, os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise FileUnavailable(503, "disk_error", f"{path}: {exc.strerror}") from None

    def _checked(self, record: ContentRecord, fd: int, size: int) -> int:
        """*fd*, whose file is whole: a half-written or truncated file is never served."""
        if size != record.size:
            os.close(fd)
            raise FileUnavailable(
                503,
                "size_mismatch",
                f"{self._resolve(record)}: {size} bytes on disk, {record.size} indexed",
            )
        return fd
