"""Downloads for the fill agent: one file from the first source that delivers it intact.

For each file the sources are tried in `fill.agent.source_order`; a source is abandoned for
the next one on a connection error, a timeout (no byte for `timeout_s`), an unexpected status,
a wrong length or a checksum mismatch. A partial file left by an error is resumed from the next
source with `Range: bytes=N-` (the checksum names the content, whoever serves it); one that
fails its checksum is thrown away, since nothing says which bytes are bad — when it had been
resumed, the same source is asked once more for the whole file before moving on.

Every byte passes one `RateLimit` shared by all parallel downloads. Disk writes (hashed as
they are written) run in order in one disk thread; installs (fsync, rename, index commit) in
another, so one file's fsync does not stall the others' writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from edge.store import DiskError
from edgefleet.manifests import ManifestFile
from edgefleet.tokens import Keyring, signed_query
from fill.agent.decisions import Source, TempFile, TokenBucket, resume_offset
from fill.agent.install import DiskTrouble, Installer, PartFile

log = logging.getLogger("edgefleet.fill")
WRITE_BYTES = 1 << 20  # bytes gathered before one write+hash call in the disk thread
T = TypeVar("T")


class RateLimit:
    """The asyncio face of one `TokenBucket` shared by every download."""

    def __init__(self, rate_bytes_per_s: float) -> None:
        # A small burst keeps the rate steady over a second; 64 KiB floor for tiny caps.
        burst = max(rate_bytes_per_s * 0.05, 65536.0)
        self.bucket = TokenBucket(rate_bytes_per_s, burst, time.monotonic())

    async def take(self, n: int) -> None:
        """Wait until *n* more bytes may be received."""
        wait = self.bucket.take(n, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)


class SourceError(Exception):
    """A source answered, but not with the file asked for."""


class SourceMiss(SourceError):
    """The source does not hold the file (404): a peer that has not fetched it yet tonight.
    Normal while a site fills in parallel, so it is counted apart from errors."""


@dataclass
class Outcome:
    """How one file's fetch ended."""

    ok: bool
    source: str = ""
    detail: str = ""
    disk_trouble: bool = False


