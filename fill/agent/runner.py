"""One fill run (`edgefleet fill run`): manifest, reconcile, deletes, downloads, summary.

    1. the manifest: from control (`GET /v1/appliances/{name}/manifest`) or a file;
    2. reconcile index and disks (a previous run may have been killed at any instant);
    3. deletes: files the manifest dropped leave the index now, the disk after the grace period;
    4. downloads, most valuable first, `parallel_downloads` at a time under one rate cap, until
       done or the window ends (in-flight downloads are cut, their partial files kept);
    5. pending deletes that are due are unlinked, the summary line printed.

A status file (edge.runtime.FillStatus, `<runtime_dir>/fill.json`) is rewritten every
`status_interval_s`; the edge's /metrics renders it as the `edgefleet_fill_*` gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp

from edge.runtime import FillStatus, fill_status_file, write_fill_status
from edge.store import ContentIndex, IndexUnavailable, open_disks
from edgefleet import tasks
from edgefleet.fleet import AuthError, FieldError, load_secret, role_token
from edgefleet.manifests import FillManifest, ManifestFile, parse_manifest
from edgefleet.progress import Progress
from edgefleet.tokens import Keyring, KeyringError
from fill.agent import decisions as agent
from fill.agent.config import AgentSettings
from fill.agent.fetch import Fetcher, RateLimit
from fill.agent.install import Installer

log = logging.getLogger("edgefleet.fill")
T = TypeVar("T")

# Exit codes: 0 the fill is complete (or cut by its window); 1 some file failed; 2 no fill
# (bad manifest, control unreachable, no usable disk).
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class RunError(Exception):
    """The run cannot start; the message says why."""


@dataclass
class Options:
    """Command-line choices for one run."""

    now: bool = False  # ignore the window
    manifest_file: str | None = None  # a served-form manifest instead of control's


def load_manifest_file(path: str, appliance: str) -> FillManifest:
    """A served-form manifest document from a file."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RunError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise RunError(f"{path}: not JSON: {exc}") from None
    return _checked(doc, appliance, path)


def _checked(doc: Any, appliance: str, where: str) -> FillManifest:
    try:
        manifest = parse_manifest(doc)
    except FieldError as exc:
        raise RunError(f"{where}: {exc}") from None
    if manifest.appliance != appliance:
        raise RunError(f"{where}: the manifest is for {manifest.appliance!r}, not {appliance!r}")
    return manifest


async def fetch_manifest(settings: AgentSettings, session: aiohttp.ClientSession) -> FillManifest:
    """This appliance's newest manifest from control."""
    if not settings.control_url:
        raise RunError("no control URL (set control_url, or use --manifest FILE)")
    try:
        token = role_token(load_secret(settings.secret_file), f"appliance:{settings.appliance}")
    except AuthError as exc:
        raise RunError(str(exc)) from None
    url = f"{settings.control_url}/v1/appliances/{settings.appliance}/manifest"
    timeout = aiohttp.ClientTimeout(total=settings.fill.control_timeout_s)
    try:
        async with session.get(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        ) as resp:
            if resp.status == 404:
                raise RunError(f"{url}: no manifest published for {settings.appliance}")
            if resp.status != 200:
                text = (await resp.text())[:200]
                raise RunError(f"{url}: HTTP {resp.status}: {text}")
            doc = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise RunError(f"{url}: {exc or type(exc).__name__}") from None
    return _checked(doc, settings.appliance, url)


class Status:
    """The numbers behind the status file, the progress bar and the summary line."""

    def __init__(self, tally: agent.Tally, runtime_dir: str | Path) -> None:
        self.tally = tally
        self.runtime_dir = runtime_dir
        self.in_flight: Callable[[], int] = lambda: 0
        self._last_bytes = 0
        self._last_time = time.monotonic()
        self.rate = 0.0

    def document(self, running: bool) -> FillStatus:
        """The status file's content (its layout is edge.runtime's)."""
        now = time.monotonic()
        if now - self._last_time > 0:
            self.rate = (self.tally.bytes_done - self._last_bytes) / (now - self._last_time)
        self._last_bytes, self._last_time = self.tally.bytes_done, now
        return FillStatus(
            running=running,
            bytes_to_go=max(0, self.tally.bytes_to_go - self.in_flight()),
            bytes_done=self.tally.bytes_done,
            rate_bytes_per_second=round(self.rate, 1) if running else 0.0,
            errors=dict(self.tally.errors),
            misses=dict(self.tally.misses),
            added=self.tally.added,
            deleted=self.tally.deleted,
            failed=self.tally.failed,
            updated_at=time.time(),
        )

    def write(self, running: bool) -> None:
        """Rewrite the status file (a failure is logged, never fatal)."""
        try:
            write_fill_status(self.runtime_dir, self.document(running))
        except OSError as exc:
            log.warning("fill: cannot write %s: %s", fill_status_file(self.runtime_dir), exc)


