"""A reader that checks every byte it serves while a file is replaced under it (for the guard of
edge.store.place_file, through `edge import` and through the fill agent)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.disks import Disk

# A reader as a server worker would be, in its own process: read the record, open its path,
# read the record again and serve only if it did not change meanwhile (an open descriptor keeps
# the bytes it opened); every byte served is checked against the record it was served under.
READER = """
import json, os, sys
import xxhash
from edge.disks import open_disk
from edge.index import ContentIndex

index = ContentIndex(sys.argv[1], readonly=True)
disk = open_disk(sys.argv[2])
cid, stop = sys.argv[3], sys.argv[4]
counts = {"served": {}, "mismatch": 0, "absent": 0, "changed": 0}
print("ready", flush=True)
while not os.path.exists(stop):
    rec = index.get(cid)
    if rec is None:
        counts["absent"] += 1
        continue
    try:
        fd = os.open(disk.path_of(rec.relpath), os.O_RDONLY)
    except FileNotFoundError:
        counts["absent"] += 1
        continue
    try:
        again = index.get(cid)
        if again is None or again.generation != rec.generation:
            counts["changed"] += 1
            continue
        data = os.pread(fd, rec.size + 1, 0)
    finally:
        os.close(fd)
    if len(data) != rec.size or xxhash.xxh3_128(data).hexdigest() != rec.checksum:
        counts["mismatch"] += 1
    else:
        counts["served"][rec.checksum] = counts["served"].get(rec.checksum, 0) + 1
print(json.dumps(counts), flush=True)
"""


def serve_while_replacing(
    tmp_path: Path,
    index_path: Path,
    disk: Disk,
    cid: str,
    versions: list[bytes],
    write: Callable[[bytes], None],
    rounds: int = 300,
) -> dict[str, Any]:
    """Run READER against *cid* while *write* replaces its content *rounds* times, alternating
    *versions* (the first must be installed already); the reader's counts."""
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(index_path), str(disk.root), cid, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "ready\n"
        for i in range(rounds):
            write(versions[(i + 1) % len(versions)])
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    counts: dict[str, Any] = json.loads(out)
    return counts
