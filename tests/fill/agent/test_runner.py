"""`edgefleet fill run` as a process: real source edges, a real target index, disks and edge."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge.metrics import EdgeCollector, render
from edgefleet.tokens import Keyring
from tests.control.controlproc import ControlFiles, ControlProcess, topology_text
from tests.edge.edgeproc import EdgeProcess
from tests.fill.agent.fillproc import (
    FillTarget,
    edge_with_keyring,
    manifest_doc,
    served_body,
    shared_keyring,
)

pytestmark = pytest.mark.slow


class Scene:
    """Source edges and a target appliance; every process is stopped at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keyring: Keyring = shared_keyring()
        self.edges: list[EdgeProcess] = []

    def source(self, name: str, files: dict[str, bytes]) -> EdgeProcess:
        edge = edge_with_keyring(self.root / name, files, self.keyring).start()
        self.edges.append(edge)
        return edge

    def target(self, **fill: object) -> FillTarget:
        return FillTarget(self.root / "target", self.keyring, **fill)

    def serve(self, target: FillTarget) -> EdgeProcess:
        edge = target.edge.start()
        self.edges.append(edge)
        return edge

    def close(self) -> None:
        for edge in self.edges:
            edge.stop()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = Scene(tmp_path)
    yield s
    s.close()