async def run(settings: AgentSettings, options: Options, out: TextIO = sys.stderr) -> int:
    """One fill run; the exit code (see EXIT_*)."""
    started_wall = time.time()
    started = time.monotonic()
    conf = settings.fill
    deadline: float | None = None  # monotonic
    if not options.now:
        local = datetime.now().astimezone()
        start = agent.parse_hhmm(conf.window_start)
        end = agent.window_end(local, start, conf.window_length_s)
        if end is None:
            nxt = agent.next_window_start(local, start)
            print(
                f"fill: outside the fill window (next opens {nxt:%Y-%m-%d %H:%M}); "
                "only deletes are carried out (--now ignores the window)",
                file=out,
            )
        else:
            deadline = started + (end - local).total_seconds()
    try:
        keyring = Keyring.load(settings.edge.tokens.keyring)
    except KeyringError as exc:
        raise RunError(str(exc)) from None

    disk_thread = ThreadPoolExecutor(1, thread_name_prefix="fill-disk")
    install_thread = ThreadPoolExecutor(1, thread_name_prefix="fill-install")
    loop = asyncio.get_running_loop()

    async def on_disk(fn: Callable[..., T], *args: Any) -> T:
        return await loop.run_in_executor(disk_thread, fn, *args)

    tally = agent.Tally()
    status = Status(tally, settings.edge.runtime_dir)
    installer: Installer | None = None
    try:
        # A large read buffer: fewer, bigger chunks per download (the body is megabytes).
        async with aiohttp.ClientSession(auto_decompress=False, read_bufsize=1 << 20) as session:
            if options.manifest_file is not None:
                manifest = load_manifest_file(options.manifest_file, settings.appliance)
            else:
                manifest = await fetch_manifest(settings, session)
            installer = await on_disk(_open_installer, settings)
            if not installer.disks:
                raise RunError(f"no usable disk among {', '.join(settings.edge.disks)}")
            await on_disk(status.write, True)
            code = await _fill(
                settings, options, manifest, installer, session, keyring, tally, status,
                deadline, started_wall, on_disk, (disk_thread, install_thread), out,
            )  # fmt: skip
    finally:
        if installer is not None:
            # Deletes that came due during the run; then the index is closed.
            with contextlib.suppress(Exception):
                await loop.run_in_executor(disk_thread, installer.run_due, time.time())
            await loop.run_in_executor(disk_thread, installer.index.close)
        await loop.run_in_executor(disk_thread, status.write, False)
        install_thread.shutdown(wait=True)
        disk_thread.shutdown(wait=True)
    seconds = time.monotonic() - started
    print(tally.summary(seconds), file=out)
    if installer is not None and installer.skipped:
        for disk_id, why in sorted(installer.skipped.items()):
            print(f"fill: disk {disk_id} skipped: {why}", file=out)
    return code


def _open_installer(settings: AgentSettings) -> Installer:
    """The index and disks of the edge config (a root that cannot be opened is reported)."""
    disks = open_disks(settings.edge.disks)
    found = {str(d.root) for d in disks.values()}
    for root in settings.edge.disks:
        if str(Path(root)) not in found:
            log.error("fill: disk %s cannot be opened; skipped", root)
    try:
        index = ContentIndex(settings.edge.index)
    except IndexUnavailable as exc:
        raise RunError(str(exc)) from None
    return Installer(
        index,
        list(disks.values()),
        reserve_bytes=settings.fill.disk_reserve_bytes,
        grace_s=settings.fill.delete_grace_s,
    )


