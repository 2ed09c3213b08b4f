"""Content disks: directory roots (each normally one SSD/NVMe mount), their ids and free space.

Each root holds a `.edgefleet-disk` file with a random id, written the first time the root is
used. The index records files by disk id, not by path, so disks may be remounted elsewhere or
listed in another order without losing their files. A disk whose id file cannot be read is
failed: its files answer 503 and the rest of the appliance keeps serving.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import xxhash

from edgefleet.models import is_content_id

DISK_ID_FILE = ".edgefleet-disk"
TMP_DIR = ".tmp"


@dataclass(frozen=True, slots=True)
class Disk:
    """One content disk: its stable id and where it is mounted now."""

    disk_id: str
    root: Path

    def free_bytes(self) -> int:
        """Bytes available to this process on the disk."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def total_bytes(self) -> int:
        """Size of the disk's filesystem."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize

    def path_of(self, relpath: str) -> str:
        """Absolute path of a file stored on this disk."""
        return os.path.join(self.root, relpath)


class DiskError(OSError):
    """A disk root is missing or unusable."""


def open_disk(root: str | Path, *, create: bool = False) -> Disk:
    """The disk at *root*; with *create*, make the root and its id file when missing."""
    root = Path(root)
    id_file = root / DISK_ID_FILE
    try:
        disk_id = id_file.read_text().strip()
    except FileNotFoundError:
        if not create:
            raise DiskError(f"{root}: not an edgefleet disk (no {DISK_ID_FILE})") from None
        disk_id = uuid.uuid4().hex[:16]
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f"{DISK_ID_FILE}.tmp"
            tmp.write_text(disk_id + "\n")
            os.replace(tmp, id_file)
        except OSError as exc:
            raise DiskError(f"{root}: cannot create disk: {exc.strerror}") from None
    except OSError as exc:
        raise DiskError(f"{root}: {exc.strerror}") from None
    if not disk_id.isalnum():
        raise DiskError(f"{root}: corrupt {DISK_ID_FILE}")
    return Disk(disk_id=disk_id, root=root)


def open_disks(roots: list[str] | tuple[str, ...], *, create: bool = False) -> dict[str, Disk]:
    """Disks by id; a root that cannot be opened is left out (the caller reports it failed)."""
    disks: dict[str, Disk] = {}
    for root in roots:
        try:
            disk = open_disk(root, create=create)
        except DiskError:
            if create:
                raise
            continue
        disks[disk.disk_id] = disk
    return disks


def choose_disk(disks: list[Disk], size: int, reserve_bytes: int = 0) -> Disk:
    """The disk with the most free space that can hold *size* bytes above its reserve."""
    best: Disk | None = None
    best_free = -1
    for disk in disks:
        try:
            free = disk.free_bytes() - reserve_bytes
        except OSError:
            continue
        if free >= size and free > best_free:
            best, best_free = disk, free
    if best is None:
        raise DiskError(f"no disk has {size} bytes free")
    return best


def relpath_for(content_id: str) -> str:
    """Where a content id is stored under a disk root: a hashed fan-out directory, then the id.

    256 fan-out directories keep directory sizes reasonable at millions of files.
    """
    # The id becomes a path here: refuse anything that could climb out of the disk root.
    if not is_content_id(content_id):
        raise ValueError(f"invalid content id {content_id!r}")
    return f"{xxhash.xxh3_64_hexdigest(content_id.encode())[:2]}/{content_id}"
