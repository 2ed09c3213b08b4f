"""Control's durable state in one SQLite file (WAL): operators' drain flags and fill manifests.

Everything else control knows is soft and comes back from heartbeats within one interval
after a restart. Calls block on disk: the web application runs them in its one store thread
(`control.app`), never on the event loop; a lock makes the connection safe to share anyway.

Schema changes go through `_MIGRATIONS`, indexed by SQLite's `user_version`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

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
)


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

    def prune_manifests(self, appliance: str, keep: int) -> int:
        """Delete all but the newest *keep* manifests of *appliance*; returns how many went."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM manifests WHERE appliance = ? AND generation NOT IN "
                "(SELECT generation FROM manifests WHERE appliance = ? "
                "ORDER BY generation DESC LIMIT ?)",
                (appliance, appliance, keep),
            )
        return cur.rowcount
