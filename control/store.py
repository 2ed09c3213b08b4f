"""Control's durable state in one SQLite file (WAL): drains, fill manifests, popularity.

Everything else control knows is soft and comes back from heartbeats within one interval
after a restart. Calls block on disk: the web application runs them in its one store thread
(`control.app`), never on the event loop; a lock makes the connection safe to share anyway.

Schema changes go through `_MIGRATIONS`, indexed by SQLite's `user_version`.

- drains: an operator's flag per appliance.
- publications + manifests: a whole publication (one generation, many appliances) lands in one
  transaction, so an appliance never reads a manifest of a half-stored plan; a large fleet's
  planner stores one appliance's manifest at a time instead (`put_appliance_manifest`). Old
  generations are pruned, a few kept for operators to compare.

  Generations, by either route: a whole publication must be newer than every generation
  stored (`publications` records both routes); one appliance's manifest must not be older
  than that appliance's newest, and at the same generation must be the same document (a
  retried PUT), so a planner publishing appliance by appliance never meets a stale refusal
  from its own earlier PUTs, and two different plans never share a generation.
- popularity: body bytes served per (UTC day, region, content id), added to as heartbeats
  report them (the application batches them: one transaction every few seconds).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# (day "YYYY-MM-DD", region, content id): the popularity table's key.
PopularityKey = tuple[str, str, str]

_MIGRATIONS: tuple[str, ...] = (
    # 1: drains and fill manifests
    """
    CREATE TABLE drains (
        appliance  TEXT PRIMARY KEY,
        updated_at REAL NOT NULL
    );
    CREATE TABLE manifests (
        appliance  TEXT NOT NULL,
        generation INTEGER NOT NULL,
        body       TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (appliance, generation)
    );
    """,
    # 2: publications (a generation exists even when it holds no manifest) and popularity
    """
    CREATE TABLE publications (
        generation INTEGER PRIMARY KEY,
        appliances INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    INSERT INTO publications (generation, appliances, created_at)
        SELECT generation, COUNT(*), MAX(created_at) FROM manifests GROUP BY generation;
    CREATE TABLE popularity (
        day        TEXT NOT NULL,
        region     TEXT NOT NULL,
        content_id TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        PRIMARY KEY (day, region, content_id)
    ) WITHOUT ROWID;
    """,
)


class StaleGeneration(ValueError):
    """A publication's generation is not newer than the newest stored one."""

    def __init__(self, generation: int, newest: int) -> None:
        super().__init__(f"generation {generation} is not newer than the stored {newest}")
        self.generation = generation
        self.newest = newest


class ManifestConflict(ValueError):
    """An appliance already has another manifest under the same generation."""

    def __init__(self, appliance: str, generation: int) -> None:
        super().__init__(
            f"generation {generation} of '{appliance}' is already stored with other content"
        )
        self.appliance = appliance
        self.generation = generation


class StoreError(RuntimeError):
    """The store file cannot be opened or used."""


class Store:
    """One SQLite database; open once per process, close at shutdown."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            # isolation_level=None: autocommit; multi-statement changes use explicit BEGIN.
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledged drain survives a power cut, not only a crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"{self.path}: {exc}") from None

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN")
            try:
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drains --------------------------------------------------------------------------

    def drains(self) -> set[str]:
        """Appliances an operator has drained."""
        with self._lock:
            rows = self._db.execute("SELECT appliance FROM drains").fetchall()
        return {name for (name,) in rows}

    def set_drain(self, appliance: str, drain: bool) -> None:
        """Record (or clear) an operator's drain flag, durably."""
        with self._lock:
            if drain:
                self._db.execute(
                    "INSERT INTO drains (appliance, updated_at) VALUES (?, ?) "
                    "ON CONFLICT (appliance) DO UPDATE SET updated_at = excluded.updated_at",
                    (appliance, time.time()),
                )
            else:
                self._db.execute("DELETE FROM drains WHERE appliance = ?", (appliance,))

    # -- fill manifests ------------------------------------------------------------------

    def put_manifest(self, appliance: str, generation: int, body: dict[str, Any]) -> None:
        """Store the fill manifest *generation* for *appliance* (replacing the same one)."""
        text = json.dumps(body, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO manifests (appliance, generation, body, created_at) "
                "VALUES (?, ?, ?, ?)",
                (appliance, generation, text, time.time()),
            )

    def latest_manifest(self, appliance: str) -> tuple[int, dict[str, Any]] | None:
        """(generation, body) of the newest manifest for *appliance*, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT generation, body FROM manifests WHERE appliance = ? "
                "ORDER BY generation DESC LIMIT 1",
                (appliance,),
            ).fetchone()
        if row is None:
            return None
        body: dict[str, Any] = json.loads(row[1])
        return int(row[0]), body

    def latest_manifest_text(self, appliance: str) -> tuple[int, str] | None:
        """(generation, JSON text) of the newest manifest for *appliance*, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT generation, body FROM manifests WHERE appliance = ? "
                "ORDER BY generation DESC LIMIT 1",
                (appliance,),
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def prune_manifests(self, appliance: str, keep: int) -> int:
        """Delete all but the newest *keep* manifests of *appliance*; returns how many went."""
        with self._lock:
            return self._prune(appliance, keep)

    def _prune(self, appliance: str, keep: int) -> int:
        cur = self._db.execute(
            "DELETE FROM manifests WHERE appliance = ? AND generation NOT IN "
            "(SELECT generation FROM manifests WHERE appliance = ? "
            "ORDER BY generation DESC LIMIT ?)",
            (appliance, appliance, keep),
        )
        return cur.rowcount

    def newest_generation(self) -> int | None:
        """The generation of the newest publication, or None before the first."""
        with self._lock:
            (newest,) = self._db.execute("SELECT MAX(generation) FROM publications").fetchone()
        return None if newest is None else int(newest)

    def put_publication(
        self, generation: int, manifests: Iterable[tuple[str, dict[str, Any]]], *, keep: int = 3
    ) -> int:
        """Store a whole publication in one transaction; returns how many manifests it held.

        Raises StaleGeneration unless *generation* is newer than every stored one (checked
        inside the transaction: two planners racing cannot both win). Each named appliance
        keeps its newest *keep* manifests; older ones are deleted in the same transaction.
        """
        rows = [
            (name, generation, json.dumps(body, separators=(",", ":"))) for name, body in manifests
        ]
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (newest,) = self._db.execute("SELECT MAX(generation) FROM publications").fetchone()
                if newest is not None and generation <= newest:
                    raise StaleGeneration(generation, int(newest))
                self._db.execute(
                    "INSERT INTO publications (generation, appliances, created_at) "
                    "VALUES (?, ?, ?)",
                    (generation, len(rows), now),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO manifests (appliance, generation, body, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(*row, now) for row in rows],
                )
                for name, _, _ in rows:
                    self._prune(name, keep)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(rows)

    def put_appliance_manifest(
        self, appliance: str, generation: int, text: str, *, keep: int = 3
    ) -> bool:
        """Store one appliance's manifest (JSON *text*); False when it was already stored.

        Raises StaleGeneration when *appliance* has a newer manifest, ManifestConflict when
        it has a different one under *generation* (both checked inside the transaction).
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT generation, body FROM manifests WHERE appliance = ? "
                    "ORDER BY generation DESC LIMIT 1",
                    (appliance,),
                ).fetchone()
                if row is not None and generation < row[0]:
                    raise StaleGeneration(generation, int(row[0]))
                if row is not None and generation == row[0]:
                    if row[1] != text:
                        raise ManifestConflict(appliance, generation)
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute(
                    "INSERT INTO manifests (appliance, generation, body, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (appliance, generation, text, now),
                )
                # The generation exists from its first appliance on: a whole publication
                # must be newer than it (see the module docstring).
                self._db.execute(
                    "INSERT INTO publications (generation, appliances, created_at) "
                    "VALUES (?, 1, ?) ON CONFLICT (generation) "
                    "DO UPDATE SET appliances = appliances + 1",
                    (generation, now),
                )
                self._prune(appliance, keep)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return True

    # -- popularity ----------------------------------------------------------------------

    def add_popularity(self, counts: Mapping[PopularityKey, int]) -> None:
        """Add *counts* (bytes per day, region, content id) to the totals, in one transaction."""
        if not counts:
            return
        rows = [(day, region, cid, n) for (day, region, cid), n in counts.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO popularity (day, region, content_id, bytes) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (day, region, content_id) "
                    "DO UPDATE SET bytes = bytes + excluded.bytes",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def popularity_page(
        self, first_day: str, last_day: str, after: PopularityKey | None = None, limit: int = 10_000
    ) -> list[tuple[str, str, str, int]]:
        """Up to *limit* (day, region, content id, bytes) rows of days first..last (inclusive),
        in key order, strictly after the key *after*.

        Pages by key rather than holding a cursor open, so a long export neither pins a read
        transaction nor blocks the store thread between pages.
        """
        query = (
            "SELECT day, region, content_id, bytes FROM popularity "
            "WHERE day >= ? AND day <= ? AND (day, region, content_id) > (?, ?, ?) "
            "ORDER BY day, region, content_id LIMIT ?"
        )
        start = after if after is not None else ("", "", "")
        with self._lock:
            rows = self._db.execute(query, (first_day, last_day, *start, limit)).fetchall()
        return [(str(d), str(r), str(c), int(b)) for d, r, c, b in rows]
