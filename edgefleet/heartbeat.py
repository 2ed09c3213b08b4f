"""The appliance ↔ control conversation: registration, heartbeat and their replies.

docs/fleet-api.md describes these documents; this module is their one owner. Each is a frozen
dataclass with `to_json()` (what the sender posts or answers) and `from_json()` (what the
receiver checks), so the edge's reporter and control's handlers build and read the same types.
A malformed document raises `FieldError` naming the first bad field; control answers it 422.

Unknown keys are ignored on parsing: an older control must accept a newer appliance's
heartbeat and the reverse.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from edgefleet.fleet import FieldError
from edgefleet.models import is_content_id

# A heartbeat's `served` map names at most this many content ids. An edge sends what its
# clients fetched in one interval (or a backlog after an outage, merged by the reporter), so
# this is far above any real count while bounding what one request can make control hold.
MAX_SERVED_IDS = 200_000
# Bytes per id per heartbeat: above a petabyte is a corrupt counter, not traffic.
MAX_SERVED_BYTES = 1 << 50
# Registration strings (software, boot id, base URL, inventory epoch) are at most this long.
MAX_REGISTER_CHARS = 200
# An inventory epoch (the appliance index's id) is at most this long.
MAX_EPOCH_CHARS = 64


class UnnamedFieldError(FieldError):
    """A bad document the parser failed to name a field for: a gap in the parser, which the
    receiving side answers like any FieldError (422) and also logs, so that it gets fixed."""


class ReportedState(StrEnum):
    """What an appliance says about itself in a heartbeat."""

    SERVING = "serving"
    DRAINING = "draining"
    SATURATED = "saturated"


def _object(
    doc: Any, where: str, message: str = "must be an object", *, prefix_field: bool = True
) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise FieldError(where, message, prefix_field=prefix_field)
    return doc


def _num(doc: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(f"{where}{key}", "must be a finite number")
    return float(value)


def _int(doc: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    """A number as an int; an integer stays exact (a float would round above 2**53)."""
    value = doc.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(_num(doc, key, where, default))


def _flag(doc: dict[str, Any], key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise FieldError(key, "must be true or false")
    return value


def _ids(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(where, "must be a list of content ids")
    for v in value:
        if not is_content_id(v):
            raise FieldError(where, f"invalid content id {v[:140]!r}")
    return tuple(value)


def _interval(doc: dict[str, Any]) -> float:
    interval = _num(doc, "heartbeat_interval_s", "")
    if interval <= 0:
        raise FieldError("heartbeat_interval_s", "must be above 0")
    return interval


# -- registration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """What an appliance posts when it (re)starts talking to control; every field optional."""

    software: str = ""
    boot_id: str = ""
    base_url: str = ""  # where clients reach it; the topology's base_url wins
    inventory_epoch: str = ""  # the appliance index's id (see InventoryUpdate.epoch)

    def to_json(self) -> dict[str, Any]:
        """The JSON body; empty fields are left out."""
        doc = {
            "software": self.software,
            "boot_id": self.boot_id,
            "base_url": self.base_url,
            "inventory_epoch": self.inventory_epoch,
        }
        return {k: v for k, v in doc.items() if v}

    @classmethod
    def from_json(cls, doc: Any) -> Registration:
        """Check a registration body (an empty body is `{}`)."""
        doc = _object(doc, "$", "must be a JSON object", prefix_field=False)
        values = {}
        for key in ("software", "boot_id", "base_url", "inventory_epoch"):
            value = doc.get(key, "")
            if not isinstance(value, str) or len(value) > MAX_REGISTER_CHARS:
                raise FieldError(
                    key,
                    f"must be a string of at most {MAX_REGISTER_CHARS} characters",
                    prefix_field=False,
                )
            values[key] = value
        url = values["base_url"]
        if url and not is_http_url(url):
            raise FieldError("base_url", "must be an http(s) URL", prefix_field=False)
        return cls(**values)


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host, as a base URL must be."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True)
class RegisterReply:
    """What control answers a registration."""

    heartbeat_interval_s: float
    inventory_version: int  # 0: send a full inventory

    def to_json(self) -> dict[str, Any]:
        """The JSON body."""
        return {
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "inventory_version": self.inventory_version,
        }

    @classmethod
    def from_json(cls, doc: Any) -> RegisterReply:
        """Check control's answer to a registration."""
        doc = _object(doc, "$", "must be a JSON object")
        return cls(_interval(doc), _int(doc, "inventory_version", "", 0))


