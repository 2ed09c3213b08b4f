"""The fleet snapshot from control, checked and turned into an immutable index for ranking.

`build_index(doc)` validates a parsed snapshot document (docs/fleet-api.md, "Snapshot") and
precomputes everything a steering decision needs, so that a request costs dictionary lookups:

- `contents`: content id (UTF-8 bytes) → tuple of appliance indexes. Identical tuples are
  shared (a catalog replicated the same way on many files costs one tuple). Keys are copied out
  of the decoded document as bytes: the document's strings would otherwise stay scattered over
  memory pages the rest of the document no longer uses, and keep them from being returned
  (a 1,000,000-id snapshot: about 200 MiB of resident memory).
- `site_order[s]`: all sites ordered for a client of site s (s first, then by network cost
  from s, then by great-circle distance); `site_rank[s][t]` is t's position in that order.
- per appliance: its site, whether it may be sent clients (`up`), its hash seed and weight;
  per site: its up appliances, their total weight and their total reported load.
- `prefixes`: a PrefixTable of site indexes.

A document that fails any check raises FieldError naming the field; the caller keeps its last
good index. Content ids in the snapshot are not pattern-checked (a million regex matches cost
half a second): steering only looks up ids that passed the request's check.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from edgefleet.fleet import ApplianceState, FieldError
from edgefleet.rendezvous import appliance_seed
from steering.prefixes import PrefixError, PrefixTable

EARTH_RADIUS_KM = 6371.0
# Reported loads below this count as this much: differences among idle appliances are noise,
# not worth losing cache affinity over (see steering/ranking.py).
LOAD_FLOOR = 0.2


@dataclass(frozen=True, slots=True)
class ParsedContents:
    """`contents` already decoded by steering.decode: ids as bytes, holder lists as tuples."""

    entries: dict[bytes, tuple[int, ...]]
    high: int  # the largest appliance index in any list; -1 when there is none


@dataclass(frozen=True, slots=True)
class Site:
    """One site of the topology."""

    name: str
    region: str
    lat: float
    lon: float
    prefixes: tuple[str, ...]
    costs: dict[str, float]
    # "origin": the site's appliances hold the whole catalog for fills and are never given
    # to players (an origin's uplink is the fleet's, not a client's).
    role: str = "edge"


@dataclass(frozen=True, slots=True)
class Appliance:
    """One appliance as control last saw it."""

    name: str
    site: int  # index into FleetIndex.sites
    base_url: str
    weight: float
    state: ApplianceState
    load: float
    seed: int  # xxh64 of the name: the appliance's rendezvous hash seed


@dataclass(frozen=True, slots=True)
class FleetIndex:
    """Everything steering needs from one snapshot, precomputed; read-only while in use."""

    version: int
    generated_at: float
    contents_version: int | None  # control's version of `contents` (None: not sent)
    sites: tuple[Site, ...]
    appliances: tuple[Appliance, ...]
    contents: dict[bytes, tuple[int, ...]]
    prefixes: PrefixTable[int]
    site_by_name: dict[str, int]
    site_order: tuple[tuple[int, ...], ...]
    site_rank: tuple[tuple[int, ...], ...]
    up: tuple[bool, ...]  # per appliance: may be sent new clients
    saturated: tuple[bool, ...]  # per appliance: only as a last resort, after every up one
    site_up: tuple[tuple[int, ...], ...]  # per site: its up appliances
    site_weight: tuple[float, ...]  # per site: total weight of its up appliances
    site_load: tuple[float, ...]  # per site: sum of weight * floored load of its up appliances


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points on the Earth, in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _number(doc: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(f"{where}{key}", "must be a finite number")
    return float(value)


def _string(doc: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise FieldError(f"{where}{key}", "must be a non-empty string")
    return value


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise FieldError(f"{where}{key}", "must be a list")
    return value


def _parse_site(raw: Any, where: str) -> Site:
    if not isinstance(raw, dict):
        raise FieldError(where.rstrip("."), "must be an object")
    lat, lon = _number(raw, "lat", where, 0.0), _number(raw, "lon", where, 0.0)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise FieldError(f"{where}lat", "lat must be -90..90 and lon -180..180")
    prefixes = _list(raw, "prefixes", where)
    if not all(isinstance(p, str) for p in prefixes):
        raise FieldError(f"{where}prefixes", "must be a list of strings")
    costs = raw.get("costs", {})
    if not isinstance(costs, dict):
        raise FieldError(f"{where}costs", "must be an object")
    for other in costs:
        cost = _number(costs, other, f"{where}costs.")
        if cost < 0:
            raise FieldError(f"{where}costs.{other}", "must be >= 0")
    role = raw.get("role", "edge")
    if role not in ("edge", "origin"):
        raise FieldError(f"{where}role", "must be edge or origin")
    return Site(
        name=_string(raw, "name", where),
        region=_string(raw, "region", where, ""),
        lat=lat,
        lon=lon,
        prefixes=tuple(prefixes),
        costs={k: float(v) for k, v in costs.items()},
        role=role,
    )


def _parse_appliance(raw: Any, where: str, site_by_name: dict[str, int]) -> Appliance:
    if not isinstance(raw, dict):
        raise FieldError(where.rstrip("."), "must be an object")
    name = _string(raw, "name", where)
    site = site_by_name.get(_string(raw, "site", where))
    if site is None:
        raise FieldError(f"{where}site", f"unknown site {raw['site'][:60]!r}")
    base_url = _string(raw, "base_url", where)
    if not base_url.startswith(("http://", "https://")) or any(c in base_url for c in " ?#"):
        raise FieldError(f"{where}base_url", "must be an http(s) URL without query or fragment")
    weight = _number(raw, "weight", where, 1.0)
    if weight <= 0:
        raise FieldError(f"{where}weight", "must be > 0")
    load = _number(raw, "load", where, 0.0)
    if load < 0:
        raise FieldError(f"{where}load", "must be >= 0")
    try:
        state = ApplianceState(str(raw.get("state")))
    except ValueError:
        raise FieldError(f"{where}state", "must be up, down, draining or saturated") from None
    return Appliance(
        name=name,
        site=site,
        base_url=base_url.rstrip("/"),
        weight=weight,
        state=state,
        load=load,
        seed=appliance_seed(name),
    )


def _contents(raw: Any, count: int) -> dict[bytes, tuple[int, ...]]:
    if not isinstance(raw, dict):
        raise FieldError("contents", "must be an object")
    if not _holders_valid(raw, count):
        _name_bad_holders(raw, count)
    # One int object per appliance index: json.loads makes a new object for every number
    # above 256, and a million lists would keep millions of them alive. Equal lists share
    # one tuple.
    canonical = list(range(count)).__getitem__
    known: dict[tuple[int, ...], tuple[int, ...]] = {}
    share = known.setdefault
    out: dict[bytes, tuple[int, ...]] = {}
    for content_id, holders in raw.items():
        key = tuple(map(canonical, holders))
        out[content_id.encode("utf-8", "surrogatepass")] = share(key, key)
    return out


def _checked(parsed: ParsedContents, count: int) -> dict[bytes, tuple[int, ...]]:
    """The decoded contents, once every index is known to name an appliance."""
    if parsed.high >= count:
        for content_id, holders in parsed.entries.items():
            if holders and max(holders) >= count:
                name = content_id.decode("utf-8", "replace")[:140]
                raise FieldError(f"contents.{name}", f"indexes must be 0..{count - 1}")
    return parsed.entries


def _holders_valid(raw: dict[str, Any], count: int) -> bool:
    """True when every value is a list of integers 0..count-1 (checked in C-speed passes)."""
    if not set(map(type, raw.values())) <= {list}:
        return False
    if count == 0:
        return not any(raw.values())
    chain = itertools.chain.from_iterable
    if not set(map(type, chain(raw.values()))) <= {int}:  # type(True) is bool, not int
        return False
    return min(chain(raw.values()), default=0) >= 0 and max(chain(raw.values()), default=0) < count


def _name_bad_holders(raw: dict[str, Any], count: int) -> None:
    """Raise FieldError naming the first invalid holder list (the slow path, for the message)."""
    for content_id, holders in raw.items():
        if not isinstance(holders, list) or not all(
            type(i) is int and 0 <= i < count for i in holders
        ):
            raise FieldError(
                f"contents.{content_id[:140]}",
                f"must be a list of appliance indexes 0..{count - 1}",
            )
    raise AssertionError("_holders_valid and _name_bad_holders disagree")  # pragma: no cover


def _order_sites(sites: tuple[Site, ...]) -> tuple[tuple[int, ...], ...]:
    """Per site: every site, itself first, then by cost, then by distance, then by name.

    A cost is read from the anchor's `costs`, else from the other site's (costs are usually
    symmetric and operators may write each pair once). Sites without a cost follow all sites
    with one: a configured cost is an operator's statement about the network, distance only a
    guess.
    """
    names = [s.name for s in sites]
    orders = []
    for i, anchor in enumerate(sites):

        def key(j: int, i: int = i, anchor: Site = anchor) -> tuple[int, float, float, str]:
            if j == i:
                return (0, 0.0, 0.0, "")
            other = sites[j]
            cost = anchor.costs.get(other.name, other.costs.get(anchor.name))
            distance = great_circle_km(anchor.lat, anchor.lon, other.lat, other.lon)
            return (1, math.inf if cost is None else cost, distance, names[j])

        orders.append(tuple(sorted(range(len(sites)), key=key)))
    return tuple(orders)


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    """The position of each site in *order*."""
    rank = [0] * len(order)
    for position, site in enumerate(order):
        rank[site] = position
    return tuple(rank)


def build_index(doc: Any, previous: FleetIndex | None = None) -> FleetIndex:
    """Check a snapshot document and index it. Raises FieldError naming the first bad field.

    A document that says `"contents_unchanged": true` reuses the contents of *previous*
    (the index built from the snapshot whose contents version steering asked with).
    """
    if not isinstance(doc, dict):
        raise FieldError("$", "must be a JSON object")
    version = doc.get("version")
    if type(version) is not int or version < 0:
        raise FieldError("version", "must be a non-negative integer")
    generated_at = _number(doc, "generated_at", "", 0.0)

    sites = tuple(_parse_site(raw, f"sites[{i}].") for i, raw in enumerate(_list(doc, "sites", "")))
    site_by_name: dict[str, int] = {}
    for i, site in enumerate(sites):
        if site_by_name.setdefault(site.name, i) != i:
            raise FieldError(f"sites[{i}].name", f"duplicate site {site.name[:60]!r}")
    for i, site in enumerate(sites):
        for other in site.costs:
            if other not in site_by_name:
                raise FieldError(f"sites[{i}].costs.{other[:60]}", "unknown site")
    try:
        prefixes = PrefixTable((p, i) for i, site in enumerate(sites) for p in site.prefixes)
    except PrefixError as exc:
        raise FieldError("sites.prefixes", str(exc)) from None
    # A prefix two sites announce goes to the first; snapshot.py logs the others.

    appliances = tuple(
        _parse_appliance(raw, f"appliances[{i}].", site_by_name)
        for i, raw in enumerate(_list(doc, "appliances", ""))
    )
    seen: set[str] = set()
    for i, app in enumerate(appliances):
        if app.name in seen:
            raise FieldError(f"appliances[{i}].name", f"duplicate appliance {app.name[:60]!r}")
        seen.add(app.name)
    contents_version = doc.get("contents_version")
    if contents_version is not None and (type(contents_version) is not int or contents_version < 0):
        raise FieldError("contents_version", "must be a non-negative integer")
    raw_contents = doc.get("contents", {})
    if doc.get("contents_unchanged") is True:
        if previous is None or previous.contents_version != contents_version:
            raise FieldError("contents_unchanged", "no held contents of that version to reuse")
        if len(previous.appliances) != len(appliances):
            raise FieldError("contents_unchanged", "the appliance list changed")
        contents = previous.contents
    elif isinstance(raw_contents, ParsedContents):
        contents = _checked(raw_contents, len(appliances))
    else:
        contents = _contents(raw_contents, len(appliances))

    # Origin appliances serve fills only: for steering they are neither up nor a last resort.
    client_facing = tuple(sites[a.site].role != "origin" for a in appliances)
    up = tuple(
        a.state is ApplianceState.UP and f for a, f in zip(appliances, client_facing, strict=True)
    )
    members: list[list[int]] = [[] for _ in sites]
    for j, app in enumerate(appliances):
        if up[j]:
            members[app.site].append(j)
    site_up = tuple(tuple(m) for m in members)
    site_order = _order_sites(sites)
    site_rank = tuple(_inverse(order) for order in site_order)
    return FleetIndex(
        version=version,
        generated_at=generated_at,
        contents_version=contents_version,
        sites=sites,
        appliances=appliances,
        contents=contents,
        prefixes=prefixes,
        site_by_name=site_by_name,
        site_order=site_order,
        site_rank=site_rank,
        up=up,
        saturated=tuple(
            a.state is ApplianceState.SATURATED and f
            for a, f in zip(appliances, client_facing, strict=True)
        ),
        site_up=site_up,
        site_weight=tuple(sum(appliances[j].weight for j in m) for m in site_up),
        site_load=tuple(
            sum(appliances[j].weight * max(appliances[j].load, LOAD_FLOOR) for j in m)
            for m in site_up
        ),
    )
