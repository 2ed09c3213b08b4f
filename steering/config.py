"""The steering service's configuration: one frozen object, loaded from TOML once at start-up."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet import config as cfgload


@dataclass(frozen=True)
class ListenConfig:
    """Where the steering API accepts connections."""

    host: str = "127.0.0.1"
    port: int = 7080
    backlog: int = 1024


@dataclass(frozen=True)
class SteeringConfig:
    """Everything `edgefleet steering serve` needs."""

    control_url: str = "http://127.0.0.1:7070"
    # The fleet secret (hex): steering presents role_token(secret, "steering") to control.
    secret_file: str = ""
    # The keyring the edges verify signed URLs with (edgefleet.tokens).
    keyring: str = ""
    url_ttl_s: int = 3600
    # Signed URLs are bound to the client's network of this length: IPv4 (and IPv4-mapped)
    # clients use client_prefix_len, IPv6 clients client_prefix_len_v6.
    client_prefix_len: int = 32
    client_prefix_len_v6: int = 128
    snapshot_interval_s: float = 1.0
    # Give up on one snapshot request after this long (a large snapshot takes a while).
    snapshot_timeout_s: float = 30.0
    # Bounded load: an appliance at or above load_bound times its fair share is moved down.
    load_bound: float = 1.25
    # Half-life of the decayed counts of assignments steering made.
    load_half_life_s: float = 5.0
    default_max_urls: int = 3
    max_ids_per_request: int = 100
    uvloop: bool = True
    listen: ListenConfig = field(default_factory=ListenConfig)

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if not self.control_url.startswith(("http://", "https://")):
            raise ValueError("'control_url' must be an http:// or https:// URL")
        if not self.secret_file:
            raise ValueError("'secret_file' is required (the fleet secret)")
        if not self.keyring:
            raise ValueError("'keyring' is required (the keys signed URLs are made with)")
        if self.url_ttl_s < 1:
            raise ValueError("'url_ttl_s' must be at least 1")
        if not 0 <= self.client_prefix_len <= 32:
            raise ValueError("'client_prefix_len' must be 0..32")
        if not 0 <= self.client_prefix_len_v6 <= 128:
            raise ValueError("'client_prefix_len_v6' must be 0..128")
        for key in ("snapshot_interval_s", "snapshot_timeout_s", "load_half_life_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"'{key}' must be positive")
        if not self.load_bound > 1.0:
            raise ValueError("'load_bound' must be greater than 1.0")
        if not 1 <= self.default_max_urls <= 20:
            raise ValueError("'default_max_urls' must be 1..20")
        if self.max_ids_per_request < 1:
            raise ValueError("'max_ids_per_request' must be at least 1")
        if not 0 <= self.listen.port <= 65535:
            raise ValueError("'listen.port' must be 0..65535")


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> SteeringConfig:
    """Load and validate a steering configuration; relative paths are relative to the file."""
    conf = cfgload.load(SteeringConfig, path, overrides)
    fix = cfgload.path_resolver(path)
    return dataclasses.replace(conf, secret_file=fix(conf.secret_file), keyring=fix(conf.keyring))
