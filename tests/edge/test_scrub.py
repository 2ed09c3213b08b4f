"""The scrub: budget and verdicts (pure), the scrubber over a real index and real files, and a
real edge that quarantines a corrupted file while serving the others."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import DiskWatchConfig, EdgeConfig, ScrubConfig, TokenConfig
from edge.config import load as load_config
from edge.diskwatch import DiskKeeper, DiskWatch
from edge.index import ContentIndex, NewFile
from edge.runtime import keeper_file
from edge.scrub import (
    QUARANTINE_DIR,
    STATE_FILE,
    RateBudget,
    Scrubber,
    ScrubState,
    chunk_for,
    verdict,
)
from edgefleet.models import ContentRecord
from tests.edge.edgeproc import EdgeProcess, request

FILES = {f"f{i}.mp4": bytes([i]) * (100_000 + i * 7_777) for i in range(6)}


def _record(size: int = 10, checksum: str = "0" * 32) -> ContentRecord:
    return ContentRecord("a.mp4", "d1", "ab/a.mp4", size, checksum, "video/mp4", 0, 1)


# -- pure ------------------------------------------------------------------------------------


def test_verdict_names_size_then_checksum() -> None:
    rec = _record(10, "ab" * 16)
    assert verdict(rec, 10, "ab" * 16) is None
    assert verdict(rec, 11, None) == "size 11, index says 10"
    assert verdict(rec, 10, "cd" * 16) == f"checksum {'cd' * 16}, index says {'ab' * 16}"


def test_chunk_is_aligned_and_bounded() -> None:
    assert chunk_for(1) == 64 << 10
    assert chunk_for(10**12) == 1 << 20
    assert chunk_for(5_000_000) == 500_000 - 500_000 % 4096


@given(
    rate=st.integers(1_000, 10**9),
    steps=st.lists(st.tuples(st.floats(0, 2), st.integers(0, 10**6)), max_size=40),
)
def test_budget_never_lets_more_than_rate_times_time_plus_a_burst(
    rate: int, steps: list[tuple[float, int]]
) -> None:
    budget = RateBudget(rate, 0.0)
    now = 0.0
    spent = 0
    for dt, want in steps:
        now += dt
        allowed = budget.available(now)
        take = min(want, allowed)
        budget.spend(take)
        spent += take
        assert spent <= rate * now + 1
        assert budget.wait_s(allowed + 1) > 0


def test_state_survives_a_round_trip_and_malformed_fields_start_afresh() -> None:
    state = ScrubState(after="x.mp4", bytes=5, files=2, quarantined=1, passes=3, disks={"/a": "d"})
    assert ScrubState.from_json(json.loads(json.dumps(state.to_json()))) == state
    bad = ScrubState.from_json({"after": 3, "bytes": -1, "files": True, "passes": 2})
    assert bad == ScrubState(passes=2)
    assert ScrubState.from_json([]) == ScrubState()


# -- the scrubber over a real index and files --------------------------------------------------


def _scrubber(edge: EdgeProcess, **scrub: object) -> tuple[Scrubber, ContentIndex, EdgeConfig]:
    conf = load_config(edge.config_path)
    conf = replace(conf, scrub=replace(conf.scrub, **scrub))  # type: ignore[arg-type]
    index = ContentIndex(conf.index)
    keeper = DiskKeeper(DiskWatch(conf.disks), index, conf.runtime_dir)
    keeper.probe_all()
    return Scrubber(conf, index, keeper), index, conf


def _run(scrubber: Scrubber, until: float = 30.0, passes: int = 1) -> None:
    deadline = time.monotonic() + until
    while scrubber.state.passes < passes and time.monotonic() < deadline:
        wait = scrubber.step(time.monotonic())
        time.sleep(min(wait, 0.05))
    assert scrubber.state.passes >= passes, scrubber.status()


def _corrupt(edge: EdgeProcess, cid: str, offset: int = 5_000) -> Path:
    rec = edge.records[cid]
    disk = next(d for d in edge.disks if d.disk_id == rec.disk_id)
    path = Path(disk.path_of(rec.relpath))
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return path


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "buffered"])
def test_a_flipped_byte_and_a_truncation_are_quarantined_the_rest_kept(
    tmp_path: Path, direct: bool
) -> None:
    edge = EdgeProcess(tmp_path, FILES, disks=2)
    flipped = _corrupt(edge, "f2.mp4")
    truncated_rec = edge.records["f4.mp4"]
    disk = next(d for d in edge.disks if d.disk_id == truncated_rec.disk_id)
    with open(disk.path_of(truncated_rec.relpath), "r+b") as fh:
        fh.truncate(1000)
    scrubber, index, _ = _scrubber(edge, rate_bytes_per_s=50_000_000, direct_io=direct)
    try:
        _run(scrubber)
        assert {r.content_id for r in index.records()} == set(FILES) - {"f2.mp4", "f4.mp4"}
        assert scrubber.state.quarantined == 2
        # A step may run on into the next pass: at least every file once.
        assert scrubber.state.files >= len(FILES)
        assert scrubber.state.bytes >= sum(len(v) for k, v in FILES.items() if k != "f4.mp4")
        assert not flipped.exists()
        kept = sorted(p.name for d in edge.disks for p in (d.root / QUARANTINE_DIR).glob("*"))
        assert [n.split(".")[0] for n in kept] == ["f2", "f4"]
        # The inventory delta says "removed" for both (one change each).
        current = index.generation()
        changes = index.changes_since(current - 2)
        assert changes is not None and sorted(changes[1]) == [("-", "f2.mp4"), ("-", "f4.mp4")]
    finally:
        scrubber.close()
        index.close()


def test_position_persists_so_a_restart_continues(tmp_path: Path) -> None:
    edge = EdgeProcess(tmp_path, FILES)
    # A low rate: a step hashes about one file, so the run stops part way round.
    scrubber, index, conf = _scrubber(edge, rate_bytes_per_s=400_000)
    try:
        while scrubber.state.files < 2:
            scrubber.step(time.monotonic())
            time.sleep(0.01)
        scrubber.close()  # as on SIGTERM
        position = scrubber.state.after
        assert position not in ("", max(FILES))
    finally:
        index.close()
    saved = json.loads((Path(conf.index) / STATE_FILE).read_text())
    assert saved["after"] == position and saved["files"] >= 2
    again, index, _ = _scrubber(edge, rate_bytes_per_s=400_000)
    try:
        assert again.state.after == position and again.state.files == saved["files"]
        assert again._open_next()
        assert again.current is not None and again.current.record.content_id > position
    finally:
        again.close()
        index.close()


def test_a_record_replaced_while_hashing_is_not_judged(tmp_path: Path) -> None:
    edge = EdgeProcess(tmp_path, FILES)
    path = _corrupt(edge, "f0.mp4")
    scrubber, index, _ = _scrubber(edge, rate_bytes_per_s=50_000_000)
    try:
        assert scrubber._open_next() and scrubber.current is not None
        assert scrubber.current.record.content_id == "f0.mp4"
        # The fill agent re-installs f0 (a new generation) while the old bytes are hashed.
        old = edge.records["f0.mp4"]
        fresh = path.with_name("fresh")
        fresh.write_bytes(FILES["f0.mp4"])
        fresh.replace(path)  # a new inode: the scrub's descriptor still reads the torn one
        index.put(
            NewFile("f0.mp4", old.disk_id, old.relpath, old.size, old.checksum, old.content_type, 1)
        )
        _run(scrubber, passes=2)
        assert index.get("f0.mp4") is not None
        assert scrubber.state.quarantined == 0
    finally:
        scrubber.close()
        index.close()


def test_rate_zero_or_disabled_reads_nothing(tmp_path: Path) -> None:
    edge = EdgeProcess(tmp_path, FILES)
    for scrub in ({"rate_bytes_per_s": 0}, {"enabled": False}):
        scrubber, index, _ = _scrubber(edge, **scrub)
        try:
            assert scrubber.step(time.monotonic()) > 0
            assert scrubber.state.bytes == 0 and scrubber.current is None
        finally:
            scrubber.close()
            index.close()


# -- a real edge --------------------------------------------------------------------------------


def _metric(port: int, name: str, labels: str = "") -> float | None:
    status, _, body = request(port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.split(" ")[0] == name + labels:
            return float(line.split()[-1])
    return None


def test_the_running_edge_quarantines_a_corrupted_file_and_serves_the_rest(
    tmp_path: Path,
) -> None:
    edge = EdgeProcess(
        tmp_path, FILES, tokens=False, extra_config="[scrub]\nrate_bytes_per_s = 100000000\n"
    )
    _corrupt(edge, "f3.mp4")
    edge.start()
    try:
        deadline = time.monotonic() + 30
        while request(edge.port, "/c/f3.mp4")[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert request(edge.port, "/c/f3.mp4")[0] == 404
        for cid, data in FILES.items():
            if cid != "f3.mp4":
                status, _, body = request(edge.port, f"/c/{cid}")
                assert (status, body) == (200, data)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (_metric(edge.port, "edgefleet_edge_quarantined_files_total") or 0) >= 1:
                break
            time.sleep(0.2)
        assert _metric(edge.port, "edgefleet_edge_quarantined_files_total") == 1
        assert (_metric(edge.port, "edgefleet_edge_scrub_files_total") or 0) >= 1
        assert (_metric(edge.port, "edgefleet_edge_scrub_bytes_total") or 0) > 0
        status = json.loads(keeper_file(tmp_path / "run").read_text())
        assert status["scrub"]["quarantined"] == 1
    finally:
        assert edge.stop() == 0
    assert "f3.mp4 quarantined: checksum" in edge.stderr()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"scrub": ScrubConfig(rate_bytes_per_s=-1)}, "'scrub.rate_bytes_per_s'"),
        ({"diskwatch": DiskWatchConfig(probe_interval_s=0)}, "'diskwatch.probe_interval_s'"),
        ({"diskwatch": DiskWatchConfig(fail_after=0)}, "'diskwatch.fail_after'"),
    ],
)
def test_bad_keys_are_named(change: dict[str, object], key: str) -> None:
    conf = replace(EdgeConfig(tokens=TokenConfig(required=False)), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=key):
        conf.validate()