class Fetcher:
    """Downloads manifest files onto the appliance's disks (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        installer: Installer,
        disk_thread: Executor,
        keyring: Keyring,
        *,
        rate: RateLimit | None,
        timeout_s: float,
        url_ttl_s: int = 300,
        on_bytes: Callable[[int], None] = lambda n: None,
        on_error: Callable[[str, str], None] = lambda source, why: None,
        on_miss: Callable[[str], None] = lambda source: None,
        install_thread: Executor | None = None,
    ) -> None:
        self.session = session
        self.installer = installer
        self.disk_thread = disk_thread
        # fsync + rename + index commit of finished files: on their own thread, a file's fsync
        # does not hold up the writes of the downloads still running.
        self.install_thread = install_thread or disk_thread
        self.keyring = keyring
        self.rate = rate
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self.url_ttl_s = url_ttl_s
        self.on_bytes = on_bytes
        self.on_error = on_error
        self.on_miss = on_miss
        self.in_flight: dict[str, PartFile] = {}  # content id → its open partial file

    async def _disk(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.disk_thread, fn, *args)

    def _submit(self, fn: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        """Start *fn* in the disk thread without waiting; an outcome nobody awaits (the task
        was cancelled at the window's end) is still retrieved, so it is not reported as lost."""
        fut = asyncio.get_running_loop().run_in_executor(self.disk_thread, fn, *args)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        return fut

    def url(self, source: Source, content_id: str) -> str:
        """`{source}/c/{id}` signed with the appliance's keyring: short expiry, no binding."""
        expiry = int(time.time()) + self.url_ttl_s
        return f"{source.base_url}/c/{content_id}?{signed_query(self.keyring, content_id, expiry)}"

    async def fetch(
        self, file: ManifestFile, sources: list[Source], resume: TempFile | None
    ) -> Outcome:
        """Download, verify and install *file*; DiskTrouble moves on to another disk."""
        if not sources:
            return Outcome(False, detail="no source with a URL")
        tried_disks = 0
        while True:
            try:
                part = await self._disk(self.installer.open_part, file, resume)
            except DiskError as exc:
                return Outcome(False, detail=str(exc), disk_trouble=True)
            except DiskTrouble as exc:
                self.installer.skip_disk(exc.disk, str(exc))
                resume = None
                continue
            try:
                return await self._from_sources(file, sources, part)
            except DiskTrouble as exc:
                self.installer.skip_disk(exc.disk, str(exc))
                await self._disk(part.discard)
                resume = None
                tried_disks += 1
                if tried_disks >= len(self.installer.disks):
                    return Outcome(False, detail=str(exc), disk_trouble=True)

    async def _from_sources(
        self, file: ManifestFile, sources: list[Source], part: PartFile
    ) -> Outcome:
        cid = file.content_id
        self.in_flight[cid] = part
        done = False
        try:
            last = ""
            for source in sources:
                retry_whole = True
                while True:
                    resumed_from = part.written
                    try:
                        await self._download(source, file, part)
                    except SourceMiss:
                        last = f"{source.name}: not there (404)"
                        log.info("fill: %s not at %s yet, trying the next source", cid, source.name)
                        self.on_miss(source.name)
                        break
                    except (aiohttp.ClientError, TimeoutError, SourceError) as exc:
                        last = f"{source.name}: {_describe(exc)}"
                        self._error(source.name, cid, _describe(exc))
                        break  # keep the partial file: the next source resumes it
                    if part.digest() == file.checksum:
                        loop = asyncio.get_running_loop()
                        await loop.run_in_executor(
                            self.install_thread, self.installer.install, part
                        )
                        done = True
                        return Outcome(True, source=source.name)
                    last = f"{source.name}: checksum mismatch"
                    self._error(source.name, cid, "checksum mismatch")
                    await self._disk(part.restart)
                    if resumed_from > 0 and retry_whole:
                        retry_whole = False  # the bad bytes may be the earlier source's
                        continue
                    break
            return Outcome(False, detail=f"every source failed (last: {last})")
        finally:
            self.in_flight.pop(cid, None)
            if not done:
                # Queued behind any write still running in the disk thread (also when this
                # task is cancelled at the window's end): the bytes stay for a resume.
                asyncio.get_running_loop().run_in_executor(self.disk_thread, part.close)

    def _error(self, source: str, cid: str, why: str) -> None:
        log.warning("fill: %s from %s: %s", cid, source, why)
        self.on_error(source, why)

    async def _download(self, source: Source, file: ManifestFile, part: PartFile) -> None:
        """One request; returns with the whole file written to *part* (checksum unchecked)."""
        size = file.size
        offset = part.written
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.session.get(
            self.url(source, file.content_id), headers=headers, timeout=self.timeout
        ) as resp:
            if offset:
                start = resume_offset(resp.status, resp.headers.get("Content-Range"), offset, size)
            else:
                start = 0 if resp.status == 200 else None
            if start is None:
                if resp.status == 404:
                    raise SourceMiss("HTTP 404")
                raise SourceError(f"HTTP {resp.status} {resp.reason or ''}".strip())
            if start == 0 and offset:
                await self._disk(part.restart)  # a 200 to a Range request: the whole file
            if resp.content_length is not None and resp.content_length != size - start:
                raise SourceError(
                    f"wrong length: {resp.content_length} bytes, expected {size - start}"
                )
            got = start
            chunks: list[bytes] = []
            held = 0  # bytes in *chunks*
            # Double buffering: the disk thread writes one batch while the next arrives, so
            # the socket keeps being read (a stalled reader stalls the sender).
            writing: asyncio.Future[None] | None = None
            try:
                async for chunk in resp.content.iter_any():
                    got += len(chunk)
                    if got > size:
                        raise SourceError(f"longer than the manifest's {size} bytes")
                    if self.rate is not None:
                        await self.rate.take(len(chunk))
                    chunks.append(chunk)
                    held += len(chunk)
                    self.on_bytes(len(chunk))
                    if held >= WRITE_BYTES:
                        if writing is not None:
                            await writing
                        writing = self._submit(part.write_all, chunks)
                        chunks, held = [], 0
            except (aiohttp.ClientError, TimeoutError):
                # What arrived before the cut is kept for the resume.
                if writing is not None:
                    await writing
                if chunks:
                    await self._disk(part.write_all, chunks)
                raise
            if writing is not None:
                await writing
            if chunks:
                await self._disk(part.write_all, chunks)
            if part.written != size:
                raise SourceError(f"short body: {part.written} of {size} bytes")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
