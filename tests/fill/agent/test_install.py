"""The fill agent's disk and index side (fill/agent/install.py) on real LMDB files and directories."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.disks import DiskError, open_disk, relpath_for
from edge.index import ContentIndex
from edgefleet.manifests import ManifestFile
from fill.agent import decisions as agent
from fill.agent.install import DiskTrouble, Installer, parse_temp_name, temp_name
from tests.edge.replacing import serve_while_replacing
from tests.fill.agent.fillproc import checksum

DATA = os.urandom(300_000)
FILE = ManifestFile("a.mp4", len(DATA), checksum(DATA), ("src",))


@pytest.fixture
def installer(tmp_path: Path) -> Iterator[Installer]:
    disks = [open_disk(tmp_path / f"disk{i}", create=True) for i in range(2)]
    inst = Installer(ContentIndex(tmp_path / "index"), disks, grace_s=60.0)
    yield inst
    inst.index.close()


def install(inst: Installer, f: ManifestFile = FILE, data: bytes = DATA) -> Path:
    part = inst.open_part(f, None)
    part.write(data)
    assert part.digest() == f.checksum
    record = inst.install(part)
    return Path(inst.disks[record.disk_id].path_of(record.relpath))


def test_temp_names_round_trip() -> None:
    name = temp_name("a.b-c.mp4", checksum(b"x"))
    assert parse_temp_name(name) == ("a.b-c.mp4", checksum(b"x"))
    assert parse_temp_name("a.mp4.1234.part") is None  # the importer's
    assert parse_temp_name("fill-a.mp4.short.part") is None


def test_install_is_temp_then_rename_then_index(installer: Installer) -> None:
    path = install(installer)
    assert path.read_bytes() == DATA
    rec = installer.index.get("a.mp4")
    assert rec is not None
    assert rec.checksum == FILE.checksum
    assert rec.relpath == relpath_for("a.mp4")
    assert rec.content_type == "video/mp4"
    assert not list(path.parent.parent.glob(".tmp/*"))


def test_partial_file_resumes_with_its_hash(installer: Installer) -> None:
    part = installer.open_part(FILE, None)
    part.write(DATA[:1000])
    part.close()
    disk_id = part.disk.disk_id
    resume = agent.TempFile(disk_id, str(part.path), "a.mp4", FILE.checksum, 0.0)
    again = installer.open_part(FILE, resume)
    assert again.path == part.path
    assert again.written == 1000
    again.write(DATA[1000:])
    assert again.digest() == FILE.checksum
    installer.install(again)
    assert installer.index.get("a.mp4") is not None


def test_partial_file_longer_than_the_file_starts_over(installer: Installer) -> None:
    part = installer.open_part(FILE, None)
    part.write(DATA + b"extra")
    part.close()
    again = installer.open_part(FILE, None)
    assert again.written == 0
    again.close()


def test_delete_leaves_the_index_at_once_and_the_disk_after_the_grace(
    installer: Installer,
) -> None:
    path = install(installer)
    now = time.time()
    assert installer.delete("a.mp4", now) is not None
    assert installer.index.get("a.mp4") is None
    assert path.exists()
    # The pending list is durable: a new agent process sees it.
    fresh = Installer(installer.index, list(installer.disks.values()), grace_s=60.0)
    assert fresh.pending_keys() == {(installer.index.get("a.mp4") or _rec(path, installer))}
    assert fresh.run_due(now + 59) == 0
    assert path.exists()
    assert fresh.run_due(now + 61) == 1
    assert not path.exists()
    assert fresh.pending == []


def _rec(path: Path, inst: Installer) -> tuple[str, str]:
    for disk in inst.disks.values():
        if path.is_relative_to(disk.root):
            return disk.disk_id, str(path.relative_to(disk.root))
    raise AssertionError(path)


def test_a_file_listed_again_during_its_grace_is_kept(installer: Installer) -> None:
    path = install(installer)
    now = time.time()
    installer.delete("a.mp4", now)
    install(installer)  # re-added (lands on whichever disk has most room)
    installer.run_due(now + 61)
    rec = installer.index.get("a.mp4")
    assert rec is not None
    assert Path(installer.disks[rec.disk_id].path_of(rec.relpath)).read_bytes() == DATA
    if _rec(path, installer) != (rec.disk_id, rec.relpath):
        assert not path.exists()


def test_refetch_at_the_same_path_replaces_the_record(installer: Installer) -> None:
    install(installer)
    new = b"new content" * 100
    f2 = ManifestFile("a.mp4", len(new), checksum(new), ())
    path = install(installer, f2, new)
    rec = installer.index.get("a.mp4")
    assert rec is not None
    assert rec.checksum == f2.checksum
    assert path.read_bytes() == new


def test_reconcile_apply_drops_torn_records_and_orphans(installer: Installer) -> None:
    path = install(installer)
    other = ManifestFile("b.mp4", 5, checksum(b"bbbbb"), ())
    orphan = install(installer, other, b"bbbbb")
    installer.index.delete("b.mp4")  # as if killed between rename and index commit
    with open(path, "r+b") as fh:
        fh.truncate(10)  # as if torn
    lost = next(iter(installer.disks.values())).root / "lost+found"
    lost.mkdir()
    (lost / "#1234").write_bytes(b"fsck's")  # not a fan-out directory: never touched
    stray = installer.open_part(ManifestFile("c.mp4", 9, "0" * 32, ()), None)
    stray.write(b"123")
    stray.close()
    records = installer.reconcile_inputs()
    on_disk, temps = installer.scan()
    plan = agent.reconcile(
        records,
        on_disk,
        temps,
        live_disks=set(installer.disks),
        pending=installer.pending_keys(),
        wanted={},
        run_started=time.time() + 1,
    )
    installer.apply(plan)
    assert installer.index.get("a.mp4") is None
    assert not orphan.exists()
    assert not stray.path.exists()
    assert path.exists()  # the dropped record's file goes next run, as an orphan
    assert (lost / "#1234").exists()


def test_no_disk_with_room_is_a_disk_error(installer: Installer) -> None:
    installer.reserve_bytes = 1 << 62
    with pytest.raises(DiskError, match="no disk has"):
        installer.open_part(FILE, None)


def test_a_failed_disk_raises_disk_trouble_and_is_skipped(installer: Installer) -> None:
    bad = next(iter(installer.disks.values()))
    (bad.root / ".tmp").rmdir() if (bad.root / ".tmp").exists() else None
    (bad.root / ".tmp").write_text("not a directory")  # the disk's temp dir is broken
    resume = agent.TempFile(bad.disk_id, "", "a.mp4", FILE.checksum, 0.0)
    with pytest.raises(DiskTrouble) as info:
        installer.open_part(FILE, resume)
    installer.skip_disk(info.value.disk, str(info.value))
    assert [d.disk_id for d in installer.usable_disks()] != [bad.disk_id]
    part = installer.open_part(FILE, resume)  # goes to the other disk
    assert part.disk.disk_id != bad.disk_id
    part.discard()


def test_a_full_disk_write_raises_disk_trouble(installer: Installer) -> None:
    disk = next(iter(installer.disks.values()))
    (disk.root / ".tmp").mkdir(exist_ok=True)
    target = disk.root / ".tmp" / temp_name(FILE.content_id, FILE.checksum)
    target.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    resume = agent.TempFile(disk.disk_id, str(target), "a.mp4", FILE.checksum, 0.0)
    part = installer.open_part(FILE, resume)
    with pytest.raises(DiskTrouble, match="space"):
        part.write(DATA)
    part.close()
    target.unlink()


def test_a_refetch_with_other_content_never_serves_old_record_with_new_bytes(
    tmp_path: Path,
) -> None:
    """The guard of edge.store.place_file, through the agent: a reader in another process
    checks every byte it serves against the record it served them under."""
    disk = open_disk(tmp_path / "disk", create=True)  # one disk: every re-fetch replaces the path
    inst = Installer(ContentIndex(tmp_path / "index"), [disk], grace_s=60.0)
    versions = [os.urandom(64 << 10), os.urandom(64 << 10)]

    def refetch(data: bytes) -> None:
        install(inst, ManifestFile("a.mp4", len(data), checksum(data), ("src",)), data)

    try:
        refetch(versions[0])
        counts = serve_while_replacing(tmp_path, inst.index.path, disk, "a.mp4", versions, refetch)
    finally:
        inst.index.close()
    assert counts["mismatch"] == 0, counts
    assert set(counts["served"]) == {checksum(v) for v in versions}, counts
    assert inst.pending == []  # same path: nothing left for the grace period