def eventually(check: Callable[[], bool], within_s: float) -> bool:
    """Poll *check* until it holds or *within_s* passes (a refresh interval is the behaviour)."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def url_of(edge: EdgeProcess) -> str:
    return f"http://127.0.0.1:{edge.port}"


def test_fill_then_deletes_leave_index_at_once_and_disk_after_grace(scene: Scene) -> None:
    files = {f"v{i}.mp4": os.urandom(100_000 + i) for i in range(5)}
    origin = scene.source("origin", files)
    target = scene.target(delete_grace_s=3.0)
    target.write_manifest(manifest_doc(files, ["origin"], {"origin": url_of(origin)}))
    done = target.run()
    assert done.returncode == 0, done.stderr
    assert "5 added, 0 deleted, 0 failed" in done.stderr
    assert "origin=5" in done.stderr
    assert set(target.indexed()) == set(files)
    status = target.status()
    assert status["running"] == 0 and status["bytes_done"] == sum(map(len, files.values()))
    edge = scene.serve(target)
    for cid, data in files.items():
        assert served_body(edge, cid) == (200, data)

    again = target.run()  # nothing left to do
    assert "0 added, 0 deleted, 0 failed" in again.stderr, again.stderr

    kept = dict(list(files.items())[1:])
    target.write_manifest(manifest_doc(kept, ["origin"], {"origin": url_of(origin)}))
    dropped = target.run()
    assert "0 added, 1 deleted" in dropped.stderr, dropped.stderr
    assert "v0.mp4" not in target.indexed()
    # Out of the index at once; the edge's read view refreshes once a second (edge/index.py
    # ReadView), meanwhile the bytes are still on disk, so what it serves is right.
    assert eventually(lambda: served_body(edge, "v0.mp4")[0] == 404, within_s=5.0)
    assert any(p.name == "v0.mp4" for p in target.content_files())  # bytes kept during grace
    time.sleep(3.5)  # the grace period is the behaviour under test
    target.run()
    assert not any(p.name == "v0.mp4" for p in target.content_files())
    for cid, data in kept.items():
        assert served_body(edge, cid) == (200, data)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_at_random_points_then_restart_converges(scene: Scene, seed: int) -> None:
    rng = random.Random(seed)
    files = {f"s{i}.mp4": rng.randbytes(1_000_000 + rng.randrange(100_000)) for i in range(8)}
    origin = scene.source("origin", files)
    target = scene.target(rate_cap_bytes_per_s=4_000_000, parallel_downloads=3)
    target.write_manifest(manifest_doc(files, ["origin"], {"origin": url_of(origin)}))
    edge = scene.serve(target)
    cut_short = checked = 0
    for _kill in range(3):
        agent = target.start()
        kill_at = time.monotonic() + rng.uniform(0.3, 2.0)  # the random instant of the SIGKILL
        while time.monotonic() < kill_at:
            # Meanwhile a client keeps asking the target edge: a file is whole or absent.
            cid = rng.choice(list(files))
            status, body = served_body(edge, cid)
            assert status == 404 or (status, body) == (200, files[cid]), (cid, status)
            checked += 1
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        # Whatever is indexed now is served intact; nothing else is served at all.
        indexed = target.indexed()
        cut_short += len(indexed) < len(files)
        for cid, data in files.items():
            status, body = served_body(edge, cid)
            if cid in indexed:
                assert (status, body) == (200, data), cid
            else:
                assert status == 404, cid
    assert cut_short, "no SIGKILL landed before the fill was complete"
    assert checked > 10
    done = target.run()
    assert done.returncode == 0, done.stderr
    assert set(target.indexed()) == set(files)
    assert target.temp_files() == []
    assert sorted(p.name for p in target.content_files()) == sorted(files)
    for cid, data in files.items():
        assert served_body(edge, cid) == (200, data)


def test_window_end_stops_the_fill_cleanly_and_the_next_run_resumes(scene: Scene) -> None:
    files = {f"w{i}.mp4": os.urandom(2_000_000) for i in range(4)}
    origin = scene.source("origin", files)
    now = datetime.now()
    start = now.replace(second=0, microsecond=0)
    length = (now - start) + timedelta(seconds=5)  # the agent starts well within it
    target = scene.target(
        rate_cap_bytes_per_s=1_000_000,
        parallel_downloads=2,
        window_start=start.strftime("%H:%M"),
        window_length_s=length.total_seconds(),
    )
    target.write_manifest(manifest_doc(files, ["origin"], {"origin": url_of(origin)}))
    cut = target.run(now=False)
    assert cut.returncode == 0, cut.stderr
    assert "window ended" in cut.stderr
    assert len(target.indexed()) < len(files)  # stopped at the end, not after the 8 s needed
    partial = target.temp_files()
    assert partial, "in-flight downloads keep their partial files"
    assert target.status()["running"] == 0

    outside = target.run(now=False)  # the window is over: no download
    assert "outside the fill window" in outside.stderr
    assert "0 added" in outside.stderr

    target.write_config(rate_cap_bytes_per_s=0)
    done = target.run()
    assert done.returncode == 0, done.stderr
    assert set(target.indexed()) == set(files)
    assert target.temp_files() == []


def test_the_next_fill_re_places_the_files_of_a_failed_disk(scene: Scene) -> None:
    """A disk drops off the bus: the keeper takes its files out of the index (the edge answers
    404, steering stops sending players), and the next fill downloads them again onto the disk
    that still works; clients get every byte back."""
    files = {f"d{i}.mp4": os.urandom(200_000) for i in range(6)}
    origin = scene.source("origin", files)
    watch = "[diskwatch]\nprobe_interval_s = 0.2\nfail_after = 3\nrecover_after = 3\n"
    target = FillTarget(scene.root / "target", scene.keyring, disks=2, edge_config=watch)
    target.write_manifest(manifest_doc(files, ["origin"], {"origin": url_of(origin)}))
    first = target.run()
    assert first.returncode == 0, first.stderr
    edge = scene.serve(target)
    holders = target.disks_of()
    dead = max(target.edge.disks, key=lambda d: sum(v == d.disk_id for v in holders.values()))
    alive = next(d for d in target.edge.disks if d is not dead)
    lost = {cid for cid, disk in holders.items() if disk == dead.disk_id}
    dead.root.rename(dead.root.with_name("gone"))
    assert eventually(lambda: all(served_body(edge, c)[0] == 404 for c in lost), 20)
    assert eventually(lambda: set(target.disks_of()) == set(files) - lost, 20)  # the keeper

    again = target.run()
    assert again.returncode == 0, again.stderr
    assert f"{len(lost)} added" in again.stderr
    assert set(target.disks_of().values()) == {alive.disk_id}
    for cid, data in files.items():
        assert eventually(lambda c=cid, d=data: served_body(edge, c) == (200, d), 10), cid


def test_full_disks_fail_files_without_crashing(scene: Scene) -> None:
    files = {"a.mp4": os.urandom(50_000), "b.mp4": os.urandom(60_000)}
    origin = scene.source("origin", files)
    target = scene.target(disk_reserve_bytes=1 << 60)
    target.write_manifest(manifest_doc(files, ["origin"], {"origin": url_of(origin)}))
    done = target.run()
    assert done.returncode == 1
    assert "0 added, 0 deleted, 2 failed" in done.stderr
    assert "no disk has" in done.stderr
    assert target.indexed() == {}


def test_bad_manifest_is_refused_naming_the_field(scene: Scene) -> None:
    target = scene.target()
    doc = manifest_doc({"a.mp4": b"x"}, ["origin"], {"origin": "http://127.0.0.1:9"})
    doc["files"][0]["checksum"] = "nope"
    target.write_manifest(doc)
    done = target.run()
    assert done.returncode == 2
    assert "files[0].checksum" in done.stderr
    doc = manifest_doc({"a.mp4": b"x"}, ["origin"], {}, appliance="someone-else")
    target.write_manifest(doc)
    assert "not 'target-a'" in target.run().stderr


def test_fill_gauges_render_on_the_edge_metrics(scene: Scene) -> None:
    files = {"m.mp4": os.urandom(10_000)}
    origin = scene.source("origin", files)
    target = scene.target()
    target.write_manifest(manifest_doc(files, ["origin", "ghost"], {"origin": url_of(origin)}))
    assert target.run().returncode == 0
    text = render(EdgeCollector([], None, None, [], False, fill=target.status())).decode()
    assert "edgefleet_fill_running 0.0" in text
    assert "edgefleet_fill_bytes_done 10000.0" in text
    assert "edgefleet_fill_bytes_to_go 0.0" in text
    assert "edgefleet_fill_rate_bytes_per_second" in text
    status = {"running": 1, "errors": {"peer": 3}, "bytes_to_go": 5}
    text = render(EdgeCollector([], None, None, [], False, fill=status)).decode()
    assert 'edgefleet_fill_errors_total{source="peer"} 3.0' in text
    assert "edgefleet_fill_running 1.0" in text
    without = render(EdgeCollector([], None, None, [], False)).decode()
    assert "edgefleet_fill" not in without


def test_manifest_from_control(scene: Scene, tmp_path: Path) -> None:
    files = {"c0.mp4": os.urandom(30_000), "c1.mp4": os.urandom(40_000)}
    origin = scene.source("origin", files)
    control_files = ControlFiles(tmp_path / "control")
    # An origin appliance control knows, reachable at the source edge (never heartbeated:
    # control reports it down, so the agent tries it last, but still tries it).
    control_files.topology_path.write_text(
        topology_text(
            extra=f'[[appliances]]\nname = "org1"\nsite = "nyc1"\nbase_url = "{url_of(origin)}"\n'
        )
    )
    control = ControlProcess(control_files).start()
    try:
        target = scene.target(
            appliance="ams1-a",
            control_url=f"http://127.0.0.1:{control.port}",
            secret_file=str(control_files.secret_path),
        )
        missing = target.run()
        assert missing.returncode == 2
        assert "no manifest published for ams1-a" in missing.stderr
        doc = manifest_doc(files, ["lon1-a", "org1"], {}, appliance="ams1-a")
        del doc["source_urls"], doc["source_states"]
        status, _, body = control.call(
            "PUT", "/v1/manifests", "admin", {"generation": 1, "manifests": [doc]}
        )
        assert status == 200, body
        done = target.run()
        assert done.returncode == 0, done.stderr
        assert "2 added" in done.stderr and "org1=2" in done.stderr
        assert set(target.indexed()) == set(files)
    finally:
        control.stop()


def test_sigterm_stops_the_fill_cleanly(scene: Scene) -> None:
    files = {f"t{i}.mp4": os.urandom(2_000_000) for i in range(3)}
    origin = scene.source("origin", files)
    target = scene.target(rate_cap_bytes_per_s=1_000_000)
    target.write_manifest(manifest_doc(files, ["origin"], {"origin": url_of(origin)}))
    agent = target.start()
    # Wait for the first bytes (the status file says so), then stop it as systemd would.
    assert eventually(
        lambda: (
            (target.edge.root / "run" / "fill.json").exists() and target.status()["bytes_done"] > 0
        ),
        within_s=30.0,
    )
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    log = (target.root / "agent.log").read_text()
    assert "stopped by SIGTERM; the rest resumes next run" in log
    assert target.temp_files()
    assert target.status()["running"] == 0
