"""The served-bytes spool: workers write files, the reporter sums, acknowledges, merges.

The invariant: every byte a worker spooled reaches control exactly once as long as each
heartbeat is either acknowledged (200) or failed (no answer), whatever the interleaving of
worker flushes, failures, merges and reporter restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.popularity import Spool, spool_dir, write_spool


def test_worker_files_are_whole_and_skip_bad_ids(tmp_path: Path) -> None:
    d = spool_dir(tmp_path)
    assert d == tmp_path / "served"
    assert write_spool(d, 0, 42, 1, {}) is None
    assert write_spool(d, 0, 42, 2, {b"a.mp4": 0}) is None
    path = write_spool(d, 1, 42, 3, {b"a.mp4": 10, b"../x": 5, b"\xff": 1, b"b": 2})
    assert path == d / "1-42-3.json"
    assert json.loads(path.read_text()) == {"served": {"a.mp4": 10, "b": 2}}
    assert sorted(p.name for p in d.iterdir()) == ["1-42-3.json"]  # no temporary left


def test_acknowledged_files_go_failed_ones_come_back(tmp_path: Path) -> None:
    d = spool_dir(tmp_path)
    spool = Spool(d)
    assert spool.collect() == {}  # no directory yet
    write_spool(d, 0, 1, 1, {b"a": 10})
    write_spool(d, 1, 2, 1, {b"a": 5, b"b": 1})
    assert spool.collect() == {"a": 15, "b": 1}
    write_spool(d, 0, 1, 2, {b"c": 3})  # arrives while the heartbeat is in flight
    spool.failed()
    assert spool.collect() == {"a": 15, "b": 1, "c": 3}
    write_spool(d, 0, 1, 3, {b"c": 4})
    assert spool.acknowledged() == 3
    assert spool.collect() == {"c": 4}  # only what was not acknowledged
    spool.acknowledged()
    assert spool.collect() == {}


def test_unreadable_files_are_dropped_not_fatal(tmp_path: Path) -> None:
    d = spool_dir(tmp_path)
    d.mkdir()
    (d / "0-1-1.json").write_text("{torn")
    (d / "0-1-2.json").write_text('{"served": {"a": -1}}')
    (d / ".0-1-3.json.tmp").write_text('{"served": {"a": 1}}')  # being written
    write_spool(d, 0, 1, 4, {b"b": 2})
    spool = Spool(d)
    assert spool.collect() == {"b": 2}
    assert sorted(p.name for p in d.iterdir()) == [".0-1-3.json.tmp", "0-1-4.json"]


def test_many_files_are_merged_and_a_heartbeat_stays_under_the_id_cap(tmp_path: Path) -> None:
    d = spool_dir(tmp_path)
    for seq in range(30):
        write_spool(d, 0, 1, seq, {f"f{seq}".encode(): 1, b"common": 2})
    spool = Spool(d, max_files=8, max_ids=11)
    assert spool.compact() == 30
    files = list(d.iterdir())
    assert 2 <= len(files) <= 8 and all(p.name.startswith("merged-") for p in files)
    first = spool.collect()
    assert len(first) <= 11
    spool.acknowledged()
    rest: dict[str, int] = {}
    while part := spool.collect():
        assert len(part) <= 11
        for cid, n in part.items():
            rest[cid] = rest.get(cid, 0) + n
        spool.acknowledged()
    total = {cid: first.get(cid, 0) + rest.get(cid, 0) for cid in {*first, *rest}}
    assert total == {**{f"f{i}": 1 for i in range(30)}, "common": 60}


def test_a_merge_interrupted_before_deleting_counts_nothing_twice(tmp_path: Path) -> None:
    d = spool_dir(tmp_path)
    write_spool(d, 0, 1, 1, {b"a": 1})
    write_spool(d, 0, 1, 2, {b"a": 2})
    # As if a merge renamed its file into place and the reporter died before deleting.
    replaces = ["0-1-1.json", "0-1-2.json"]
    part = {"replaces": replaces, "group": "g1", "parts": 2}
    (d / "merged-g1-0.json").write_text(json.dumps({"served": {"a": 3}, **part}))
    (d / "merged-g1-1.json").write_text(json.dumps({"served": {"b": 1}, **part}))
    assert Spool(d).collect() == {"a": 3, "b": 1}
    assert sorted(p.name for p in d.iterdir()) == ["merged-g1-0.json", "merged-g1-1.json"]


def test_a_merge_interrupted_while_writing_is_undone(tmp_path: Path) -> None:
    d = spool_dir(tmp_path)
    write_spool(d, 0, 1, 1, {b"a": 1})
    write_spool(d, 0, 1, 2, {b"b": 2})
    # One part of two was renamed into place; the sources were not touched yet.
    part = {"replaces": ["0-1-1.json", "0-1-2.json"], "group": "g1", "parts": 2}
    (d / "merged-g1-0.json").write_text(json.dumps({"served": {"a": 1}, **part}))
    assert Spool(d).collect() == {"a": 1, "b": 2}
    assert sorted(p.name for p in d.iterdir()) == ["0-1-1.json", "0-1-2.json"]


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("spool"), st.dictionaries(st.sampled_from("abcd"), st.integers(1, 99))),
        st.tuples(st.sampled_from(["beat_ok", "beat_fail", "restart"]), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(OPS, st.integers(1, 4), st.integers(1, 3))
def test_every_spooled_byte_is_acknowledged_exactly_once(
    ops: list[tuple[str, dict[str, int] | None]], max_files: int, max_ids: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = spool_dir(tmp)
        spool = Spool(d, max_files=max_files, max_ids=max_ids)
        spooled: dict[str, int] = {}
        delivered: dict[str, int] = {}
        seq = 0
        for op, counts in ops:
            if op == "spool":
                assert counts is not None
                seq += 1
                write_spool(d, 0, os.getpid(), seq, {k.encode(): n for k, n in counts.items()})
                for k, n in counts.items():
                    spooled[k] = spooled.get(k, 0) + n
            elif op == "restart":  # a new reporter process: nothing in flight
                spool = Spool(d, max_files=max_files, max_ids=max_ids)
            else:
                sent = spool.collect()
                assert len(sent) <= max(max_ids, 4)  # a single file may hold up to 4 ids
                if op == "beat_ok":
                    for k, n in sent.items():
                        delivered[k] = delivered.get(k, 0) + n
                    spool.acknowledged()
                else:
                    spool.failed()
            if op.startswith("beat"):
                # Bounded after each heartbeat however long control stays away: the merged
                # files (a few, split at max_ids ids) plus what is in flight.
                assert len(list(d.glob("*.json"))) <= max_files + 4 + 1
        while sent := spool.collect():
            for k, n in sent.items():
                delivered[k] = delivered.get(k, 0) + n
            spool.acknowledged()
        assert delivered == spooled
