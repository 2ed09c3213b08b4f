"""The fleet topology: regions, sites, appliances and fleet-wide settings, from one TOML file.

Pure: `parse_topology` turns an already-read TOML mapping into a frozen `Topology` or raises
`TopologyError` naming the bad entry the way an operator would find it in the file
("sites[1] 'ams1': unknown region 'eu-wst'"). `load_topology` only adds the file read.

    [fleet]        heartbeat_interval_s, down_after_missed, saturation_threshold
    [[regions]]    name
    [[sites]]      name, region, role = "edge" | "origin", lat, lon, prefixes = [CIDR, ...],
                   [sites.costs] site = cost
    [[appliances]] name, site, base_url, weight, nic_capacity_bps, capacity_bytes

An origin site holds the whole catalog: the fill planner never places files there, and its
appliances are every manifest's last source. It serves no clients, so it may list no prefixes.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Names appear in URL paths and in role tokens ("appliance:<name>"): keep them plain.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_TOP_KEYS = frozenset({"fleet", "regions", "sites", "appliances"})
_FLEET_KEYS = frozenset({"heartbeat_interval_s", "down_after_missed", "saturation_threshold"})
_REGION_KEYS = frozenset({"name"})
_SITE_KEYS = frozenset({"name", "region", "role", "lat", "lon", "prefixes", "costs"})
_APPLIANCE_KEYS = frozenset(
    {"name", "site", "base_url", "weight", "nic_capacity_bps", "capacity_bytes"}
)
SITE_ROLES = ("edge", "origin")


class TopologyError(ValueError):
    """The topology file is unreadable or invalid; the message names the bad entry."""


@dataclass(frozen=True)
class FleetSettings:
    """Fleet-wide timing and thresholds (the `[fleet]` table)."""

    heartbeat_interval_s: float = 2.0
    down_after_missed: int = 3
    saturation_threshold: float = 0.9

    @property
    def down_after_s(self) -> float:
        """Silence after which an appliance is down."""
        return self.heartbeat_interval_s * self.down_after_missed


@dataclass(frozen=True)
class Region:
    """A group of sites (`[[regions]]`)."""

    name: str


@dataclass(frozen=True)
class Site:
    """A location with appliances, the client prefixes it serves and its costs to other sites."""

    name: str
    region: str
    lat: float
    lon: float
    prefixes: tuple[str, ...] = ()
    costs: Mapping[str, float] = field(default_factory=dict)
    role: str = "edge"  # or "origin": holds the whole catalog, never planned


@dataclass(frozen=True)
class ApplianceSpec:
    """An appliance as the operator declares it (`[[appliances]]`)."""

    name: str
    site: str
    base_url: str
    weight: float = 1.0
    # 0: use the capacity the appliance reports in its heartbeats.
    nic_capacity_bps: float = 0.0
    # Bytes the fill may use; 0: the total of the non-failed disks it reports.
    capacity_bytes: int = 0


@dataclass(frozen=True)
class Topology:
    """The whole fleet as declared; appliances keep file order (snapshot indexes follow it)."""

    fleet: FleetSettings = field(default_factory=FleetSettings)
    regions: tuple[Region, ...] = ()
    sites: tuple[Site, ...] = ()
    appliances: tuple[ApplianceSpec, ...] = ()
    # Lookups by name, built once (requests name appliances in their paths).
    _by_name: Mapping[str, ApplianceSpec] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {a.name: a for a in self.appliances})

    def appliance(self, name: str) -> ApplianceSpec | None:
        """The appliance called *name*, or None."""
        return self._by_name.get(name)

    def site(self, name: str) -> Site | None:
        """The site called *name*, or None."""
        return next((s for s in self.sites if s.name == name), None)

    def appliance_names(self) -> tuple[str, ...]:
        """Appliance names in file order."""
        return tuple(a.name for a in self.appliances)

    def summary(self) -> str:
        """One line for logs and `check-config`."""
        return (
            f"{len(self.regions)} regions, {len(self.sites)} sites, "
            f"{len(self.appliances)} appliances"
        )


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise TopologyError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: {exc}") from None
    try:
        return parse_topology(data)
    except TopologyError as exc:
        raise TopologyError(f"{path}: {exc}") from None


def parse_topology(data: Mapping[str, Any]) -> Topology:
    """Build and cross-check a Topology from a TOML mapping."""
    _no_unknown(data, _TOP_KEYS, "")
    fleet = _parse_fleet(data.get("fleet", {}))
    regions = tuple(
        Region(name=_name(entry, where)) for where, entry in _entries(data, "regions", _REGION_KEYS)
    )
    _unique([r.name for r in regions], "regions")
    region_names = {r.name for r in regions}

    sites: list[Site] = []
    owner: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for index, entry in _entries(data, "sites", _SITE_KEYS):
        name = _name(entry, index)
        where = f"{index} '{name}'"
        region = _str(entry, "region", where)
        if region not in region_names:
            raise TopologyError(f"{where}: unknown region '{region}'")
        role = entry.get("role", "edge")
        if role not in SITE_ROLES:
            raise TopologyError(f'{where}: role must be "edge" or "origin", not {role!r}')
        lat = _number(entry, "lat", where, lo=-90.0, hi=90.0)
        lon = _number(entry, "lon", where, lo=-180.0, hi=180.0)
        prefixes = []
        raw = entry.get("prefixes", [])
        if not isinstance(raw, list):
            raise TopologyError(f"{where}: 'prefixes' must be a list of CIDR strings")
        for i, text in enumerate(raw):
            net = _cidr(text, f"{where}: prefixes[{i}]")
            # The same prefix at two sites would make longest-prefix match ambiguous.
            if net in owner:
                raise TopologyError(f"{where}: prefix {net} is already served by '{owner[net]}'")
            owner[net] = name
            prefixes.append(str(net))
        costs = entry.get("costs", {})
        if not isinstance(costs, dict):
            raise TopologyError(f"{where}: 'costs' must be a table of site = cost")
        for other, cost in costs.items():
            if isinstance(cost, bool) or not isinstance(cost, int | float):
                raise TopologyError(f"{where}: costs.{other} must be a number")
            if not math.isfinite(cost) or cost < 0:
                raise TopologyError(f"{where}: costs.{other} must be finite and >= 0")
        sites.append(
            Site(
                name=name,
                region=region,
                lat=lat,
                lon=lon,
                prefixes=tuple(prefixes),
                costs={k: float(v) for k, v in costs.items()},
                role=role,
            )
        )
    _unique([s.name for s in sites], "sites")
    site_names = {s.name for s in sites}
    for i, site in enumerate(sites):
        for other in site.costs:
            if other not in site_names:
                raise TopologyError(f"sites[{i}] '{site.name}': costs name unknown site '{other}'")

    appliances: list[ApplianceSpec] = []
    for index, entry in _entries(data, "appliances", _APPLIANCE_KEYS):
        name = _name(entry, index)
        where = f"{index} '{name}'"
        site_name = _str(entry, "site", where)
        if site_name not in site_names:
            raise TopologyError(f"{where}: unknown site '{site_name}'")
        # Optional: without it, control uses the URL the appliance reports when it registers.
        base_url = _str(entry, "base_url", where) if "base_url" in entry else ""
        parts = urlsplit(base_url)
        if base_url and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise TopologyError(f"{where}: base_url must be an http(s) URL, not {base_url!r}")
        weight = _number(entry, "weight", where, default=1.0)
        if weight <= 0:
            raise TopologyError(f"{where}: weight must be > 0")
        capacity = _number(entry, "nic_capacity_bps", where, default=0.0, lo=0.0)
        storage = entry.get("capacity_bytes", 0)
        if isinstance(storage, bool) or not isinstance(storage, int) or storage < 0:
            raise TopologyError(f"{where}: 'capacity_bytes' must be an integer >= 0")
        appliances.append(
            ApplianceSpec(
                name=name,
                site=site_name,
                base_url=base_url.rstrip("/"),
                weight=weight,
                nic_capacity_bps=capacity,
                capacity_bytes=storage,
            )
        )
    _unique([a.name for a in appliances], "appliances")
    return Topology(fleet=fleet, regions=regions, sites=tuple(sites), appliances=tuple(appliances))


# -- helpers -------------------------------------------------------------------------------


def _parse_fleet(raw: Any) -> FleetSettings:
    if not isinstance(raw, dict):
        raise TopologyError("[fleet] must be a table")
    _no_unknown(raw, _FLEET_KEYS, "fleet.")
    interval = _number(raw, "heartbeat_interval_s", "[fleet]", default=2.0)
    if interval <= 0:
        raise TopologyError("[fleet]: heartbeat_interval_s must be > 0")
    missed = raw.get("down_after_missed", 3)
    if isinstance(missed, bool) or not isinstance(missed, int) or missed < 1:
        raise TopologyError("[fleet]: down_after_missed must be an integer >= 1")
    threshold = _number(raw, "saturation_threshold", "[fleet]", default=0.9)
    if threshold <= 0:
        raise TopologyError("[fleet]: saturation_threshold must be > 0")
    return FleetSettings(interval, missed, threshold)


def _entries(
    data: Mapping[str, Any], key: str, allowed: frozenset[str]
) -> list[tuple[str, dict[str, Any]]]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        raise TopologyError(f"'{key}' must be an array of tables ([[{key}]])")
    out = []
    for i, entry in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise TopologyError(f"{where}: must be a table")
        _no_unknown(entry, allowed, f"{where}.")
        out.append((where, entry))
    return out


def _no_unknown(entry: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise TopologyError(f"unknown key '{prefix}{unknown[0]}'")


def _str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise TopologyError(f"{where}: '{key}' is required (a string)")
    return value


def _name(entry: Mapping[str, Any], where: str) -> str:
    name = _str(entry, "name", where)
    if not NAME_RE.fullmatch(name):
        raise TopologyError(f"{where}: name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}")
    return name


def _number(
    entry: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: float | None = None,
    lo: float = -math.inf,
    hi: float = math.inf,
) -> float:
    value = entry.get(key, default)
    if value is None:
        raise TopologyError(f"{where}: '{key}' is required (a number)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TopologyError(f"{where}: '{key}' must be a finite number")
    if not lo <= value <= hi:
        raise TopologyError(f"{where}: '{key}' must be within {lo:g}..{hi:g}")
    return float(value)


def _cidr(text: Any, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(text, str):
        raise TopologyError(f"{where} must be a CIDR string")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise TopologyError(f"{where} {text!r} is not a valid prefix ({exc})") from None


def _unique(names: list[str], what: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise TopologyError(f"{what}[{i}] '{name}': duplicate name (also {what}[{seen[name]}])")
        seen[name] = i
