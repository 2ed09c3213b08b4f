"""A live edge while a file it serves is re-imported at the same path: every 200 carries the
bytes its ETag names, even on a cache miss right after the replacement, while the worker's
view of the index (refreshed once a second) still holds the old record (edge/fdcache.py,
`FdCache._open_current`, and edge/store.py's guard)."""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from pathlib import Path

import pytest
import xxhash

from edge.importer import import_directory
from edge.index import ContentIndex
from tests.edge.edgeproc import EdgeProcess, request

pytestmark = pytest.mark.slow


def test_a_replaced_file_is_never_served_under_its_old_etag(tmp_path: Path) -> None:
    # Same size (the size check cannot tell them apart) and another size (not a torn file).
    versions = [os.urandom(32 << 10), os.urandom(32 << 10), os.urandom(40 << 10)]
    etags = {f'"{xxhash.xxh3_128(v).hexdigest()}"': i for i, v in enumerate(versions)}
    # One cached descriptor: alternating two files makes every request a cache miss.
    edge = EdgeProcess(
        tmp_path / "edge",
        {"a.bin": versions[0], "b.bin": os.urandom(1000)},
        extra_config="fd_cache_size = 1",
    ).start()
    stop = threading.Event()

    def replace() -> None:
        src = tmp_path / "src"
        src.mkdir()
        index = ContentIndex(edge.root / "index")
        try:
            i = 0
            while not stop.is_set():
                i += 1
                (src / "a.bin").write_bytes(versions[i % 3])
                import_directory(src, index, edge.disks, progress_out=io.StringIO())
        finally:
            index.close()

    replacer = threading.Thread(target=replace)
    replacer.start()
    served: Counter[str] = Counter()
    try:
        for _ in range(300):
            status, headers, body = request(edge.port, edge.url("a.bin"))
            request(edge.port, edge.url("b.bin"))  # evicts a.bin's descriptor
            served[str(status)] += 1
            if status == 200:
                version = etags[headers["etag"]]
                assert body == versions[version], "bytes that are not the ETag's version"
                served[f"v{version}"] += 1
            else:  # between the guard's delete and the new record, or replaced mid-open
                assert status == 404 or (status, body) == (
                    503,
                    b"content unavailable (replaced)\n",
                ), (status, body)
    finally:
        stop.set()
        replacer.join(30)
        edge.stop()
    # Both versions were really served while they were being swapped.
    assert served["v0"] and served["v1"] and served["v2"], served
