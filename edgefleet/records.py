"""Record files the fleet exchanges: daily popularity and the catalog, as CSV or JSONL.

    popularity: day,region,content_id,bytes_streamed      (day: ISO date, 2026-11-24)
    catalog:    content_id,size,checksum                  (checksum: xxh3-128, 32 hex digits)

CSV files start with that header line; JSONL files hold one object per line with the same
keys. The format follows the file name (`.csv`, `.jsonl`/`.ndjson`, optionally `.gz`) or is
given. Readers stream: a file of a hundred million records is read in constant memory. A bad
record raises RecordError naming the file and line, since a silently skipped line would skew
a plan without anyone noticing.

`edgefleet control export-popularity` writes these; `edgefleet fill plan` reads them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

from edgefleet.models import is_content_id

POPULARITY_FIELDS = ("day", "region", "content_id", "bytes_streamed")
CATALOG_FIELDS = ("content_id", "size", "checksum")
_CHECKSUM = re.compile(r"[0-9a-f]{32}")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class RecordError(ValueError):
    """A record file is unreadable or holds a bad record; the message names file and line."""


@dataclass(frozen=True, slots=True)
class DailyRecord:
    """Bytes of one file streamed in one region on one day (the export's record format)."""

    day: int | date  # a date in files; plain day numbers are accepted by the forecast
    region: str
    content_id: str
    bytes_streamed: int


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One file of the catalog: what the planner needs to place it and the agent to check it."""

    content_id: str
    size: int
    checksum: str


def record_format(path: str | Path) -> str:
    """ "csv" or "jsonl", from the file name (a trailing .gz is looked through)."""
    name = str(path).lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise RecordError(f"{path}: cannot tell the format from the name (use .csv or .jsonl)")


@contextmanager
def _open_text(path: str | Path, mode: str) -> Iterator[IO[str]]:
    try:
        if str(path).lower().endswith(".gz"):
            text = "rt" if mode == "r" else "wt"
            fh: IO[str] = gzip.open(path, text, encoding="utf-8", newline="")  # type: ignore[assignment] # noqa: SIM115
        else:
            fh = open(path, mode, encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise RecordError(f"{path}: {exc.strerror}") from None
    with fh:
        yield fh


def _rows(path: str | Path, fields: tuple[str, ...], fmt: str | None) -> Iterator[tuple[int, Any]]:
    """(line number, row) pairs: dicts for JSONL, lists in *fields* order for CSV."""
    fmt = fmt or record_format(path)
    with _open_text(path, "r") as fh:
        try:
            if fmt == "csv":
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None:
                    return
                header = [h.strip() for h in header]
                missing = [f for f in fields if f not in header]
                if missing:
                    raise RecordError(f"{path}:1: the header lacks {', '.join(missing)}")
                where = [header.index(f) for f in fields]
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(header):
                        raise RecordError(
                            f"{path}:{reader.line_num}: {len(row)} fields, expected {len(header)}"
                        )
                    yield reader.line_num, [row[i] for i in where]
            elif fmt == "jsonl":
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        raise RecordError(f"{path}:{number}: not a JSON object") from None
                    if not isinstance(doc, dict):
                        raise RecordError(f"{path}:{number}: not a JSON object")
                    yield number, [doc.get(f) for f in fields]
            else:
                raise RecordError(f"{path}: unknown format {fmt!r}")
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise RecordError(f"{path}: {exc}") from None


def _as_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool):
        raise RecordError(f"{where}: {what} must be an integer >= 0")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RecordError(f"{where}: {what} must be an integer >= 0, not {value!r}") from None
    if number < 0:
        raise RecordError(f"{where}: {what} must be an integer >= 0, not {value!r}")
    return number


def _as_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_content_id(value):
        raise RecordError(f"{where}: invalid content id {str(value)[:140]!r}")
    return value


def read_popularity(path: str | Path, fmt: str | None = None) -> Iterator[DailyRecord]:
    """Stream the daily popularity records of a CSV or JSONL file."""
    for number, (day, region, content_id, streamed) in _rows(path, POPULARITY_FIELDS, fmt):
        where = f"{path}:{number}"
        try:
            when = date.fromisoformat(str(day))
        except ValueError:
            raise RecordError(f"{where}: day must be an ISO date, not {day!r}") from None
        if not isinstance(region, str) or _REGION.fullmatch(region) is None:
            raise RecordError(f"{where}: invalid region {str(region)[:70]!r}")
        yield DailyRecord(
            when, region, _as_id(content_id, where), _as_int(streamed, "bytes_streamed", where)
        )


def read_catalog(path: str | Path, fmt: str | None = None) -> Iterator[CatalogEntry]:
    """Stream the catalog entries of a CSV or JSONL file."""
    for number, (content_id, size, checksum) in _rows(path, CATALOG_FIELDS, fmt):
        where = f"{path}:{number}"
        if not isinstance(checksum, str) or _CHECKSUM.fullmatch(checksum) is None:
            raise RecordError(f"{where}: checksum must be 32 lowercase hex digits (xxh3-128)")
        yield CatalogEntry(_as_id(content_id, where), _as_int(size, "size", where), checksum)


def _day_text(day: int | date) -> str:
    return day.isoformat() if isinstance(day, date) else date.fromordinal(day).isoformat()


def write_popularity(records: Iterable[DailyRecord], out: IO[str], fmt: str) -> int:
    """Write *records* to the text stream *out* as "csv" or "jsonl"; returns how many."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(POPULARITY_FIELDS)
        for r in records:
            writer.writerow((_day_text(r.day), r.region, r.content_id, r.bytes_streamed))
            count += 1
    elif fmt == "jsonl":
        for r in records:
            doc = {
                "day": _day_text(r.day),
                "region": r.region,
                "content_id": r.content_id,
                "bytes_streamed": r.bytes_streamed,
            }
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")
            count += 1
    else:
        raise RecordError(f"unknown format {fmt!r}")
    return count


def write_catalog(entries: Iterable[CatalogEntry], out: IO[str], fmt: str) -> int:
    """Write catalog *entries* to *out* as "csv" or "jsonl"; returns how many."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CATALOG_FIELDS)
        for e in entries:
            writer.writerow((e.content_id, e.size, e.checksum))
            count += 1
    elif fmt == "jsonl":
        for e in entries:
            doc = {"content_id": e.content_id, "size": e.size, "checksum": e.checksum}
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")
            count += 1
    else:
        raise RecordError(f"unknown format {fmt!r}")
    return count


def write_records_file(path: str | Path, kind: str, items: Iterable[Any]) -> int:
    """Write popularity ("popularity") or catalog ("catalog") records to *path*."""
    fmt = record_format(path)
    with _open_text(path, "w") as fh:
        if kind == "popularity":
            return write_popularity(items, fh, fmt)
        if kind == "catalog":
            return write_catalog(items, fh, fmt)
    raise RecordError(f"unknown record kind {kind!r}")


def dumps_popularity(records: Iterable[DailyRecord], fmt: str) -> str:
    """Records as one string (for an HTTP body)."""
    buf = io.StringIO()
    write_popularity(records, buf, fmt)
    return buf.getvalue()
