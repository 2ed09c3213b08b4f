"""Downloads (fill/agent/fetch.py) from real edge servers on loopback into a real index and disks."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from edge.disks import open_disk
from edge.index import ContentIndex
from edgefleet.manifests import ManifestFile
from edgefleet.tokens import Keyring
from fill.agent import decisions as agent
from fill.agent.fetch import Fetcher, Outcome, RateLimit
from fill.agent.install import Installer, temp_name
from tests.edge.edgeproc import EdgeProcess
from tests.fill.agent.fillproc import checksum, edge_with_keyring, shared_keyring

FILES = {f"f{i}.mp4": os.urandom(200_000 + i * 1000) for i in range(3)}


@pytest.fixture
def keyring() -> Keyring:
    return shared_keyring()


@pytest.fixture
def edges(tmp_path: Path) -> Iterator[list[EdgeProcess]]:
    started: list[EdgeProcess] = []
    yield started
    for e in started:
        e.stop()


def start_edge(
    tmp_path: Path, name: str, keyring: Keyring, started: list[EdgeProcess], files: dict[str, bytes]
) -> EdgeProcess:
    # No scrub on sources: these tests corrupt a source's file on purpose, and a scrub that
    # quarantines it first would hide the agent's own checksum check (tested in test_scrub).
    edge = edge_with_keyring(
        tmp_path / name, files, keyring, extra_config="[scrub]\nenabled = false\n"
    ).start()
    started.append(edge)
    return edge


@pytest.fixture
def installer(tmp_path: Path) -> Iterator[Installer]:
    disks = [open_disk(tmp_path / "target" / f"disk{i}", create=True) for i in range(2)]
    inst = Installer(ContentIndex(tmp_path / "target" / "index"), disks)
    yield inst
    inst.index.close()


def mfile(cid: str, sources: tuple[str, ...] = ("peer", "origin")) -> ManifestFile:
    return ManifestFile(cid, len(FILES[cid]), checksum(FILES[cid]), sources)


async def fetch_all(
    installer: Installer,
    keyring: Keyring,
    jobs: list[tuple[ManifestFile, list[agent.Source], agent.TempFile | None]],
    *,
    rate: float = 0.0,
    parallel: int = 1,
    timeout_s: float = 5.0,
    misses: dict[str, int] | None = None,
) -> tuple[list[Outcome], dict[str, int], int]:
    """Run the fetcher over *jobs*: (outcomes, errors by source, bytes received); 404s are
    counted in *misses* when given."""
    errors: dict[str, int] = {}
    received = [0]
    missed = misses if misses is not None else {}

    def on_miss(source: str) -> None:
        missed[source] = missed.get(source, 0) + 1

    def on_error(source: str, why: str) -> None:
        errors[source] = errors.get(source, 0) + 1

    def on_bytes(n: int) -> None:
        received[0] += n

    disk = ThreadPoolExecutor(1)
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(
                session,
                installer,
                disk,
                keyring,
                rate=RateLimit(rate) if rate else None,
                timeout_s=timeout_s,
                on_bytes=on_bytes,
                on_error=on_error,
                on_miss=on_miss,
            )
            sem = asyncio.Semaphore(parallel)

            async def one(
                job: tuple[ManifestFile, list[agent.Source], agent.TempFile | None],
            ) -> Outcome:
                async with sem:
                    return await fetcher.fetch(*job)

            outcomes = await asyncio.gather(*(one(j) for j in jobs))
    finally:
        disk.shutdown(wait=True)
    return list(outcomes), errors, received[0]


def installed(installer: Installer, cid: str) -> bytes:
    rec = installer.index.get(cid)
    assert rec is not None, cid
    assert rec.checksum == checksum(FILES[cid])
    return Path(installer.disks[rec.disk_id].path_of(rec.relpath)).read_bytes()


def src(name: str, edge: EdgeProcess) -> agent.Source:
    return agent.Source(name, f"http://127.0.0.1:{edge.port}")


def test_peer_down_escalates_to_origin(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    peer = start_edge(tmp_path, "peer", keyring, edges, FILES)
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    dead = src("peer", peer)
    peer.stop()  # the peer's port now refuses connections
    edges.remove(peer)
    jobs = [(mfile(cid), [dead, src("origin", origin)], None) for cid in FILES]
    outcomes, errors, _ = asyncio.run(fetch_all(installer, keyring, jobs))
    assert [o.source for o in outcomes] == ["origin"] * len(FILES)
    assert errors == {"peer": len(FILES)}
    for cid, data in FILES.items():
        assert installed(installer, cid) == data


def test_a_peer_without_the_file_yet_is_a_miss_not_an_error(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    """Peers fill in parallel: a 404 from one is normal, and is told apart from failures."""
    peer = start_edge(tmp_path, "peer", keyring, edges, {})
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    jobs = [(mfile(cid), [src("peer", peer), src("origin", origin)], None) for cid in FILES]
    misses: dict[str, int] = {}
    outcomes, errors, _ = asyncio.run(fetch_all(installer, keyring, jobs, misses=misses))
    assert [o.source for o in outcomes] == ["origin"] * len(FILES)
    assert errors == {}
    assert misses == {"peer": len(FILES)}


def test_corrupted_source_fails_its_checksum_and_is_never_installed(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    peer = start_edge(tmp_path, "peer", keyring, edges, FILES)
    # The peer's copy is altered on disk after import: same size, other bytes.
    rec = peer.records["f0.mp4"]
    path = peer.disks[0].path_of(rec.relpath)
    with open(path, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 64)
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    job = (mfile("f0.mp4"), [src("peer", peer), src("origin", origin)], None)
    [outcome], errors, received = asyncio.run(fetch_all(installer, keyring, [job]))
    assert outcome.ok and outcome.source == "origin"
    assert errors == {"peer": 1}
    assert received == 2 * len(FILES["f0.mp4"])  # the bad copy was thrown away whole
    assert installed(installer, "f0.mp4") == FILES["f0.mp4"]


def test_only_corrupted_sources_fail_the_file_and_install_nothing(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    peer = start_edge(tmp_path, "peer", keyring, edges, FILES)
    rec = peer.records["f1.mp4"]
    with open(peer.disks[0].path_of(rec.relpath), "r+b") as fh:
        fh.write(b"garbage")
    job = (mfile("f1.mp4", ("peer",)), [src("peer", peer)], None)
    [outcome], errors, _ = asyncio.run(fetch_all(installer, keyring, [job]))
    assert not outcome.ok
    assert errors == {"peer": 1}
    assert "checksum" in outcome.detail
    assert installer.index.get("f1.mp4") is None
    assert not [p for d in installer.disks.values() for p in d.root.glob("*/f1.mp4")]


def test_partial_file_is_resumed_with_a_range_request(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    f = mfile("f2.mp4", ("origin",))
    disk = next(iter(installer.disks.values()))
    tmp = disk.root / ".tmp" / temp_name(f.content_id, f.checksum)
    tmp.parent.mkdir(exist_ok=True)
    half = len(FILES["f2.mp4"]) // 2
    tmp.write_bytes(FILES["f2.mp4"][:half])
    resume = agent.TempFile(disk.disk_id, str(tmp), f.content_id, f.checksum, 0.0)
    [outcome], _errors, received = asyncio.run(
        fetch_all(installer, keyring, [(f, [src("origin", origin)], resume)])
    )
    assert outcome.ok
    assert received == len(FILES["f2.mp4"]) - half  # only the rest crossed the wire
    assert installed(installer, "f2.mp4") == FILES["f2.mp4"]
    assert not tmp.exists()


def test_bad_resume_bytes_are_refetched_whole_from_the_same_source(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    f = mfile("f0.mp4", ("origin",))
    disk = next(iter(installer.disks.values()))
    tmp = disk.root / ".tmp" / temp_name(f.content_id, f.checksum)
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"\xff" * 1000)  # a partial file from a bad source
    resume = agent.TempFile(disk.disk_id, str(tmp), f.content_id, f.checksum, 0.0)
    [outcome], errors, _ = asyncio.run(
        fetch_all(installer, keyring, [(f, [src("origin", origin)], resume)])
    )
    assert outcome.ok
    assert errors == {"origin": 1}
    assert installed(installer, "f0.mp4") == FILES["f0.mp4"]


def test_wrong_size_in_the_manifest_is_a_source_error(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    f = ManifestFile("f0.mp4", 1000, checksum(FILES["f0.mp4"]), ("origin",))
    [outcome], errors, _ = asyncio.run(
        fetch_all(installer, keyring, [(f, [src("origin", origin)], None)])
    )
    assert not outcome.ok
    assert "wrong length" in outcome.detail
    assert errors == {"origin": 1}


def test_failed_disk_is_skipped_and_the_file_lands_on_another(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    f = mfile("f1.mp4", ("origin",))
    full = next(iter(installer.disks.values()))
    (full.root / ".tmp").mkdir(exist_ok=True)
    dev_full = full.root / ".tmp" / temp_name(f.content_id, f.checksum)
    dev_full.symlink_to("/dev/full")  # every write fails with ENOSPC
    resume = agent.TempFile(full.disk_id, str(dev_full), f.content_id, f.checksum, 0.0)
    [outcome], _, _ = asyncio.run(
        fetch_all(installer, keyring, [(f, [src("origin", origin)], resume)])
    )
    assert outcome.ok, outcome.detail
    assert full.disk_id in installer.skipped
    rec = installer.index.get("f1.mp4")
    assert rec is not None and rec.disk_id != full.disk_id
    assert installed(installer, "f1.mp4") == FILES["f1.mp4"]


def test_rate_cap_is_shared_by_parallel_downloads(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    big = {f"r{i}.mp4": os.urandom(4_000_000) for i in range(4)}
    origin = start_edge(tmp_path, "origin", keyring, edges, big)
    cap = 3_000_000.0  # bytes/s: 16 MB in about 5 s
    jobs = [
        (ManifestFile(cid, len(d), checksum(d), ("origin",)), [src("origin", origin)], None)
        for cid, d in big.items()
    ]
    t0 = time.monotonic()
    outcomes, _, received = asyncio.run(fetch_all(installer, keyring, jobs, rate=cap, parallel=4))
    elapsed = time.monotonic() - t0
    assert all(o.ok for o in outcomes)
    burst = RateLimit(cap).bucket.burst
    measured = (received - burst) / elapsed
    assert 0.9 * cap <= measured <= 1.1 * cap, (measured, elapsed)


def test_silent_source_times_out_and_the_next_one_serves(
    tmp_path: Path, keyring: Keyring, edges: list[EdgeProcess], installer: Installer
) -> None:
    origin = start_edge(tmp_path, "origin", keyring, edges, FILES)
    # A peer that accepts connections (the kernel's backlog) and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        peer = agent.Source("peer", f"http://127.0.0.1:{silent.getsockname()[1]}")
        job = (mfile("f0.mp4"), [peer, src("origin", origin)], None)
        [outcome], errors, _ = asyncio.run(fetch_all(installer, keyring, [job], timeout_s=1.0))
    assert outcome.ok and outcome.source == "origin"
    assert errors == {"peer": 1}
    assert installed(installer, "f0.mp4") == FILES["f0.mp4"]
