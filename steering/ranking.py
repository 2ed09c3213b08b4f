"""The steering decision: which appliances, in which order, may serve a content id to a client.

Sites: the client's site first (longest-prefix match), then the other sites in the order
`steering.index` precomputed from it (network cost, then great-circle distance). A client no
prefix matches is ordered from the site whose prefixes share most leading bits with its address
(`PrefixTable.nearest`), and its answer is classified `no_site`.

Inside a site: only appliances that are up (not down, draining or saturated) and hold the
content, ordered by weighted rendezvous hashing (highest random weight): each appliance scores
`-weight / ln(h)`, h = a mix of xxh64(content id) and xxh64(appliance name) mapped into (0, 1)
(edgefleet/rendezvous.py, which the planner uses too: the same bits over whole catalogs), so a
file keeps going to the same appliance (disk and page-cache affinity) and an appliance joining
or leaving moves only the files it wins or held, about 1/N of them.

Bounded load (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018):
an appliance whose load is at or above `bound` times its fair share of the site's load is moved
down the list, after the appliances within bound; hash order is kept inside each group. Load is
measured two ways and an appliance is over bound when either says so:

- the assignments this steering process made (`LoadTracker`: counts decaying with a half-life
  of a few seconds), which react at once but see only this replica's clients;
- the load control reports (max of CPU and NIC utilisation, every heartbeat), which sees every
  replica's clients, a few seconds late; loads below `index.LOAD_FLOOR` count as the floor.

For assignments the fair share is weight / total weight of the site's up appliances; reported
utilisation is already relative to capacity, so it is compared with the site's weighted mean
utilisation. With one appliance in a site nothing is ever over bound (bound > 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from edgefleet.rendezvous import hrw_score as _score
from edgefleet.rendezvous import key_hash
from steering.index import LOAD_FLOOR, FleetIndex

# Stored counts are rescaled when their common factor passes 2**_RESCALE_EXP.
_RESCALE_EXP = 64.0


class AnswerClass(StrEnum):
    """How a steering answer relates to the client's own site (docs/fleet-api.md)."""

    LOCAL = "local"
    CONTENT_MISS = "content_miss"
    HEALTH_MISS = "health_miss"
    NO_SITE = "no_site"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    """The ranked appliances (indexes into the index's appliances) and the answer's class."""

    answer: AnswerClass
    appliances: tuple[int, ...]


class LoadTracker:
    """Exponentially decayed counts of the assignments steering made, per appliance name.

    A count added at time t is stored multiplied by 2**((t - origin) / half_life), so stored
    values never need decaying: at any instant they are all the true decayed counts times the
    same factor, and ranking only compares them. `count` divides the factor out.
    """

    def __init__(self, half_life_s: float = 5.0) -> None:
        if not half_life_s > 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self._origin: float | None = None
        self._stored: dict[str, float] = {}

    def _exponent(self, now: float) -> float:
        if self._origin is None:
            self._origin = now
        exponent = (now - self._origin) / self.half_life_s
        if exponent > _RESCALE_EXP:
            factor = math.exp2(-exponent)
            self._stored = {k: v * factor for k, v in self._stored.items() if v * factor > 1e-9}
            self._origin, exponent = now, 0.0
        return exponent

    def record(self, name: str, now: float, amount: float = 1.0) -> None:
        """Count *amount* assignments to appliance *name* at time *now* (seconds)."""
        scale = math.exp2(self._exponent(now))  # first: it may rescale the stored values
        stored = self._stored
        stored[name] = stored.get(name, 0.0) + amount * scale

    def stored(self, name: str) -> float:
        """A value proportional to *name*'s decayed count, comparable across appliances."""
        return self._stored.get(name, 0.0)

    def count(self, name: str, now: float) -> float:
        """The decayed count of assignments to *name* at time *now*."""
        scale = math.exp2(-self._exponent(now))
        return self._stored.get(name, 0.0) * scale


def hrw_score(content: bytes, seed: int, weight: float) -> float:
    """Weighted rendezvous score of an appliance (hash *seed*, *weight*) for *content*: the
    planner's score for the same file and appliance, bit for bit (edgefleet/rendezvous.py)."""
    return _score(key_hash(content), seed, weight)


