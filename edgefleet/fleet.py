"""The fleet's shared vocabulary: role tokens, appliance states, heartbeats and snapshots.

Everything that crosses the wire between edge, control and steering is defined here once
(see docs/fleet-api.md); services build and check these documents with these functions and
never import each other's modules.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgefleet.models import is_content_id

ROLE_PREFIX = "edgefleet-role\n"
MIN_SECRET_BYTES = 32
# A heartbeat's `served` map names at most this many content ids. An edge sends what its
# clients fetched in one interval (or a backlog after an outage, merged by the reporter), so
# this is far above any real count while bounding what one request can make control hold.
MAX_SERVED_IDS = 200_000
# Bytes per id per heartbeat: above a petabyte is a corrupt counter, not traffic.
MAX_SERVED_BYTES = 1 << 50


class AuthError(ValueError):
    """A fleet secret file is missing or invalid."""


class ApplianceState(StrEnum):
    """What steering needs to know about an appliance."""

    UP = "up"
    DOWN = "down"
    DRAINING = "draining"
    SATURATED = "saturated"


class ReportedState(StrEnum):
    """What an appliance says about itself in a heartbeat."""

    SERVING = "serving"
    DRAINING = "draining"
    SATURATED = "saturated"


def load_secret(path: str | Path) -> bytes:
    """The fleet secret: a file holding 32+ random bytes as hex."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise AuthError(f"{path}: {exc.strerror}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise AuthError(f"{path}: the fleet secret must be hex") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise AuthError(f"{path}: the fleet secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def role_token(secret: bytes, role: str) -> str:
    """The bearer token of *role* ("appliance:<name>", "steering", "admin")."""
    return hmac.new(secret, (ROLE_PREFIX + role).encode(), "sha256").hexdigest()


def bearer(headers: Any) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class FieldError(ValueError):
    """A JSON document has a missing or invalid field; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _num(doc: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(f"{where}{key}", "must be a finite number")
    return float(value)


def _ids(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(where, "must be a list of content ids")
    for v in value:
        if not is_content_id(v):
            raise FieldError(where, f"invalid content id {v[:140]!r}")
    return value


@dataclass(frozen=True)
class DiskHealth:
    """One disk as an appliance reports it."""

    id: str
    root: str
    free_bytes: int
    total_bytes: int
    failed: bool


@dataclass(frozen=True)
class Health:
    """Machine health from psutil and the edge's own counters."""

    cpu: float = 0.0
    load1: float = 0.0
    memory: float = 0.0
    connections: int = 0
    nic_bps: float = 0.0
    nic_capacity_bps: float = 0.0
    disks: tuple[DiskHealth, ...] = ()
    # Files the edge's scrub has quarantined so far (optional in the document: 0 when absent).
    quarantined: int = 0

    @property
    def load(self) -> float:
        """The bottleneck utilisation, 0..1+: CPU or NIC, whichever is higher."""
        nic = self.nic_bps / self.nic_capacity_bps if self.nic_capacity_bps > 0 else 0.0
        return max(self.cpu, nic)


@dataclass(frozen=True)
class InventoryUpdate:
    """Either a delta from `base` to `version`, or a full list (`full` is not None)."""

    version: int
    base: int = 0
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    full: tuple[str, ...] | None = None
    epoch: str = ""  # the appliance index's id: versions compare only within one epoch


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat from an appliance."""

    state: ReportedState
    health: Health
    prefixes: tuple[str, ...] = ()
    inventory: InventoryUpdate | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Body bytes served per content id since the last acknowledged heartbeat.
    served: dict[str, int] = field(default_factory=dict)


def parse_served(value: Any) -> dict[str, int]:
    """Check a heartbeat's `served` map: content id → body bytes (int, 0..MAX_SERVED_BYTES)."""
    if not isinstance(value, dict):
        raise FieldError("served", "must be an object mapping content ids to byte counts")
    if len(value) > MAX_SERVED_IDS:
        raise FieldError("served", f"names {len(value)} content ids, at most {MAX_SERVED_IDS}")
    for cid, count in value.items():
        if not is_content_id(cid):
            raise FieldError("served", f"invalid content id {cid[:140]!r}")
        if isinstance(count, bool) or not isinstance(count, int):
            raise FieldError(f"served.{cid}", "must be an integer number of bytes")
        if not 0 <= count <= MAX_SERVED_BYTES:
            raise FieldError(f"served.{cid}", f"must be within 0..{MAX_SERVED_BYTES}")
    return value


def parse_heartbeat(doc: Any) -> Heartbeat:
    """Check and convert a heartbeat document; FieldError names the first bad field."""
    if not isinstance(doc, dict):
        raise FieldError("$", "must be a JSON object")
    try:
        state = ReportedState(doc.get("state", "serving"))
    except ValueError:
        raise FieldError("state", "must be serving, draining or saturated") from None
    h = doc.get("health", {})
    if not isinstance(h, dict):
        raise FieldError("health", "must be an object")
    disks = []
    raw_disks = h.get("disks", [])
    if not isinstance(raw_disks, list):
        raise FieldError("health.disks", "must be a list")
    for i, d in enumerate(raw_disks):
        if not isinstance(d, dict):
            raise FieldError(f"health.disks[{i}]", "must be an object")
        disks.append(
            DiskHealth(
                id=str(d.get("id", "")),
                root=str(d.get("root", "")),
                free_bytes=int(_num(d, "free_bytes", f"health.disks[{i}].", 0)),
                total_bytes=int(_num(d, "total_bytes", f"health.disks[{i}].", 0)),
                failed=bool(d.get("failed", False)),
            )
        )
    health = Health(
        cpu=_num(h, "cpu", "health.", 0.0),
        load1=_num(h, "load1", "health.", 0.0),
        memory=_num(h, "memory", "health.", 0.0),
        connections=int(_num(h, "connections", "health.", 0)),
        nic_bps=_num(h, "nic_bps", "health.", 0.0),
        nic_capacity_bps=_num(h, "nic_capacity_bps", "health.", 0.0),
        disks=tuple(disks),
        quarantined=int(_num(h, "quarantined", "health.", 0)),
    )
    prefixes = doc.get("prefixes", [])
    if not isinstance(prefixes, list):
        raise FieldError("prefixes", "must be a list")
    for i, p in enumerate(prefixes):
        try:
            ipaddress.ip_network(p, strict=False)
        except (TypeError, ValueError):
            raise FieldError(f"prefixes[{i}]", f"not an address prefix: {str(p)[:60]!r}") from None
    inventory = None
    inv = doc.get("inventory")
    if inv is not None:
        if not isinstance(inv, dict):
            raise FieldError("inventory", "must be an object")
        version = int(_num(inv, "version", "inventory."))
        epoch = inv.get("epoch", "")
        if not isinstance(epoch, str) or len(epoch) > 64:
            raise FieldError("inventory.epoch", "must be a string of at most 64 characters")
        if "full" in inv:
            inventory = InventoryUpdate(
                version=version, full=tuple(_ids(inv["full"], "inventory.full")), epoch=epoch
            )
        else:
            inventory = InventoryUpdate(
                version=version,
                base=int(_num(inv, "base", "inventory.")),
                added=tuple(_ids(inv.get("added", []), "inventory.added")),
                removed=tuple(_ids(inv.get("removed", []), "inventory.removed")),
                epoch=epoch,
            )
    served = parse_served(doc["served"]) if "served" in doc else {}
    known = ("state", "health", "prefixes", "inventory", "served")
    extra = {k: v for k, v in doc.items() if k not in known}
    return Heartbeat(state, health, tuple(str(p) for p in prefixes), inventory, extra, served)


def health_to_json(health: Health) -> dict[str, Any]:
    """A Health as its JSON object."""
    return {
        "cpu": health.cpu,
        "load1": health.load1,
        "memory": health.memory,
        "connections": health.connections,
        "nic_bps": health.nic_bps,
        "nic_capacity_bps": health.nic_capacity_bps,
        "disks": [
            {
                "id": d.id,
                "root": d.root,
                "free_bytes": d.free_bytes,
                "total_bytes": d.total_bytes,
                "failed": d.failed,
            }
            for d in health.disks
        ],
        "quarantined": health.quarantined,
    }
