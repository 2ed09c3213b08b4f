"""The appliance's runtime directory (`runtime_dir`): which file lives where, and their layout.

One of the edge's two public modules (with edge.store). The edge's processes and the fill agent
share the directory; every file in it is JSON written whole to a temporary name and renamed
(`write_json_atomic`), so a reader sees the old file or the new one, never half:

- `metrics/worker-<slot>.json`: a server worker's counters (edge.metrics.WorkerStats);
- `metrics/supervisor.json`: workers alive and restarts (edge.supervisor);
- `keeper.json`: the disk watch and the scrub (edge.scrub);
- `fill.json`: the fill agent's progress (`FillStatus`, written by fill/agent/, rendered by
  the edge's /metrics as the `edgefleet_fill_*` series).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def worker_file(runtime_dir: str | Path, slot: int) -> Path:
    """Where worker *slot* writes its snapshot."""
    return Path(runtime_dir) / "metrics" / f"worker-{slot}.json"


def supervisor_file(runtime_dir: str | Path) -> Path:
    """Where the supervisor writes its own counts (workers alive, restarts)."""
    return Path(runtime_dir) / "metrics" / "supervisor.json"


def keeper_file(runtime_dir: str | Path) -> Path:
    """Where the keeper process (disk watch and scrub, edge.scrub) writes its status."""
    return Path(runtime_dir) / "keeper.json"


def fill_status_file(runtime_dir: str | Path) -> Path:
    """Where the fill agent (`edgefleet fill run`) writes its status, once a second."""
    return Path(runtime_dir) / "fill.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write *data* to *path* so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A snapshot file, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_worker_snapshots(runtime_dir: str | Path) -> list[dict[str, Any]]:
    """Every worker snapshot in the metrics directory."""
    out = []
    for path in sorted((Path(runtime_dir) / "metrics").glob("worker-*.json")):
        data = read_json(path)
        if data is not None:
            out.append(data)
    return out


@dataclass
class FillStatus:
    """The fill agent's status file: the current (or last) run's progress."""

    running: bool = False
    bytes_to_go: float = 0  # bytes still to fetch (the in-flight downloads' part excluded)
    bytes_done: float = 0
    rate_bytes_per_second: float = 0.0  # over the last status interval
    errors: dict[str, float] = field(default_factory=dict)  # failed attempts by source
    misses: dict[str, float] = field(default_factory=dict)  # 404s by source
    added: float = 0
    deleted: float = 0
    failed: float = 0
    updated_at: float = 0.0  # unix time

    def to_doc(self) -> dict[str, Any]:
        """The file's JSON document."""
        return {
            "running": 1 if self.running else 0,
            "bytes_to_go": self.bytes_to_go,
            "bytes_done": self.bytes_done,
            "rate_bytes_per_second": self.rate_bytes_per_second,
            "errors": dict(self.errors),
            "misses": dict(self.misses),
            "added": self.added,
            "deleted": self.deleted,
            "failed": self.failed,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FillStatus:
        """The status in *doc*; a missing or non-numeric field reads as 0 (a file from an older
        or newer agent still renders)."""

        def num(key: str) -> float:
            value = doc.get(key, 0)
            return float(value) if isinstance(value, int | float) else 0.0

        def by_source(key: str) -> dict[str, float]:
            raw = doc.get(key)
            items = raw.items() if isinstance(raw, dict) else ()
            return {str(k): n for k, n in items if isinstance(n, int | float)}

        return cls(
            running=num("running") != 0,
            bytes_to_go=num("bytes_to_go"),
            bytes_done=num("bytes_done"),
            rate_bytes_per_second=num("rate_bytes_per_second"),
            errors=by_source("errors"),
            misses=by_source("misses"),
            added=num("added"),
            deleted=num("deleted"),
            failed=num("failed"),
            updated_at=num("updated_at"),
        )


def write_fill_status(runtime_dir: str | Path, status: FillStatus) -> None:
    """Rewrite the fill status file (OSError when the directory refuses)."""
    write_json_atomic(fill_status_file(runtime_dir), status.to_doc())


def read_fill_status(runtime_dir: str | Path) -> FillStatus | None:
    """The fill status file, or None before the first run (or when it is unreadable)."""
    doc = read_json(fill_status_file(runtime_dir))
    return None if doc is None else FillStatus.from_doc(doc)


__all__ = [
    "FillStatus",
    "fill_status_file",
    "keeper_file",
    "read_fill_status",
    "read_json",
    "read_worker_snapshots",
    "supervisor_file",
    "worker_file",
    "write_fill_status",
    "write_json_atomic",
]