async def _fill(
    settings: AgentSettings,
    options: Options,
    manifest: FillManifest,
    installer: Installer,
    session: aiohttp.ClientSession,
    keyring: Keyring,
    tally: agent.Tally,
    status: Status,
    deadline: float | None,
    started_wall: float,
    on_disk: Callable[..., Any],
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor],  # (disk writes, installs)
    out: TextIO,
) -> int:
    now = time.time()

    # Reconcile first: the held set the diff sees must be what is really on disk.
    records = await on_disk(installer.reconcile_inputs)
    on_disk_files, temps = await on_disk(installer.scan)
    wanted = {f.content_id: f.checksum for f in manifest.files}
    plan = agent.reconcile(
        records,
        on_disk_files,
        temps,
        live_disks={d.disk_id for d in installer.usable_disks()},
        pending=installer.pending_keys(),
        wanted=wanted,
        run_started=started_wall,
    )
    await on_disk(installer.apply, plan)
    tally.dropped = len(plan.drop)
    for rec in plan.drop:
        print(f"fill: {rec.content_id} dropped from the index (file missing or torn)", file=out)

    held_records = await on_disk(lambda: list(installer.index.records()))
    held = {r.content_id: agent.Held(r.size, r.checksum) for r in held_records}
    change = agent.diff(manifest, held)
    for cid in change.deletes:
        if await on_disk(installer.delete, cid, now):
            tally.deleted += 1
    await on_disk(installer.run_due, now)

    adds = list(change.adds)
    tally.bytes_to_go = change.add_bytes
    if options.now or deadline is not None:
        await _download(
            settings, manifest, adds, plan.resume, installer, session, keyring, tally, status,
            deadline, threads, out,
        )  # fmt: skip
    return EXIT_FAILED if tally.failed else EXIT_OK


async def _download(
    settings: AgentSettings,
    manifest: FillManifest,
    adds: list[ManifestFile],
    resume: dict[str, agent.TempFile],
    installer: Installer,
    session: aiohttp.ClientSession,
    keyring: Keyring,
    tally: agent.Tally,
    status: Status,
    deadline: float | None,
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor],  # (disk writes, installs)
    out: TextIO,
) -> None:
    conf = settings.fill
    progress = Progress(tally.bytes_to_go, out=out)

    def on_bytes(n: int) -> None:
        tally.bytes_done += n
        progress.advance(n)

    def on_error(source: str, why: str) -> None:
        tally.errors[source] = tally.errors.get(source, 0) + 1

    def on_miss(source: str) -> None:
        tally.misses[source] = tally.misses.get(source, 0) + 1

    rate = RateLimit(conf.rate_cap_bytes_per_s) if conf.rate_cap_bytes_per_s > 0 else None
    fetcher = Fetcher(
        session,
        installer,
        threads[0],
        keyring,
        rate=rate,
        timeout_s=conf.source_timeout_s,
        url_ttl_s=conf.url_ttl_s,
        on_bytes=on_bytes,
        on_error=on_error,
        on_miss=on_miss,
        install_thread=threads[1],
    )
    status.in_flight = lambda: sum(p.written for p in list(fetcher.in_flight.values()))
    queue: asyncio.Queue[ManifestFile] = asyncio.Queue()
    for f in adds:
        queue.put_nowait(f)
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while True:
            try:
                f = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            # A held copy with other content stays served until the new bytes are verified
            # (see Installer.install).
            sources = agent.source_order(f, manifest.source_urls, manifest.source_states)
            outcome = await fetcher.fetch(f, sources, resume.pop(f.content_id, None))
            tally.bytes_to_go -= f.size
            if outcome.ok:
                tally.added += 1
                tally.by_source[outcome.source] = tally.by_source.get(outcome.source, 0) + 1
            else:
                tally.failed += 1
                print(f"fill: {f.content_id} failed: {outcome.detail}", file=out)

    async def report() -> None:
        while True:
            await asyncio.sleep(conf.status_interval_s)
            await loop.run_in_executor(None, status.write, True)

    reporter = tasks.spawn(report(), name="fill-status")
    workers = [
        tasks.spawn(worker(), name=f"fill-download-{i}")
        for i in range(min(conf.parallel_downloads, max(len(adds), 1)))
    ]
    # SIGTERM (systemd stopping the unit, an operator) ends the run like the window's end:
    # downloads cut, partial files kept, summary printed.
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopper = tasks.spawn(stop.wait(), name="fill-stop")
    try:
        pending = set(workers)
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(
                pending | {stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            pending -= done
            if stopper in done or not done:
                tally.cut = "stopped by SIGTERM" if stopper in done else "window ended"
                break
        if pending:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in workers:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
        for task in (reporter, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        progress.finish()


__all__ = ["EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "Options", "RunError", "run"]