# -- heartbeat ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskHealth:
    """One disk as an appliance reports it."""

    id: str
    root: str
    free_bytes: int
    total_bytes: int
    failed: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "id": self.id,
            "root": self.root,
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> DiskHealth:
        """Check one disk of `health.disks`; *where* is its path in the heartbeat."""
        d = _object(doc, where)
        return cls(
            id=str(d.get("id", "")),
            root=str(d.get("root", "")),
            free_bytes=_int(d, "free_bytes", f"{where}.", 0),
            total_bytes=_int(d, "total_bytes", f"{where}.", 0),
            failed=bool(d.get("failed", False)),
        )


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

    def to_json(self) -> dict[str, Any]:
        """The JSON object (also shown by control's GET /v1/appliances)."""
        return {
            "cpu": self.cpu,
            "load1": self.load1,
            "memory": self.memory,
            "connections": self.connections,
            "nic_bps": self.nic_bps,
            "nic_capacity_bps": self.nic_capacity_bps,
            "disks": [d.to_json() for d in self.disks],
            "quarantined": self.quarantined,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Health:
        """Check a heartbeat's `health` object; absent numbers are 0."""
        h = _object(doc, "health")
        raw_disks = h.get("disks", [])
        if not isinstance(raw_disks, list):
            raise FieldError("health.disks", "must be a list")
        disks = tuple(
            DiskHealth.from_json(d, f"health.disks[{i}]") for i, d in enumerate(raw_disks)
        )
        return cls(
            cpu=_num(h, "cpu", "health.", 0.0),
            load1=_num(h, "load1", "health.", 0.0),
            memory=_num(h, "memory", "health.", 0.0),
            connections=_int(h, "connections", "health.", 0),
            nic_bps=_num(h, "nic_bps", "health.", 0.0),
            nic_capacity_bps=_num(h, "nic_capacity_bps", "health.", 0.0),
            disks=disks,
            quarantined=_int(h, "quarantined", "health.", 0),
        )


@dataclass(frozen=True)
class InventoryUpdate:
    """Either a delta from `base` to `version`, or a full list (`full` is not None)."""

    version: int
    base: int = 0
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    full: tuple[str, ...] | None = None
    epoch: str = ""  # the appliance index's id: versions compare only within one epoch

    def to_json(self) -> dict[str, Any]:
        """The JSON object: `full` for a full list, else `base`, `added` and `removed`."""
        if self.full is not None:
            return {"epoch": self.epoch, "version": self.version, "full": list(self.full)}
        return {
            "epoch": self.epoch,
            "base": self.base,
            "version": self.version,
            "added": list(self.added),
            "removed": list(self.removed),
        }

    @classmethod
    def from_json(cls, doc: Any) -> InventoryUpdate:
        """Check a heartbeat's `inventory` object."""
        inv = _object(doc, "inventory")
        version = _int(inv, "version", "inventory.")
        epoch = inv.get("epoch", "")
        if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_CHARS:
            raise FieldError(
                "inventory.epoch", f"must be a string of at most {MAX_EPOCH_CHARS} characters"
            )
        if "full" in inv:
            return cls(version=version, full=_ids(inv["full"], "inventory.full"), epoch=epoch)
        return cls(
            version=version,
            base=_int(inv, "base", "inventory."),
            added=_ids(inv.get("added", []), "inventory.added"),
            removed=_ids(inv.get("removed", []), "inventory.removed"),
            epoch=epoch,
        )


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


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat from an appliance."""

    state: ReportedState
    health: Health
    prefixes: tuple[str, ...] = ()
    inventory: InventoryUpdate | None = None
    # Where clients reach it, repeated so a restarted control learns it without a
    # registration. Not checked here: control ignores anything but an http(s) URL.
    base_url: str = ""
    # Body bytes served per content id since the last acknowledged heartbeat.
    served: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON body; `base_url`, `inventory` and `served` only when there are some."""
        doc: dict[str, Any] = {"state": self.state.value}
        if self.base_url:
            doc["base_url"] = self.base_url
        doc["health"] = self.health.to_json()
        doc["prefixes"] = list(self.prefixes)
        if self.inventory is not None:
            doc["inventory"] = self.inventory.to_json()
        if self.served:
            doc["served"] = dict(self.served)
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Heartbeat:
        """Check and convert a heartbeat document; FieldError names the first bad field."""
        try:
            return cls._from_json(doc)
        except FieldError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            # Every bad input should have been named above; never let one escape as a 500.
            raise UnnamedFieldError("$", f"invalid heartbeat: {exc}", prefix_field=False) from None

    @classmethod
    def _from_json(cls, doc: Any) -> Heartbeat:
        doc = _object(doc, "$", "must be a JSON object")
        prefixes = doc.get("prefixes", [])
        for i, prefix in enumerate(prefixes if isinstance(prefixes, list) else ()):
            # Checked first, as control always has (ip_network(5) would be 0.0.0.5/32).
            if not isinstance(prefix, str):
                raise FieldError(
                    f"prefixes[{i}]", "must be an address prefix string", prefix_field=False
                )
        try:
            state = ReportedState(doc.get("state", "serving"))
        except ValueError:
            raise FieldError("state", "must be serving, draining or saturated") from None
        health = Health.from_json(doc.get("health", {}))
        if not isinstance(prefixes, list):
            raise FieldError("prefixes", "must be a list")
        for i, p in enumerate(prefixes):
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise FieldError(f"prefixes[{i}]", f"not an address prefix: {p[:60]!r}") from None
        inv = doc.get("inventory")
        inventory = None if inv is None else InventoryUpdate.from_json(inv)
        served = parse_served(doc["served"]) if "served" in doc else {}
        url = doc.get("base_url", "")
        base_url = url if isinstance(url, str) else ""
        return cls(state, health, tuple(prefixes), inventory, base_url, served)


@dataclass(frozen=True)
class HeartbeatReply:
    """What control answers a heartbeat."""

    heartbeat_interval_s: float
    resync: bool  # send a full inventory next time
    drain: bool  # an operator asked this appliance to drain

    def to_json(self) -> dict[str, Any]:
        """The JSON body."""
        return {
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "resync": self.resync,
            "drain": self.drain,
        }

    @classmethod
    def from_json(cls, doc: Any) -> HeartbeatReply:
        """Check control's answer to a heartbeat (absent flags are false)."""
        doc = _object(doc, "$", "must be a JSON object")
        return cls(_interval(doc), _flag(doc, "resync"), _flag(doc, "drain"))
