"""The SQLite store: drains and fill manifests survive a reopen; WAL mode; clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from control.store import Store, StoreError


def test_drains_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite3"
    with Store(path) as store:
        assert store.drains() == set()
        store.set_drain("ams1-a", True)
        store.set_drain("ams1-a", True)  # idempotent
        store.set_drain("lon1-a", True)
        store.set_drain("lon1-a", False)
        store.set_drain("never", False)
    with Store(path) as store:
        assert store.drains() == {"ams1-a"}


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite3"
    Store(path).close()
    Store(path).close()  # migrations run once
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    finally:
        db.close()


def test_manifests(tmp_path: Path) -> None:
    with Store(tmp_path / "c.sqlite3") as store:
        assert store.latest_manifest("ams1-a") is None
        store.put_manifest("ams1-a", 1, {"files": ["a"]})
        store.put_manifest("ams1-a", 3, {"files": ["a", "b"]})
        store.put_manifest("ams1-a", 2, {"files": []})
        store.put_manifest("lon1-a", 9, {})
        assert store.latest_manifest("ams1-a") == (3, {"files": ["a", "b"]})
        store.put_manifest("ams1-a", 3, {"files": ["c"]})  # replaces the same generation
        assert store.latest_manifest("ams1-a") == (3, {"files": ["c"]})
        assert store.prune_manifests("ams1-a", keep=1) == 2
        assert store.prune_manifests("ams1-a", keep=1) == 0
        assert store.latest_manifest("ams1-a") == (3, {"files": ["c"]})
        assert store.latest_manifest("lon1-a") == (9, {})


def test_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nodir"):
        Store(tmp_path / "nodir" / "c.sqlite3")
    not_db = tmp_path / "text.sqlite3"
    not_db.write_text("this is not a database, just some text long enough to be a header\n" * 20)
    with pytest.raises(StoreError, match=r"text\.sqlite3"):
        Store(not_db)
