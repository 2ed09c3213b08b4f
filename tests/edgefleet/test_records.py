"""Record files (edgefleet/records.py): what one side writes the other reads back, in every
format, and a bad record stops the reader with the file and line named."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.records import (
    CatalogEntry,
    DailyRecord,
    RecordError,
    dumps_popularity,
    read_catalog,
    read_popularity,
    record_format,
    write_records_file,
)

NAMES = ("r.csv", "r.jsonl", "r.ndjson", "r.csv.gz", "r.jsonl.gz")
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
popularity = st.builds(
    DailyRecord,
    st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    ids,
    st.integers(min_value=0, max_value=2**63),
)
catalog = st.builds(
    CatalogEntry,
    ids,
    st.integers(min_value=0, max_value=2**50),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)


@settings(max_examples=40)
@given(st.lists(popularity, max_size=20), st.sampled_from(NAMES))
def test_popularity_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory, records: list[DailyRecord], name: str
) -> None:
    path = tmp_path_factory.mktemp("pop") / name
    assert write_records_file(path, "popularity", records) == len(records)
    assert list(read_popularity(path)) == records


@settings(max_examples=40)
@given(st.lists(catalog, max_size=20), st.sampled_from(NAMES))
def test_catalog_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory, entries: list[CatalogEntry], name: str
) -> None:
    path = tmp_path_factory.mktemp("cat") / name
    assert write_records_file(path, "catalog", entries) == len(entries)
    assert list(read_catalog(path)) == entries


def test_a_gz_file_is_really_compressed(tmp_path: Path) -> None:
    path = tmp_path / "p.csv.gz"
    write_records_file(path, "popularity", [DailyRecord(date(2026, 12, 8), "eu", "a.mp4", 5)])
    assert gzip.decompress(path.read_bytes()).decode().splitlines()[1] == "2026-12-08,eu,a.mp4,5"


def test_the_http_body_is_the_file_text() -> None:
    record = DailyRecord(date(2026, 12, 8), "eu", "a.mp4", 5)
    assert dumps_popularity([record], "jsonl") == (
        '{"day":"2026-12-08","region":"eu","content_id":"a.mp4","bytes_streamed":5}\n'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("day,region,content_id\n", r"p\.csv:1: the header lacks bytes_streamed"),
        ("day,region,content_id,bytes_streamed\n2026-12-08,eu,a.mp4\n", r"p\.csv:2: 3 fields"),
        ("day,region,content_id,bytes_streamed\n2026-13-08,eu,a.mp4,1\n", r":2: day must be"),
        ("day,region,content_id,bytes_streamed\n2026-12-08,EU!,a.mp4,1\n", r":2: invalid region"),
        ("day,region,content_id,bytes_streamed\n2026-12-08,eu,../x,1\n", r":2: invalid content id"),
        ("day,region,content_id,bytes_streamed\n\n2026-12-08,eu,a.mp4,-1\n", r":3: bytes_streamed"),
    ],
)
def test_a_bad_popularity_record_names_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(RecordError, match=message):
        list(read_popularity(path))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", r"c\.jsonl:2: not a JSON object"),
        ("{not json", r"c\.jsonl:2: not a JSON object"),
        ('{"content_id": "a", "size": true, "checksum": "' + "0" * 32 + '"}', r":2: size"),
        ('{"content_id": "a", "size": 1, "checksum": "XYZ"}', r":2: checksum must be 32"),
    ],
)
def test_a_bad_catalog_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    good = '{"content_id": "ok.mp4", "size": 1, "checksum": "' + "0" * 32 + '"}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(RecordError, match=message):
        list(read_catalog(path))


def test_the_format_follows_the_name_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    assert [record_format(n) for n in NAMES] == ["csv", "jsonl", "jsonl", "csv", "jsonl"]
    with pytest.raises(RecordError, match="cannot tell the format"):
        record_format("records.txt")
    with pytest.raises(RecordError, match=r"missing\.csv"):
        list(read_catalog(tmp_path / "missing.csv"))
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RecordError, match=r"bad\.csv\.gz"):
        list(read_catalog(tmp_path / "bad.csv.gz"))
