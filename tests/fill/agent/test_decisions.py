"""The fill agent's pure decisions (fill/agent/decisions.py): no sockets, no disks."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.manifests import FillManifest, ManifestFile
from fill.agent import decisions as agent
from fill.agent.decisions import Held, IndexedFile, PendingDelete, TempFile, TokenBucket

C1, C2, C3 = "1" * 32, "2" * 32, "3" * 32


def manifest(*files: ManifestFile) -> FillManifest:
    return FillManifest("a", 1, 0.0, files)


def test_diff_adds_keep_manifest_order_and_refetch_changed_content() -> None:
    m = manifest(
        ManifestFile("z.mp4", 10, C1),
        ManifestFile("a.mp4", 20, C2),
        ManifestFile("held.mp4", 5, C3),
        ManifestFile("changed.mp4", 7, C1),
        ManifestFile("resized.mp4", 8, C1),
    )
    held = {
        "held.mp4": Held(5, C3),
        "changed.mp4": Held(7, C2),
        "resized.mp4": Held(9, C1),
        "gone.mp4": Held(1, C1),
    }
    d = agent.diff(m, held)
    assert [f.content_id for f in d.adds] == ["z.mp4", "a.mp4", "changed.mp4", "resized.mp4"]
    assert d.refetch == ("changed.mp4", "resized.mp4")
    assert d.deletes == ("gone.mp4",)
    assert d.add_bytes == 10 + 20 + 7 + 8


ids = st.sampled_from([f"f{i}.mp4" for i in range(12)])
checks = st.sampled_from([C1, C2])


@given(
    listed=st.dictionaries(ids, st.tuples(st.integers(0, 3), checks)),
    held=st.dictionaries(ids, st.tuples(st.integers(0, 3), checks)),
)
def test_diff_partitions_listed_and_held(
    listed: dict[str, tuple[int, str]], held: dict[str, tuple[int, str]]
) -> None:
    m = manifest(*(ManifestFile(cid, size, c) for cid, (size, c) in listed.items()))
    d = agent.diff(m, {cid: Held(size, c) for cid, (size, c) in held.items()})
    adds = {f.content_id for f in d.adds}
    # After the fill the appliance holds exactly the listed files, with the listed content.
    kept = {cid for cid in held if cid in listed and held[cid] == listed[cid]}
    assert adds | kept == set(listed)
    assert not adds & kept
    assert set(d.deletes) == set(held) - set(listed)
    assert set(d.refetch) == adds & set(held)
    order = [cid for cid in listed if cid in adds]
    assert [f.content_id for f in d.adds] == order


def test_source_order_puts_down_and_draining_last_and_skips_unknown() -> None:
    f = ManifestFile("x.mp4", 1, C1, ("peer", "tier", "gone", "origin", "drainer"))
    urls = {"peer": "http://p/", "tier": "http://t", "origin": "http://o", "drainer": "http://d"}
    states = {"peer": "down", "tier": "up", "origin": "saturated", "drainer": "draining"}
    order = agent.source_order(f, urls, states)
    assert [s.name for s in order] == ["tier", "origin", "peer", "drainer"]
    assert order[2].base_url == "http://p"  # no double slash in {base}/c/{id}


@given(
    names=st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
    states=st.dictionaries(
        st.sampled_from("abcdefgh"), st.sampled_from(["up", "down", "draining", "saturated"])
    ),
)
def test_source_order_is_a_stable_partition(names: list[str], states: dict[str, str]) -> None:
    f = ManifestFile("x.mp4", 1, C1, tuple(names))
    order = [s.name for s in agent.source_order(f, {n: f"http://{n}" for n in names}, states)]
    assert sorted(order) == sorted(names)
    bad = [n for n in order if states.get(n) in ("down", "draining")]
    assert order == [n for n in names if n not in bad] + [n for n in names if n in bad]


def test_token_bucket_waits_for_the_debt() -> None:
    b = TokenBucket(100.0, 50.0, now=0.0)
    assert b.take(50, 0.0) == 0.0
    assert b.take(100, 0.0) == pytest.approx(1.0)
    # A second taker at the same instant queues behind the first.
    assert b.take(100, 0.0) == pytest.approx(2.0)
    assert b.take(0, 10.0) == 0.0  # refilled, capped at the burst
    assert b.tokens == pytest.approx(50.0)


@given(
    rate=st.floats(1.0, 1e6),
    burst=st.floats(1.0, 1e6),
    chunks=st.lists(st.integers(0, 100_000), min_size=1, max_size=50),
)
def test_token_bucket_never_exceeds_rate_plus_burst(
    rate: float, burst: float, chunks: list[int]
) -> None:
    # Takers that sleep as told: bytes used by any instant stay within burst + rate * elapsed.
    b = TokenBucket(rate, burst, now=0.0)
    now = used = 0.0
    for n in chunks:
        now += b.take(n, now)
        used += n
        assert used <= max(burst, 1.0) + rate * now + 1e-6 * max(used, 1.0)


def at(hh: int, mm: int, ss: int = 0, day: int = 10) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss)


@pytest.mark.parametrize(
    ("now", "start", "length_h", "end"),
    [
        (at(3, 0), time(2, 0), 12, at(14, 0)),
        (at(1, 59), time(2, 0), 12, None),
        (at(14, 0), time(2, 0), 12, None),
        (at(23, 30), time(22, 0), 4, at(2, 0, day=11)),
        (at(1, 30), time(22, 0), 4, at(2, 0)),
        (at(2, 0), time(22, 0), 4, None),
        (at(9, 0), time(9, 0), 24, at(9, 0, day=11)),
    ],
)
def test_window_end(now: datetime, start: time, length_h: float, end: datetime | None) -> None:
    assert agent.window_end(now, start, length_h * 3600) == end


@given(
    now=st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1)),
    hh=st.integers(0, 23),
    mm=st.integers(0, 59),
    length_s=st.floats(1, 86400),
)
def test_window_end_is_within_one_length(now: datetime, hh: int, mm: int, length_s: float) -> None:
    end = agent.window_end(now, time(hh, mm), length_s)
    nxt = agent.next_window_start(now, time(hh, mm))
    assert nxt > now
    if end is not None:
        assert now < end <= now + timedelta(seconds=length_s)
    else:
        # Outside: the window that opened last closed before now.
        assert nxt - timedelta(days=1) + timedelta(seconds=length_s) <= now


def test_parse_hhmm() -> None:
    assert agent.parse_hhmm("02:30") == time(2, 30)
    for bad in ("2:30", "24:00", "12:60", "noon", ""):
        with pytest.raises(ValueError, match="HH:MM"):
            agent.parse_hhmm(bad)


def test_content_range_and_resume_offset() -> None:
    assert agent.parse_content_range("bytes 10-99/100") == (10, 99, 100)
    assert agent.parse_content_range("bytes 10-100/100") is None
    assert agent.parse_content_range("bytes 20-10/100") is None
    assert agent.parse_content_range("bytes */100") is None
    assert agent.resume_offset(206, "bytes 10-99/100", 10, 100) == 10
    assert agent.resume_offset(206, "bytes 0-99/100", 10, 100) is None  # not what was asked
    assert agent.resume_offset(206, "bytes 10-99/200", 10, 100) is None  # another file size
    assert agent.resume_offset(206, None, 10, 100) is None
    assert agent.resume_offset(200, None, 10, 100) == 0  # the whole file: start over
    assert agent.resume_offset(416, None, 10, 100) is None


def test_reconcile() -> None:
    records = [
        IndexedFile("ok.mp4", "d1", "aa/ok.mp4", 10),
        IndexedFile("missing.mp4", "d1", "bb/missing.mp4", 10),
        IndexedFile("torn.mp4", "d1", "cc/torn.mp4", 10),
        IndexedFile("failed-disk.mp4", "d9", "dd/failed-disk.mp4", 10),
    ]
    on_disk = {
        ("d1", "aa/ok.mp4"): 10,
        ("d1", "cc/torn.mp4"): 4,
        ("d1", "ee/orphan.mp4"): 3,
        ("d1", "ff/pending.mp4"): 3,
    }
    temps = [
        TempFile("d1", "/t/a", "want.mp4", C1, 5.0),
        TempFile("d1", "/t/b", "want.mp4", C1, 5.0),  # a second copy: removed
        TempFile("d1", "/t/c", "old.mp4", C2, 5.0),
        TempFile("d1", "/t/d", "want2.mp4", C2, 5.0),  # other content than wanted
        TempFile("d1", "/t/e", None, None, 5.0),  # an interrupted import
        TempFile("d1", "/t/f", None, None, 50.0),  # newer than this run: not ours
    ]
    plan = agent.reconcile(
        records,
        on_disk,
        temps,
        live_disks={"d1"},
        pending={("d1", "ff/pending.mp4")},
        wanted={"want.mp4": C1, "want2.mp4": C1},
        run_started=10.0,
    )
    assert [r.content_id for r in plan.drop] == ["missing.mp4", "torn.mp4"]
    assert plan.orphans == [("d1", "ee/orphan.mp4")]
    assert {k: t.path for k, t in plan.resume.items()} == {"want.mp4": "/t/a"}
    assert sorted(t.path for t in plan.remove_temps) == ["/t/b", "/t/c", "/t/d", "/t/e"]


def test_split_due() -> None:
    a = PendingDelete("a", "d", "x/a", 5.0)
    b = PendingDelete("b", "d", "x/b", 15.0)
    assert agent.split_due([a, b], 10.0) == ([a], [b])


def test_summary_line_names_counts_and_sources() -> None:
    t = agent.Tally(added=3, deleted=1, failed=1, bytes_done=2_000_000, cut="window ended")
    t.by_source = {"origin": 2, "peer": 1}
    t.errors = {"peer": 4}
    line = t.summary(2.0)
    assert "3 added, 1 deleted, 1 failed" in line
    assert "1.0 MB/s" in line
    assert "origin=2, peer=1" in line
    assert "errors: peer=4" in line
    assert "window ended" in line
