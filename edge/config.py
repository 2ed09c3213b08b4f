"""The edge server's configuration: one frozen object, loaded from TOML once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgefleet import config as cfgload


@dataclass(frozen=True)
class ListenConfig:
    """Where workers accept connections."""

    host: str = "127.0.0.1"
    port: int = 8080
    backlog: int = 1024


@dataclass(frozen=True)
class TokenConfig:
    """Signed-URL verification. Disabling it must be said explicitly (`required = false`)."""

    required: bool = True
    keyring: str = ""
    # Refuse tokens not bound to the client's address.
    require_client_binding: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    """Per-connection limits against broken and hostile clients."""

    max_header_bytes: int = 8192
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 15.0
    # A client that reads nothing for this long is cut off (slow-read attacks).
    send_timeout_s: float = 60.0
    max_connections_per_worker: int = 10_000
    max_pipelined_requests: int = 32
    max_ranges: int = 16
    # Body bytes one connection may send per event-loop turn before the others get theirs
    # (nginx's sendfile_max_chunk): one sendfile into an empty socket buffer can queue megabytes
    # and hold the worker for a millisecond while every other client waits.
    send_chunk_bytes: int = 512 * 1024


@dataclass(frozen=True)
class ControlLink:
    """How the appliance reports to the control plane; empty `url` runs the edge standalone."""

    url: str = ""
    appliance: str = ""  # this appliance's name in the fleet topology
    # Where clients reach this appliance (reported at registration; the topology may pin it).
    # Empty: http://<listen.host>:<port actually bound>.
    base_url: str = ""
    secret_file: str = ""  # the fleet secret (hex); the appliance's token is derived from it
    prefixes: tuple[str, ...] = ()  # routes this appliance serves (reported to control)
    nic: str = ""  # interface whose sent bytes are reported; empty: all but loopback
    nic_capacity_bps: float = 0.0  # 0: read /sys/class/net/<nic>/speed
    timeout_s: float = 2.0


@dataclass(frozen=True)
class ScrubConfig:
    """The background re-hash of indexed files (edge.scrub)."""

    enabled: bool = True
    # Low by default: the scrub shares the disks with serving. 0 also disables it.
    rate_bytes_per_s: int = 20_000_000
    # Read around the page cache (O_DIRECT) so the bytes hashed are the device's, not a cached
    # copy; filesystems that refuse O_DIRECT (tmpfs) fall back to buffered reads.
    direct_io: bool = True


@dataclass(frozen=True)
class DiskWatchConfig:
    """How a disk is declared failed and back (edge.diskwatch; docs/edge.md "Disks and scrub")."""

    probe_interval_s: float = 1.0
    # Consecutive failed probes (or scrub read errors without a good probe between them)
    # before the disk is failed: one transient error must not empty a disk.
    fail_after: int = 3
    # Consecutive good probes before a failed disk is used again.
    recover_after: int = 30


@dataclass(frozen=True)
class EdgeConfig:
    """Everything `edgefleet edge serve` needs."""

    index: str = "/var/lib/edgefleet/index"
    disks: tuple[str, ...] = ("/srv/edgefleet/disk0",)
    # 0 means one worker per CPU core.
    workers: int = 0
    runtime_dir: str = "/run/edgefleet"
    access_log: str = ""  # path; empty disables the access log
    drain_timeout_s: float = 30.0
    fd_cache_size: int = 4096
    # The response header leaves in the same TCP segment as the body (MSG_MORE) when the body
    # is at most this many bytes, and as its own segment otherwise: one packet for small
    # ranges, no stalled partial segment for large ones (docs/edge.md). 0: always separate.
    header_coalesce_max_bytes: int = 32768
    # Use os.sendfile for bodies; false forces the pread+send fallback (also used on TLS or
    # filesystems where sendfile fails).
    sendfile: bool = True
    uvloop: bool = True
    listen: ListenConfig = field(default_factory=ListenConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    control: ControlLink = field(default_factory=ControlLink)
    scrub: ScrubConfig = field(default_factory=ScrubConfig)
    diskwatch: DiskWatchConfig = field(default_factory=DiskWatchConfig)

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if not self.disks:
            raise ValueError("'disks' must list at least one disk root")
        if self.workers < 0:
            raise ValueError("'workers' must be >= 0")
        if not 0 <= self.listen.port <= 65535:
            raise ValueError("'listen.port' must be 0..65535")
        if self.tokens.required and not self.tokens.keyring:
            raise ValueError("'tokens.keyring' is required while 'tokens.required' is true")
        if self.limits.max_header_bytes < 256:
            raise ValueError("'limits.max_header_bytes' must be at least 256")
        if self.limits.max_ranges < 1:
            raise ValueError("'limits.max_ranges' must be at least 1")
        if self.limits.send_chunk_bytes < 65536:
            raise ValueError("'limits.send_chunk_bytes' must be at least 65536")
        if self.control.url and not (self.control.appliance and self.control.secret_file):
            raise ValueError(
                "'control.appliance' and 'control.secret_file' are required with 'control.url'"
            )
        if self.scrub.rate_bytes_per_s < 0:
            raise ValueError("'scrub.rate_bytes_per_s' must be >= 0 (0 disables the scrub)")
        if self.diskwatch.probe_interval_s <= 0:
            raise ValueError("'diskwatch.probe_interval_s' must be positive")
        for key in ("fail_after", "recover_after"):
            if getattr(self.diskwatch, key) < 1:
                raise ValueError(f"'diskwatch.{key}' must be at least 1")
        for key in ("header_timeout_s", "keep_alive_timeout_s", "send_timeout_s"):
            if getattr(self.limits, key) <= 0:
                raise ValueError(f"'limits.{key}' must be positive")

    @property
    def worker_count(self) -> int:
        """Workers to run: the configured number, or one per core."""
        return self.workers or os.cpu_count() or 1


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> EdgeConfig:
    """Load and validate an edge configuration file."""
    conf = cfgload.load(EdgeConfig, path, overrides)
    fix = cfgload.path_resolver(path)
    return replace(
        conf,
        index=fix(conf.index),
        disks=tuple(fix(d) for d in conf.disks),
        runtime_dir=fix(conf.runtime_dir),
        access_log=fix(conf.access_log),
        tokens=replace(conf.tokens, keyring=fix(conf.tokens.keyring)),
        control=replace(conf.control, secret_file=fix(conf.control.secret_file)),
    )
