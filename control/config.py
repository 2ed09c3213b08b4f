"""The control plane's configuration: one frozen object, loaded from TOML once at start-up.

The fleet itself (sites, appliances, timing) is the topology file (`control.topology`),
which reloads on SIGHUP; this file says where control listens and keeps its files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet import config as cfgload


@dataclass(frozen=True)
class ListenConfig:
    """Where control accepts connections."""

    host: str = "127.0.0.1"
    port: int = 7070


@dataclass(frozen=True)
class ControlConfig:
    """Everything `edgefleet control serve` needs."""

    # The fleet topology (TOML); reloaded on SIGHUP.
    topology: str = "/etc/edgefleet/topology.toml"
    # The fleet secret (hex), shared with steering and the appliances.
    secret_file: str = "/etc/edgefleet/fleet.secret"
    # SQLite file for drains and fill manifests.
    store: str = "/var/lib/edgefleet/control.sqlite3"
    uvloop: bool = True
    # A full inventory of a million content ids is ~30 MB of JSON.
    max_request_bytes: int = 64 * 1024 * 1024
    # How often silent appliances are looked for (capped at a quarter heartbeat interval).
    tick_interval_s: float = 0.5
    # A fill publication (every appliance's manifest) may be far larger than a heartbeat.
    max_publication_bytes: int = 1024 * 1024 * 1024
    # Manifest generations kept per appliance (the newest is served; older ones for operators).
    manifests_keep: int = 3
    # Popularity counts from heartbeats are written to the store this often (and at shutdown):
    # a heartbeat never waits on disk; a crash (not a stop) loses at most this much counting.
    popularity_flush_s: float = 5.0
    listen: ListenConfig = field(default_factory=ListenConfig)

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if not 0 <= self.listen.port <= 65535:
            raise ValueError("'listen.port' must be 0..65535")
        if not self.topology:
            raise ValueError("'topology' is required")
        if not self.secret_file:
            raise ValueError("'secret_file' is required")
        if not self.store:
            raise ValueError("'store' is required")
        if self.max_request_bytes < 1024:
            raise ValueError("'max_request_bytes' must be at least 1024")
        if self.tick_interval_s <= 0:
            raise ValueError("'tick_interval_s' must be positive")
        if self.max_publication_bytes < 1024:
            raise ValueError("'max_publication_bytes' must be at least 1024")
        if self.manifests_keep < 1:
            raise ValueError("'manifests_keep' must be at least 1")
        if not 0 < self.popularity_flush_s <= 3600:
            raise ValueError("'popularity_flush_s' must be within (0, 3600]")


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> ControlConfig:
    """Load and validate a control configuration file."""
    conf = cfgload.load(ControlConfig, path, overrides)
    fix = cfgload.path_resolver(path)
    return dataclasses.replace(
        conf, topology=fix(conf.topology), secret_file=fix(conf.secret_file), store=fix(conf.store)
    )
