"""Disk failure: the confirmation rule (pure), and real edges losing a disk — through the fault
hook, a disk root that disappears, and (as root) a real loop-mounted filesystem — with metrics,
heartbeats and control's views following."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.diskwatch import FAULT_FILE, DiskWatch, ids_to_remove
from edge.index import ContentIndex, NewFile
from edge.runtime import keeper_file
from tests.control.controlproc import ControlFiles, ControlProcess
from tests.edge.edgeproc import EdgeProcess, request

FILES = {f"v{i}.mp4": bytes([65 + i]) * (20_000 + i) for i in range(8)}
FAST = "[diskwatch]\nprobe_interval_s = 0.2\nfail_after = 3\nrecover_after = 3\n"


# -- pure ------------------------------------------------------------------------------------


def test_one_transient_error_never_fails_a_disk() -> None:
    watch = DiskWatch(("/a",), fail_after=3, recover_after=2)
    for _ in range(5):
        assert watch.observe("/a", None, "EIO") is None
        assert watch.observe("/a", None, "EIO") is None
        assert watch.observe("/a", "d1", None) is None  # a good probe resets the count
    assert watch.observe("/a", None, "EIO") is None
    assert watch.read_error("/a", "read error") is None
    assert watch.observe("/a", None, "EIO") == "failed"
    assert watch.observe("/a", None, "EIO") is None  # already failed: no second transition
    assert not watch.usable("d1")
    assert watch.observe("/a", "d1", None) is None
    assert watch.observe("/a", None, "EIO") is None  # an error restarts the recovery count
    assert watch.observe("/a", "d1", None) is None
    assert watch.observe("/a", "d1", None) == "recovered"
    assert watch.usable("d1")
    assert watch.to_json()[0] == {
        "root": "/a",
        "id": "d1",
        "failed": False,
        "reason": "",
        "free_bytes": 0,
        "total_bytes": 0,
    }


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 5))
def test_failed_only_after_fail_after_errors_in_a_row(probes: list[bool], fail_after: int) -> None:
    watch = DiskWatch(("/a",), fail_after=fail_after, recover_after=1_000)
    run = longest = 0
    for ok in probes:
        change = watch.observe("/a", "d" if ok else None, None if ok else "EIO")
        run = 0 if ok else run + 1
        # It fails once, the first time a run of errors reaches fail_after, and stays failed.
        assert (change == "failed") == (run == fail_after and longest < fail_after)
        longest = max(longest, run)
    assert watch.disks["/a"].failed == (longest >= fail_after)


def test_ids_to_remove_covers_a_disk_whose_id_was_never_read() -> None:
    assert ids_to_remove({"d1"}, {"d2"}, False, ["d1", "d2", "d3"]) == {"d1"}
    assert ids_to_remove({"d1"}, {"d2"}, True, ["d1", "d2", "d3"]) == {"d1", "d3"}
    assert ids_to_remove(set(), {"d2"}, True, ["d2"]) == set()


# -- real edges --------------------------------------------------------------------------------


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _disk_up(port: int) -> dict[str, int]:
    """Root → edgefleet_edge_disk_up."""
    _, _, body = request(port, "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("edgefleet_edge_disk_up{"):
            labels = line[line.index("{") + 1 : line.index("}")]
            root = next(p.split("=", 1)[1].strip('"') for p in labels.split(",") if "root" in p)
            out[root] = int(float(line.split()[-1]))
    return out


def _split(edge: EdgeProcess, disk: int) -> tuple[set[str], set[str]]:
    """Move every other file onto disk 1 (the import put them all on the disk with the most
    free space, and test disks share one filesystem), then (ids on *disk*, ids elsewhere)."""
    index = ContentIndex(edge.root / "index")
    try:
        for cid in sorted(edge.records)[1::2]:
            rec = edge.records[cid]
            if rec.disk_id == edge.disks[1].disk_id:
                continue
            src = Path(edge.disks[0].path_of(rec.relpath))
            dst = Path(edge.disks[1].path_of(rec.relpath))
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            src.unlink()
            new = NewFile(
                cid,
                edge.disks[1].disk_id,
                rec.relpath,
                rec.size,
                rec.checksum,
                rec.content_type,
                rec.install_time,
            )
            edge.records[cid] = index.put(new)
    finally:
        index.close()
    lost = {c for c, r in edge.records.items() if r.disk_id == edge.disks[disk].disk_id}
    assert lost and lost != set(edge.records)
    return lost, set(edge.records) - lost


def _serves(edge: EdgeProcess, ids: set[str], status: int) -> bool:
    return all(request(edge.port, f"/c/{c}")[0] == status for c in ids)


def test_injected_io_errors_fail_one_disk_the_other_keeps_serving(tmp_path: Path) -> None:
    edge = EdgeProcess(tmp_path, FILES, tokens=False, disks=2, extra_config=FAST)
    lost, kept = _split(edge, 0)
    root0 = str(edge.disks[0].root)
    edge.start()
    try:
        assert _serves(edge, set(FILES), 200)
        (tmp_path / "run" / FAULT_FILE).write_text(edge.disks[0].disk_id + "\n")
        # Removed from the index: 404 (not 503: the file is simply not here any more).
        _until(lambda: _serves(edge, lost, 404), 20, "files of the failed disk gone")
        assert _serves(edge, kept, 200)
        # The keeper's status file (what /metrics reads) is rewritten once a second.
        up = {root0: 0, str(edge.disks[1].root): 1}
        _until(lambda: _disk_up(edge.port) == up, 10, "disk_up 0 for the failed disk")
        status = json.loads(keeper_file(tmp_path / "run").read_text())
        assert status["disk_files_removed"] == len(lost)
        assert [d["failed"] for d in status["disks"]] == [True, False]
        # The fault goes: after recover_after good probes the disk is up again (and empty).
        (tmp_path / "run" / FAULT_FILE).unlink()
        _until(lambda: _disk_up(edge.port)[root0] == 1, 20, "disk back up")
        assert _serves(edge, lost, 404) and _serves(edge, kept, 200)
    finally:
        assert edge.stop() == 0
    assert "FAILED (Input/output error (injected))" in edge.stderr()


def test_a_vanished_disk_leaves_the_heartbeat_inventory_and_fleet_view(tmp_path: Path) -> None:
    files = ControlFiles(tmp_path / "control", interval_s=0.3)
    control = ControlProcess(files).start()
    edge = EdgeProcess(
        tmp_path / "edge",
        FILES,
        tokens=False,
        disks=2,
        extra_config=(
            f'[control]\nurl = "http://127.0.0.1:{control.port}"\n'
            f'appliance = "lon1-a"\nsecret_file = "{files.secret_path}"\n{FAST}'
        ),
    )
    lost, kept = _split(edge, 1)
    disk1 = edge.disks[1]

    def me() -> dict[str, object]:
        status, _, body = control.call("GET", "/v1/appliances", role="admin")
        assert status == 200
        return next(a for a in body["appliances"] if a["name"] == "lon1-a")

    def fleet() -> tuple[int, set[str]]:
        status, _, body = control.call("GET", "/v1/fleet", role="admin")
        assert status == 200
        app = next(a for a in body["appliances"] if a["name"] == "lon1-a")
        return app["capacity_bytes"], set(body["inventories"].get("lon1-a", []))

    try:
        edge.start()
        _until(lambda: fleet()[1] == set(FILES), 20, "full inventory at control")
        capacity = fleet()[0]
        # The disk disappears (as when a drive drops off the bus): its root is gone.
        moved = disk1.root.with_name("gone")
        disk1.root.rename(moved)
        _until(lambda: fleet()[1] == kept, 20, "inventory without the failed disk's files")
        disks = me()["health"]["disks"]  # type: ignore[index]
        assert [(d["id"], d["failed"]) for d in disks] == [
            (edge.disks[0].disk_id, False),
            (disk1.disk_id, True),  # the id the keeper last read, not ""
        ]
        assert fleet()[0] == capacity // 2  # both disks are on one filesystem here
        assert _serves(edge, lost, 404) and _serves(edge, kept, 200)
    finally:
        edge.stop()
        control.stop()


def _mount(image: Path, where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    try:
        subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def test_a_real_filesystem_unmounted_under_the_edge(tmp_path: Path) -> None:
    """A loop-mounted ext4 disk, lazily unmounted while serving (skipped without root)."""
    mnt = tmp_path / "disk1"
    if not _mount(tmp_path / "disk1.img", mnt):
        pytest.skip("needs root and loop mounts")
    try:
        edge = EdgeProcess(tmp_path, FILES, tokens=False, disks=2, extra_config=FAST)
        lost, kept = _split(edge, 1)
        edge.start()
        try:
            assert _serves(edge, set(FILES), 200)
            subprocess.run(["umount", "-l", str(mnt)], check=True, timeout=30)
            _until(lambda: _serves(edge, lost, 404), 20, "files of the unmounted disk gone")
            assert _serves(edge, kept, 200)
            assert _disk_up(edge.port)[str(mnt)] == 0
        finally:
            edge.stop()
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=30)
