"""The fill agent's configuration: one frozen object, loaded from TOML once at start-up.

The agent runs next to the edge server on the same appliance and shares its index, disks,
keyring and runtime directory: the fill config names the edge config file and reuses its
loading (`edge.store.load_config`) instead of repeating those paths. The control URL, appliance name
and fleet secret default to the edge config's `[control]` table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.store import EdgeConfig, load_config
from edgefleet import config as cfgload
from edgefleet.manifests import NAME_RE
from fill.agent.decisions import parse_hhmm

# Netflix's published figure for a storage appliance: 1.2 Gbps = 150 MB/s.
DEFAULT_RATE_CAP_BYTES_PER_S = 150_000_000.0


@dataclass(frozen=True)
class FillAgentConfig:
    """Everything `edgefleet fill run` needs (besides the edge config it names)."""

    edge_config: str = "/etc/edgefleet/edge.toml"
    # Empty: the edge config's control.url / control.appliance / control.secret_file.
    control_url: str = ""
    appliance: str = ""
    secret_file: str = ""
    control_timeout_s: float = 10.0
    # The fill window, local time: scheduled runs fetch only within [start, start + length).
    window_start: str = "02:00"
    window_length_s: float = 12 * 3600.0
    # One cap for all parallel downloads together, in bytes (not bits) per second; 0: none.
    rate_cap_bytes_per_s: float = DEFAULT_RATE_CAP_BYTES_PER_S
    parallel_downloads: int = 4
    # A source that sends nothing for this long (or does not connect) is given up for the next.
    source_timeout_s: float = 10.0
    # Lifetime of the signed URLs the agent fetches with.
    url_ttl_s: int = 300
    # A dropped file leaves the index at once and the disk after this long, so steering (which
    # learns inventories from control) never sends a client to a file that is gone.
    delete_grace_s: float = 3600.0
    # Bytes kept free on every disk.
    disk_reserve_bytes: int = 0
    # How often the status file (Prometheus gauges on the edge's /metrics) is rewritten.
    status_interval_s: float = 1.0

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if not self.edge_config:
            raise ValueError("'edge_config' must name the edge's TOML file")
        try:
            parse_hhmm(self.window_start)
        except ValueError as exc:
            raise ValueError(f"'window_start': {exc}") from None
        if not 0 < self.window_length_s <= 24 * 3600:
            raise ValueError("'window_length_s' must be in (0, 86400]")
        if self.rate_cap_bytes_per_s < 0:
            raise ValueError("'rate_cap_bytes_per_s' must be >= 0 (0: no cap)")
        if not 1 <= self.parallel_downloads <= 256:
            raise ValueError("'parallel_downloads' must be 1..256")
        for key in ("source_timeout_s", "control_timeout_s", "status_interval_s"):
            if getattr(self, key) <= 0:
                raise ValueError(f"'{key}' must be positive")
        if self.url_ttl_s < 10:
            raise ValueError("'url_ttl_s' must be at least 10")
        if self.delete_grace_s < 0:
            raise ValueError("'delete_grace_s' must be >= 0")
        if self.disk_reserve_bytes < 0:
            raise ValueError("'disk_reserve_bytes' must be >= 0")
        if self.appliance and NAME_RE.fullmatch(self.appliance) is None:
            raise ValueError("'appliance' must be an appliance name")


@dataclass(frozen=True)
class AgentSettings:
    """The fill config with the edge config it names, and the control link resolved."""

    fill: FillAgentConfig
    edge: EdgeConfig
    control_url: str
    appliance: str
    secret_file: str


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> AgentSettings:
    """Load and validate a fill config and the edge config it names."""
    conf = cfgload.load(FillAgentConfig, path, overrides)
    fix = cfgload.path_resolver(path)
    conf = replace(conf, edge_config=fix(conf.edge_config), secret_file=fix(conf.secret_file))
    edge = load_config(conf.edge_config)
    where = str(path) if path is not None else "<defaults>"
    if not edge.tokens.keyring:
        raise cfgload.ConfigError(
            f"{conf.edge_config}: 'tokens.keyring' is needed to sign the fill's source URLs"
        )
    appliance = conf.appliance or edge.control.appliance
    if not appliance:
        raise cfgload.ConfigError(
            f"{where}: 'appliance' is required (or control.appliance in the edge config)"
        )
    return AgentSettings(
        fill=conf,
        edge=edge,
        control_url=(conf.control_url or edge.control.url).rstrip("/"),
        appliance=appliance,
        secret_file=conf.secret_file or edge.control.secret_file,
    )
