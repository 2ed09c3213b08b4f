"""Content disks: stable ids, failed roots, placement by free space, on-disk paths."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.disks import (
    DISK_ID_FILE,
    Disk,
    DiskError,
    choose_disk,
    open_disk,
    open_disks,
    relpath_for,
)
from edgefleet.models import CONTENT_ID_RE, is_content_id


def test_create_writes_an_id_that_persists(tmp_path: Path) -> None:
    root = tmp_path / "mnt" / "disk0"
    disk = open_disk(root, create=True)
    assert root.is_dir()
    assert disk.root == root
    assert disk.disk_id.isalnum()
    assert (root / DISK_ID_FILE).read_text().strip() == disk.disk_id
    assert not list(root.glob(f"{DISK_ID_FILE}.tmp"))
    # Reopened with or without create: the same id.
    assert open_disk(root) == disk
    assert open_disk(root, create=True) == disk


def test_id_follows_the_disk_when_it_moves(tmp_path: Path) -> None:
    disk = open_disk(tmp_path / "a", create=True)
    (tmp_path / "a").rename(tmp_path / "b")
    moved = open_disk(tmp_path / "b")
    assert moved.disk_id == disk.disk_id
    assert moved.root == tmp_path / "b"


def test_two_disks_get_different_ids(tmp_path: Path) -> None:
    assert open_disk(tmp_path / "a", create=True) != open_disk(tmp_path / "b", create=True)


def test_missing_root_without_create(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="not an edgefleet disk"):
        open_disk(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiskError, match="not an edgefleet disk"):
        open_disk(tmp_path / "empty")


@pytest.mark.parametrize("content", ["", "\n", "../../etc\n", "has space\n"])
def test_corrupt_id_file(tmp_path: Path, content: str) -> None:
    (tmp_path / DISK_ID_FILE).write_text(content)
    with pytest.raises(DiskError, match="corrupt"):
        open_disk(tmp_path)


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DiskError):
        open_disk(tmp_path / "file")
    with pytest.raises(DiskError):
        open_disk(tmp_path / "file", create=True)


def test_open_disks_skips_bad_roots(tmp_path: Path) -> None:
    good = [open_disk(tmp_path / f"good{i}", create=True) for i in range(2)]
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / DISK_ID_FILE).write_text("!!\n")
    (tmp_path / "file").write_text("x")
    roots = [
        str(tmp_path / "good0"),
        str(tmp_path / "absent"),
        str(tmp_path / "corrupt"),
        str(tmp_path / "file"),
        str(tmp_path / "good1"),
    ]
    disks = open_disks(roots)
    assert disks == {d.disk_id: d for d in good}
    assert not (tmp_path / "absent").exists()  # never created without create=True


def test_open_disks_with_create_makes_missing_roots_and_fails_on_bad_ones(tmp_path: Path) -> None:
    disks = open_disks((str(tmp_path / "new0"), str(tmp_path / "new1")), create=True)
    assert sorted(d.root.name for d in disks.values()) == ["new0", "new1"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DiskError):
        open_disks([str(tmp_path / "new0"), str(tmp_path / "file")], create=True)


def test_free_and_total_bytes_of_a_real_disk(tmp_path: Path) -> None:
    disk = open_disk(tmp_path, create=True)
    st_ = os.statvfs(tmp_path)
    assert 0 <= disk.free_bytes() <= disk.total_bytes() == st_.f_blocks * st_.f_frsize
    assert disk.path_of("ab/x.mp4") == str(tmp_path / "ab" / "x.mp4")


# -- choose_disk --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SizedDisk(Disk):
    """A disk whose free space is fixed, as if it were a mount of that size."""

    free: int

    def free_bytes(self) -> int:
        return self.free


def sized(tmp_path: Path, name: str, free: int) -> SizedDisk:
    real = open_disk(tmp_path / name, create=True)
    return SizedDisk(disk_id=real.disk_id, root=real.root, free=free)


def test_choose_disk_prefers_the_most_free_space(tmp_path: Path) -> None:
    small, big, mid = (
        sized(tmp_path, "s", 100),
        sized(tmp_path, "b", 1000),
        sized(tmp_path, "m", 500),
    )
    assert choose_disk([small, big, mid], 10) == big
    assert choose_disk([small, mid], 10) == mid
    assert choose_disk([small, big, mid], 1000) == big  # exactly fits


def test_choose_disk_honours_the_reserve(tmp_path: Path) -> None:
    small, big = sized(tmp_path, "s", 100), sized(tmp_path, "b", 1000)
    assert choose_disk([small, big], 900, reserve_bytes=100) == big
    with pytest.raises(DiskError, match="no disk has 901 bytes free"):
        choose_disk([small, big], 901, reserve_bytes=100)


def test_choose_disk_raises_when_nothing_fits(tmp_path: Path) -> None:
    disk = open_disk(tmp_path / "d", create=True)
    with pytest.raises(DiskError, match="bytes free"):
        choose_disk([disk], disk.total_bytes() + 1)
    with pytest.raises(DiskError):
        choose_disk([], 0)


def test_choose_disk_skips_a_disk_that_has_gone(tmp_path: Path) -> None:
    gone = open_disk(tmp_path / "gone", create=True)
    here = open_disk(tmp_path / "here", create=True)
    shutil.rmtree(gone.root)
    assert choose_disk([gone, here], 1) == here
    with pytest.raises(DiskError):
        choose_disk([gone], 1)


# -- relpath_for ----------------------------------------------------------------------------------


@given(st.from_regex(CONTENT_ID_RE, fullmatch=True))
def test_relpath_stays_inside_the_disk_root(content_id: str) -> None:
    rel = relpath_for(content_id)
    parts = PurePosixPath(rel).parts
    assert not rel.startswith("/")
    assert ".." not in parts
    assert "." not in parts
    assert len(parts) == 2
    assert parts[1] == content_id
    assert len(parts[0]) == 2
    assert int(parts[0], 16) in range(256)
    assert os.path.normpath(os.path.join("/root", rel)).startswith("/root/")
    assert relpath_for(content_id) == rel  # stable


@given(st.text(max_size=40))
def test_relpath_refuses_anything_that_is_not_a_content_id(text: str) -> None:
    if is_content_id(text):
        assert PurePosixPath(relpath_for(text)).parts[1] == text
    else:
        with pytest.raises(ValueError, match="invalid content id"):
            relpath_for(text)


@pytest.mark.parametrize("bad", ["..", "../x", "/etc/passwd", "a/../../b", ".x", ""])
def test_relpath_refuses_path_traversal(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid content id"):
        relpath_for(bad)


def test_relpath_fans_out() -> None:
    dirs = {relpath_for(f"seg{i}.m4s").split("/")[0] for i in range(2000)}
    assert len(dirs) > 200
