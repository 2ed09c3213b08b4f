"""A fill scene for tests and the benchmark: source edges, a target appliance, the agent.

Sources are real edge servers (EdgeProcess) holding imported files; the target is an edge
config (index, disks, keyring, runtime dir) that the agent fills, optionally served by its own
edge process so tests can check what clients would get. All share one keyring, as the
appliances of one fleet do, so the agent's signed URLs are accepted by every source.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import xxhash

from edge.index import ContentIndex
from edgefleet.models import ContentRecord
from edgefleet.tokens import Keyring, new_key
from tests.edge.edgeproc import EdgeProcess, request

APPLIANCE = "target-a"


def shared_keyring() -> Keyring:
    """One keyring for every appliance of a test fleet."""
    return Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")


def edge_with_keyring(
    root: Path, files: dict[str, bytes] | None, keyring: Keyring, **kwargs: Any
) -> EdgeProcess:
    """An EdgeProcess (not started) whose keyring is *keyring*."""
    edge = EdgeProcess(root, files, **kwargs)
    edge.keyring_path.write_text(keyring.dumps())
    edge.keyring = keyring
    return edge


def checksum(data: bytes) -> str:
    """xxh3-128 as the index and manifests write it."""
    return xxhash.xxh3_128_hexdigest(data)


def manifest_doc(
    files: dict[str, bytes],
    sources: list[str],
    urls: dict[str, str],
    states: dict[str, str] | None = None,
    *,
    appliance: str = APPLIANCE,
    generation: int = 1,
) -> dict[str, Any]:
    """A served-form manifest listing *files* (in dict order), each from *sources*."""
    return {
        "appliance": appliance,
        "generation": generation,
        "created_at": 0.0,
        "files": [
            {"id": cid, "size": len(data), "checksum": checksum(data), "sources": sources}
            for cid, data in files.items()
        ],
        "source_urls": urls,
        "source_states": states or dict.fromkeys(urls, "up"),
    }


def fill_command() -> list[str]:
    """`edgefleet fill run` when the fill CLI is registered, else the same parser on its own."""
    from edgefleet.cli import SERVICES

    if "fill" in SERVICES and importlib.util.find_spec("fill.cli") is not None:
        return [sys.executable, "-m", "edgefleet.cli", "fill", "run"]
    return [sys.executable, "-m", "fill.agent.cli", "run"]


class FillTarget:
    """The appliance being filled: its edge (config, index, disks) and the agent's config."""

    def __init__(
        self, root: Path, keyring: Keyring, *, disks: int = 1, edge_config: str = "", **fill: Any
    ) -> None:
        self.root = root
        self.edge = edge_with_keyring(
            root / "edge", None, keyring, disks=disks, extra_config=edge_config
        )
        self.manifest_path = root / "manifest.json"
        self.config_path = root / "fill.toml"
        self.write_config(**fill)

    def write_config(self, **fill: Any) -> None:
        """(Re)write fill.toml: `edge_config` and `appliance` plus the given keys."""
        values: dict[str, Any] = {
            "edge_config": str(self.edge.config_path),
            "appliance": APPLIANCE,
            "rate_cap_bytes_per_s": 0,
            "source_timeout_s": 5.0,
            "status_interval_s": 0.2,
            **fill,
        }
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def write_manifest(self, doc: dict[str, Any]) -> None:
        """The manifest file the agent reads with --manifest."""
        self.manifest_path.write_text(json.dumps(doc))

    def command(self, *extra: str, now: bool = True) -> list[str]:
        """The agent's command line (the manifest from control when no file was written)."""
        cmd = [*fill_command(), "-c", str(self.config_path)]
        if self.manifest_path.exists():
            cmd += ["--manifest", str(self.manifest_path)]
        return cmd + (["--now"] if now else []) + list(extra)

    def run(
        self, *extra: str, now: bool = True, timeout: float = 90.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the agent to its end."""
        return subprocess.run(
            self.command(*extra, now=now),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )

    def start(self, *extra: str, now: bool = True) -> subprocess.Popen[str]:
        """Start the agent without waiting."""
        with open(self.root / "agent.log", "a") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                self.command(*extra, now=now), stdout=subprocess.DEVNULL, stderr=log, text=True
            )

    def _records(self) -> list[ContentRecord]:
        """The target's index records now."""
        index = ContentIndex(self.edge.root / "index")
        try:
            return list(index.records())
        finally:
            index.close()

    def indexed(self) -> dict[str, str]:
        """content id → checksum of the target's index now."""
        return {r.content_id: r.checksum for r in self._records()}

    def disks_of(self) -> dict[str, str]:
        """content id → the disk id its file is on, in the target's index now."""
        return {r.content_id: r.disk_id for r in self._records()}

    def status(self) -> dict[str, Any]:
        """The agent's status file."""
        data: dict[str, Any] = json.loads((self.edge.root / "run" / "fill.json").read_text())
        return data

    def temp_files(self) -> list[Path]:
        """Partial files on the target's disks."""
        return sorted(p for d in self.edge.disks for p in (d.root / ".tmp").glob("*"))

    def content_files(self) -> list[Path]:
        """Files in the target's disks' fan-out directories."""
        return sorted(
            p
            for d in self.edge.disks
            for p in d.root.glob("*/*")
            if not p.parent.name.startswith(".")
        )


def served_body(edge: EdgeProcess, content_id: str) -> tuple[int, bytes]:
    """(status, body) of a signed GET of *content_id* from a running edge."""
    status, _headers, body = request(edge.port, edge.url(content_id))
    return status, body
