"""The SQLite store: drains and fill manifests survive a reopen; WAL mode; clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from control.store import ManifestConflict, StaleGeneration, Store, StoreError


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
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
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


def test_publication_is_one_transaction_and_newer_only(tmp_path: Path) -> None:
    with Store(tmp_path / "c.sqlite3") as store:
        assert store.newest_generation() is None
        assert store.put_publication(5, [("ams1-a", {"g": 5}), ("lon1-a", {"g": 5})]) == 2
        assert store.newest_generation() == 5
        for stale in (5, 4):
            with pytest.raises(StaleGeneration) as err:
                store.put_publication(stale, [("ams1-a", {"g": stale})])
            assert err.value.newest == 5
        assert store.latest_manifest("ams1-a") == (5, {"g": 5})
        # An empty publication is still a generation: a later stale one is refused.
        assert store.put_publication(6, []) == 0
        with pytest.raises(StaleGeneration):
            store.put_publication(6, [("ams1-a", {})])
        # A failure inside the transaction stores nothing of the publication.
        with pytest.raises(TypeError):
            store.put_publication(7, [("ams1-a", {"g": 7}), ("lon1-a", {"bad": object()})])
        assert store.newest_generation() == 6
        assert store.latest_manifest("ams1-a") == (5, {"g": 5})
        for generation in range(8, 14):
            store.put_publication(generation, [("ams1-a", {"g": generation})], keep=3)
        assert store.latest_manifest_text("ams1-a") == (13, '{"g":13}')
        assert store.prune_manifests("ams1-a", keep=3) == 0  # already pruned to 3
        assert store.latest_manifest("lon1-a") == (5, {"g": 5})  # not in those: kept


def test_popularity_adds_up_and_pages(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with Store(path) as store:
        store.add_popularity({})
        store.add_popularity({("2026-11-24", "eu-west", "a.mp4"): 10})
        store.add_popularity(
            {("2026-11-24", "eu-west", "a.mp4"): 5, ("2026-11-25", "us-east", "b.mp4"): 7}
        )
    with Store(path) as store:  # durable
        rows = store.popularity_page("2026-11-24", "2026-11-25")
        assert rows == [
            ("2026-11-24", "eu-west", "a.mp4", 15),
            ("2026-11-25", "us-east", "b.mp4", 7),
        ]
        assert store.popularity_page("2026-11-25", "2026-12-01") == rows[1:]
        assert store.popularity_page("2026-11-20", "2026-11-23") == []
        many = {("2026-11-26", "eu-west", f"f{i:04d}"): i + 1 for i in range(250)}
        store.add_popularity(many)
        seen: list[tuple[str, str, str, int]] = []
        after = None
        while page := store.popularity_page("2026-11-26", "2026-11-26", after, limit=100):
            seen += page
            after = page[-1][:3]
        assert [(d, r, c) for d, r, c, _ in seen] == sorted(many)
        assert sum(n for *_, n in seen) == sum(many.values())


def test_version_1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE drains (appliance TEXT PRIMARY KEY, updated_at REAL NOT NULL);"
        "CREATE TABLE manifests (appliance TEXT NOT NULL, generation INTEGER NOT NULL,"
        " body TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (appliance, generation));"
        "INSERT INTO manifests VALUES ('ams1-a', 4, '{}', 1.0);"
        "PRAGMA user_version = 1;"
    )
    db.close()
    with Store(path) as store:
        assert store.newest_generation() == 4
        with pytest.raises(StaleGeneration):
            store.put_publication(4, [])


def test_appliance_manifests_and_publications_share_generations(tmp_path: Path) -> None:
    with Store(tmp_path / "c.sqlite3") as store:
        assert store.put_appliance_manifest("ams1-a", 5, '{"g":5}') is True
        assert store.put_appliance_manifest("ams1-a", 5, '{"g":5}') is False  # a retry
        with pytest.raises(ManifestConflict):
            store.put_appliance_manifest("ams1-a", 5, '{"g":"other"}')
        with pytest.raises(StaleGeneration) as err:
            store.put_appliance_manifest("ams1-a", 4, '{"g":4}')
        assert err.value.newest == 5
        assert store.put_appliance_manifest("lon1-a", 5, '{"g":5}') is True
        assert store.newest_generation() == 5
        # A whole publication must be newer than what came appliance by appliance.
        with pytest.raises(StaleGeneration):
            store.put_publication(5, [("nyc1-a", {})])
        assert store.put_publication(6, [("nyc1-a", {"g": 6})]) == 1
        # An appliance the newer publication left out still takes a late manifest of its own.
        assert store.put_appliance_manifest("lon1-a", 5, '{"g":5}') is False
        assert store.put_appliance_manifest("ams1-b", 4, '{"g":4}') is True
        assert store.latest_manifest_text("ams1-b") == (4, '{"g":4}')
        assert store.newest_generation() == 6
        for generation in range(7, 12):
            store.put_appliance_manifest("ams1-a", generation, f'{{"g":{generation}}}', keep=2)
        assert store.prune_manifests("ams1-a", keep=2) == 0  # pruned as they came
        assert store.latest_manifest("ams1-a") == (11, {"g": 11})
