"""Bytes served per content id: workers spool them, the reporter sends them to control.

Each worker counts body bytes per content id in a plain dict (`Worker.served`, one dict update
per completed response: nothing on the hot path touches a disk). Once a second its tick writes
the dict, if not empty, to `<runtime_dir>/served/<slot>-<pid>-<seq>.json` (temporary file, then
rename: a reader sees whole files only) and starts a new one.

The reporter (a separate process) reads every spool file before each heartbeat, sends the sum
as the heartbeat's `served` map, and deletes exactly the files it read once control answered
200. A failed heartbeat deletes nothing: the files are read again, with newer ones, next time.
A file read into a heartbeat in flight is not read into another.

While control is unreachable files pile up (one per worker per second); before each heartbeat
the reporter merges them once there are more than `max_files`, so the spool stays small for
an outage of any length. Merged files name the files they replace and are renamed into place
before those are deleted: a crash in between leaves replaced files that the next read deletes
instead of counting them twice (and a merge found with some parts missing is undone).

    {"served": {"a.mp4": 1048576, ...}}                         a worker's file
    {"served": {...}, "replaces": ["0-4242-17.json", ...],      one part of a merge
     "group": "<time>-<n>", "parts": 2}
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgefleet.heartbeat import MAX_SERVED_IDS
from edgefleet.models import is_content_id

log = logging.getLogger("edgefleet.edge.popularity")

# More spool files than this are merged before the next heartbeat.
MAX_SPOOL_FILES = 64


def spool_dir(runtime_dir: str | Path) -> Path:
    """Where workers spool their counts."""
    return Path(runtime_dir) / "served"


def _write_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # No fsync: the runtime directory is a tmpfs or page cache; a crashed process loses
    # nothing written, and a machine crash loses a second of counting, not consistency.
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def write_spool(
    directory: Path, slot: int, pid: int, seq: int, served: Mapping[bytes, int]
) -> Path | None:
    """Write one worker's counts as spool file number *seq*; None when there was nothing.

    Ids that are not content ids (which the server never counts) are left out rather than
    let one bad key make control refuse the whole heartbeat.
    """
    counts: dict[str, int] = {}
    for key, n in served.items():
        cid = key.decode("ascii", "replace")
        if n > 0 and is_content_id(cid):
            counts[cid] = counts.get(cid, 0) + n
    if not counts:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{slot}-{pid}-{seq}.json"
    _write_atomic(path, {"served": counts})
    return path


def _read(path: Path) -> dict[str, Any] | None:
    """A spool document, or None when the file is gone or unreadable."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("spool file %s is unreadable (%s); dropping it", path, exc)
        _unlink([path])
        return None
    served = doc.get("served") if isinstance(doc, dict) else None
    if not isinstance(served, dict) or not all(
        isinstance(k, str) and is_content_id(k) and type(v) is int and v >= 0
        for k, v in served.items()
    ):
        log.error("spool file %s holds no valid counts; dropping it", path)
        _unlink([path])
        return None
    return dict(doc)


def _unlink(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("cannot delete spool file %s: %s", path, exc)


class Spool:
    """The reporter's side of the spool directory: read, send, acknowledge, merge."""

    def __init__(
        self,
        directory: Path,
        *,
        max_files: int = MAX_SPOOL_FILES,
        max_ids: int = MAX_SERVED_IDS,
    ) -> None:
        self.directory = directory
        self.max_files = max_files
        self.max_ids = max_ids  # per heartbeat (control refuses larger `served` maps)
        self.in_flight: list[Path] = []
        self._merges = 0

    def _files(self) -> list[Path]:
        """Spool files, oldest first (temporary files start with a dot and are skipped)."""
        try:
            names = [p for p in self.directory.iterdir() if p.suffix == ".json"]
        except FileNotFoundError:
            return []
        names = [p for p in names if not p.name.startswith(".")]
        return sorted(names, key=_age)

    def _live(self) -> list[tuple[Path, dict[str, Any]]]:
        """Readable files not in flight, after finishing or undoing an interrupted merge."""
        docs = []
        for path in self._files():
            if path in self.in_flight:
                continue
            doc = _read(path)
            if doc is not None:
                docs.append((path, doc))
        # A merge writes its parts, each naming the group, the number of parts and the files
        # they replace, and only then deletes those files. All parts found: finish deleting.
        # Some part missing while a replaced file is still here: the merge died while writing,
        # so its parts go. Some part missing and the sources gone: parts already acknowledged.
        present = {path.name for path, _ in docs}
        groups: dict[str, int] = {}
        for _, doc in docs:
            if "group" in doc:
                groups[str(doc["group"])] = groups.get(str(doc["group"]), 0) + 1
        dead: set[str] = set()
        for path, doc in docs:
            if "group" not in doc:
                continue
            replaced = {str(name) for name in doc.get("replaces", ())}
            if groups[str(doc["group"])] == doc.get("parts"):
                dead |= replaced
            elif replaced & present:
                dead.add(path.name)
        if dead:
            _unlink(self.directory / name for name in dead)
        return [(p, d) for p, d in docs if p.name not in dead]

    def collect(self) -> dict[str, int]:
        """The counts of the next heartbeat; their files are in flight until acknowledged.

        Files are taken oldest first while the sum names at most `max_ids` ids (at least one
        file, which never holds more than that).
        """
        self.compact()
        total: dict[str, int] = {}
        taken: list[Path] = []
        for path, doc in self._live():
            served: dict[str, int] = doc["served"]
            new = sum(1 for cid in served if cid not in total)
            if taken and len(total) + new > self.max_ids:
                break
            for cid, n in served.items():
                total[cid] = total.get(cid, 0) + n
            taken.append(path)
        self.in_flight = taken
        return total

    def acknowledged(self) -> int:
        """Control has the counts in flight: delete their files; returns how many."""
        done = len(self.in_flight)
        _unlink(self.in_flight)
        self.in_flight = []
        return done

    def failed(self) -> None:
        """The heartbeat failed: its files are read again next time."""
        self.in_flight = []

    def compact(self) -> int:
        """Merge the files not in flight once there are more than `max_files`; returns how
        many files were merged (0: nothing to do).

        The counts are summed per id and written in parts of at most `max_ids` ids, so the
        spool holds about (distinct ids / max_ids) files after a merge, whatever the outage.
        """
        live = self._live()
        if len(live) <= self.max_files:
            return 0
        total: dict[str, int] = {}
        for _, doc in live:
            for cid, n in doc["served"].items():
                total[cid] = total.get(cid, 0) + n
        ids = list(total)
        chunks = [ids[i : i + self.max_ids] for i in range(0, len(ids), self.max_ids)] or [[]]
        names = [path.name for path, _ in live]
        self._merges += 1
        # The time in the name: a restarted reporter (same pid, counter from 0) never reuses one.
        group = f"{time.time_ns()}-{self._merges}"
        for part, chunk in enumerate(chunks):
            doc = {
                "served": {cid: total[cid] for cid in chunk},
                "replaces": names,
                "group": group,
                "parts": len(chunks),
            }
            _write_atomic(self.directory / f"merged-{group}-{part}.json", doc)
        _unlink(self.directory / name for name in names)
        return len(names)


def _age(path: Path) -> tuple[float, str]:
    try:
        return path.stat().st_mtime, path.name
    except OSError:
        return 0.0, path.name