def site_assignments(index: FleetIndex, tracker: LoadTracker, site: int) -> float:
    """The tracker's (scaled) total over the up appliances of *site*."""
    apps = index.appliances
    return sum(tracker.stored(apps[j].name) for j in index.site_up[site])


def over_bound(
    index: FleetIndex,
    tracker: LoadTracker,
    appliance: int,
    bound: float,
    site_total: float | None = None,
) -> bool:
    """True when *appliance* is at or above *bound* times its fair share of its site's load.

    *site_total*: `site_assignments` of its site, when the caller has it already.
    """
    app = index.appliances[appliance]
    site = app.site
    total_weight = index.site_weight[site]
    # Reported load is a utilisation (already relative to the appliance's capacity, which its
    # weight stands for): compare it with the capacity-weighted mean utilisation of the site.
    reported = max(app.load, LOAD_FLOOR)
    if reported * total_weight >= bound * index.site_load[site]:
        return True
    mine = tracker.stored(app.name)
    if mine == 0.0:
        return False
    if site_total is None:
        site_total = site_assignments(index, tracker, site)
    return mine * total_weight >= bound * app.weight * site_total


def order_in_site(
    index: FleetIndex,
    tracker: LoadTracker,
    content: bytes,
    candidates: Sequence[int],
    bound: float,
) -> list[int]:
    """*candidates* (up appliances of one site holding the content) in bounded-HRW order."""
    apps = index.appliances
    if len(candidates) == 1:
        return list(candidates)
    base = key_hash(content)
    ranked = sorted(
        candidates, key=lambda j: _score(base, apps[j].seed, apps[j].weight), reverse=True
    )
    total = site_assignments(index, tracker, apps[candidates[0]].site)
    within: list[int] = []
    over: list[int] = []
    for j in ranked:
        (over if over_bound(index, tracker, j, bound, total) else within).append(j)
    return within + over


def locate(index: FleetIndex, family: int, address: int) -> tuple[int | None, int | None]:
    """(matched site, site to order from) of a client; both None when nothing can be said."""
    site = index.prefixes.lookup_int(family, address)
    if site is not None:
        return site, site
    return None, index.prefixes.nearest_int(family, address)


def steer(
    index: FleetIndex,
    tracker: LoadTracker,
    content_id: str,
    matched: int | None,
    anchor: int | None,
    max_urls: int,
    bound: float,
) -> Decision:
    """Rank the appliances that may serve *content_id* to a client located by `locate`.

    Pure apart from reading *tracker*; the caller records the assignment it hands out.
    """
    content = content_id.encode()
    holders = index.contents.get(content)
    if not holders:
        return Decision(AnswerClass.UNAVAILABLE, ())
    up, saturated, apps = index.up, index.saturated, index.appliances
    by_site: dict[int, list[int]] = {}
    busy: list[int] = []
    for j in holders:
        if up[j]:
            by_site.setdefault(apps[j].site, []).append(j)
        elif saturated[j]:
            busy.append(j)
    if not by_site and not busy:
        return Decision(AnswerClass.UNAVAILABLE, ())

    def site_key(site: int) -> int:
        return site if anchor is None else index.site_rank[anchor][site]

    ranked: list[int] = []
    for site in sorted(by_site, key=site_key):
        ranked += order_in_site(index, tracker, content, by_site[site], bound)
        if len(ranked) >= max_urls:
            break
    if len(ranked) < max_urls and busy:
        # Saturated appliances get no new clients while any up one can serve; when none can,
        # an overloaded appliance beats no answer at all. Nearest site first, then HRW.
        base = key_hash(content)
        busy.sort(
            key=lambda j: (site_key(apps[j].site), -_score(base, apps[j].seed, apps[j].weight))
        )
        ranked += busy
    del ranked[max_urls:]
    if matched is None:
        answer = AnswerClass.NO_SITE
    elif up[ranked[0]] and apps[ranked[0]].site == matched:
        answer = AnswerClass.LOCAL
    elif any(apps[j].site == matched for j in holders):
        answer = AnswerClass.HEALTH_MISS
    else:
        answer = AnswerClass.CONTENT_MISS
    return Decision(answer, tuple(ranked))
