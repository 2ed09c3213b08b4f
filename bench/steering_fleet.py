"""A synthetic fleet snapshot for bench/steering.py, in control's format (docs/fleet-api.md).

Default size, from issue 4: 100 sites, 1,000 appliances (10 per site), 100,000 prefixes
(70 % IPv4 of lengths /16../24, 30 % IPv6 /32../48, random networks, each given to a random
site) and 1,000,000 content ids, each on 2..6 appliances drawn at random from the whole fleet.
Random placement is the worst case for the index: no two ids share a holder list, so nothing is
shared. Each site has a network cost to 10 random others; 5 % of appliances are down, draining
or saturated.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass
from typing import Any

STATES = ("up",) * 95 + ("down", "draining", "saturated", "up", "up")


@dataclass(frozen=True)
class FleetSpec:
    """How big a snapshot to make."""

    sites: int = 100
    appliances_per_site: int = 10
    prefixes: int = 100_000
    contents: int = 1_000_000
    seed: int = 4


@dataclass(frozen=True)
class Fleet:
    """The snapshot as JSON bytes, and what clients of it look like."""

    body: bytes
    prefixes: list[tuple[int, int, int]]  # (family, network, length)
    content_ids: int

    def client_ip(self, rng: random.Random) -> str:
        """A random address inside a random prefix of the snapshot."""
        family, network, length = rng.choice(self.prefixes)
        bits = 32 if family == 4 else 128
        host = rng.getrandbits(bits - length) if length < bits else 0
        value = network | host
        if family == 4:
            return str(ipaddress.IPv4Address(value))
        return str(ipaddress.IPv6Address(value))


def content_id(i: int) -> str:
    """The bench's i-th content id."""
    return f"c{i:07d}.mp4"


def _prefixes(rng: random.Random, count: int) -> list[tuple[int, int, int]]:
    seen: set[tuple[int, int, int]] = set()
    v4 = count * 7 // 10
    while len(seen) < v4:
        length = rng.choice((16, 20, 22, 24, 24, 24))
        network = (rng.getrandbits(32) >> (32 - length)) << (32 - length)
        seen.add((4, network, length))
    while len(seen) < count:
        length = rng.choice((32, 40, 48, 48))
        network = ((0b001 << 125 | rng.getrandbits(125)) >> (128 - length)) << (128 - length)
        seen.add((6, network, length))
    return sorted(seen)


def _prefix_text(family: int, network: int, length: int) -> str:
    if family == 4:
        return f"{ipaddress.IPv4Address(network)}/{length}"
    return f"{ipaddress.IPv6Address(network)}/{length}"


def make_fleet(spec: FleetSpec = FleetSpec()) -> Fleet:
    """Generate the snapshot (deterministic for a given spec)."""
    rng = random.Random(spec.seed)
    prefixes = _prefixes(rng, spec.prefixes)
    by_site: list[list[str]] = [[] for _ in range(spec.sites)]
    for p in prefixes:
        by_site[rng.randrange(spec.sites)].append(_prefix_text(*p))
    names = [f"s{i:03d}" for i in range(spec.sites)]
    sites: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        others = rng.sample([n for n in names if n != name], min(10, spec.sites - 1))
        sites.append(
            {
                "name": name,
                "region": f"r{i % 10}",
                "lat": rng.uniform(-60, 70),
                "lon": rng.uniform(-180, 180),
                "prefixes": by_site[i],
                "costs": {o: rng.randint(1, 100) for o in others},
            }
        )
    appliances = [
        {
            "name": f"{names[s]}-{a:02d}",
            "site": names[s],
            "base_url": f"http://127.0.0.1:{10000 + s * spec.appliances_per_site + a}",
            "weight": 1.0,
            "state": rng.choice(STATES),
            "load": round(rng.uniform(0.0, 0.8), 3),
        }
        for s in range(spec.sites)
        for a in range(spec.appliances_per_site)
    ]
    fleet_size = len(appliances)
    population = range(fleet_size)
    contents = {
        content_id(i): rng.sample(population, rng.randint(2, min(6, fleet_size)))
        for i in range(spec.contents)
    }
    doc = {
        "version": 1,
        "generated_at": 1795561724.5,
        "heartbeat_interval_s": 2.0,
        "sites": sites,
        "appliances": appliances,
        "contents": contents,
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Fleet(body=body, prefixes=prefixes, content_ids=spec.contents)
