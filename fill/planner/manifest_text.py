"""Manifests as JSON text straight from the plan's arrays: no Python object per entry.

`FleetPlan.manifest` (plan.py) builds a `FillManifest` per appliance, a `ManifestFile` per
entry, and ranks sources with matrices of files x every candidate appliance of the region. It
is the reference; at 1,000,000 files x 1,000 appliances it would build ~52 M objects and take
~22 minutes. `manifest_texts` writes the same documents, byte for byte (tested), in three steps:

1. Once per catalog, each file's JSON fragment up to its sources,
   `{"id":"…","size":N,"checksum":"…","sources":[`, as one bytes object per file.
2. Once per region, each site's holders: per file the appliances of the site that will hold it,
   in rendezvous order (score, then fleet order: the reference's stable sort). Once per site,
   for every file it holds, its tier sources (the holders of the region's other edge sites,
   nearest site first) and its origin sources, as int32 matrices of fleet indices.
3. Per appliance, its files' rows: peers (the site's holders minus itself), then tier, the two
   together cut at `max_sources - origins`, then the origins; -1 pads. Each fleet index maps to
   its JSON text (`"name"` in the first slot, `,"name"` after, -1 to b"") by numpy fancy
   indexing of object arrays, and one `b"".join` writes the document.

The work per entry is C (numpy indexing, the join's memcpy); Python loops run per site,
appliance, and holder column, never per file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

import numpy as np
import numpy.typing as npt

from edgefleet.rendezvous import appliance_seed, hrw_scores
from fill.planner.model import I64, U64
from fill.planner.plan import Catalog, FleetPlan, SitePlanResult

I32 = npt.NDArray[np.int32]
Texts = npt.NDArray[np.object_]


class TextTable:
    """JSON texts as rows of a uint8 matrix, zero-padded: row i is text i, row -1 is empty.

    JSON text never holds a zero byte (control characters are escaped), so a document is its
    rows gathered side by side with the zeros dropped: one numpy pass, no object per text.
    """

    def __init__(self, texts: list[bytes]) -> None:
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        width = int(lengths.max(initial=0))
        self.rows = np.zeros((len(texts) + 1, width), dtype=np.uint8)  # + the empty row
        flat = np.frombuffer(b"".join(texts), dtype=np.uint8)
        self.rows[:-1][np.arange(width) < lengths[:, None]] = flat

    @property
    def width(self) -> int:
        """The longest text's length: the matrix's width."""
        return int(self.rows.shape[1])


def catalog_fragments(catalog: Catalog) -> TextTable:
    """Per catalog file, its manifest entry up to the sources: `{"id":…,"sources":[`."""
    # encode_basestring_ascii is json.dumps's own string encoder (ensure_ascii): same bytes.
    enc = encode_basestring_ascii
    return TextTable(
        [
            f'{{"id":{enc(c)},"size":{s},"checksum":{enc(k)},"sources":['.encode()
            for c, s, k in zip(catalog.ids, catalog.sizes.tolist(), catalog.checksums, strict=True)
        ]
    )


def manifest_header(appliance: str, generation: int, created_at: float) -> bytes:
    """The document's start, up to the first entry (keys in `manifest_to_doc`'s order)."""
    head = json.dumps(
        {"appliance": appliance, "generation": generation, "created_at": created_at},
        separators=(",", ":"),
    )
    return f'{head[:-1]},"files":['.encode()


@dataclass(frozen=True, slots=True)
class Holders:
    """Who holds what at one site after tonight: per file, its holders in rendezvous order."""

    pos: I32  # catalog-length: the file's row in `rows`, -1 when the site does not hold it
    files: I64  # the catalog indices the site holds, sorted: the files of `rows`
    rows: I32  # (files, most copies): fleet indices of the holders, best first, -1 padded


def site_holders(
    result: SitePlanResult, hashes: U64, fleet_index: Mapping[str, int], catalog_len: int
) -> Holders:
    """The holders of *result*'s site, from each appliance's files after tonight."""
    pos = np.full(catalog_len, -1, dtype=np.int32)
    holds = [c.hold for c in result.outcome.changes]
    if sum(h.size for h in holds) == 0:
        return Holders(pos, np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.int32))
    f = np.concatenate(holds)
    w = np.concatenate(
        [
            np.full(h.size, fleet_index[a.name], dtype=np.int32)
            for a, h in zip(result.appliances, holds, strict=True)
        ]
    )
    counts = np.bincount(f, minlength=catalog_len)
    files = np.flatnonzero(counts)
    pos[files] = np.arange(files.size, dtype=np.int32)
    rows = np.full((files.size, int(counts.max())), -1, dtype=np.int32)
    single = counts[f] == 1
    rows[pos[f[single]], 0] = w[single]
    if not single.all():
        # Files with copies: by file, then score (best first), then fleet order, the order of
        # the reference's two stable sorts. Scores only for these (most files have one copy).
        many = ~single
        fm, wm = f[many], w[many]
        score = np.empty(fm.size, dtype=np.float64)
        for a in result.appliances:
            mine = wm == fleet_index[a.name]
            score[mine] = hrw_scores(hashes[fm[mine]], appliance_seed(a.name), a.weight)
        order = np.lexsort((wm, -score, fm))
        fm, wm = fm[order], wm[order]
        starts = np.flatnonzero(np.r_[True, fm[1:] != fm[:-1]])
        group_sizes = np.diff(np.r_[starts, fm.size])
        column = np.arange(fm.size) - np.repeat(starts, group_sizes)
        rows[pos[fm], column] = wm
    return Holders(pos, files, rows)


def tier_sources(files: I64, others: list[Holders], near: int) -> I32:
    """Per file, its first *near* holders at *others* (sites nearest first), -1 padded."""
    out = np.full((files.size, near), -1, dtype=np.int32)
    count = np.zeros(files.size, dtype=np.int32)
    open_rows = np.arange(files.size)
    for other in others:
        if open_rows.size == 0 or near == 0:
            break
        at = other.pos[files[open_rows]]
        held = np.flatnonzero(at >= 0)
        rows, at = open_rows[held], at[held]
        for c in range(other.rows.shape[1]):
            names = other.rows[at, c]
            if c:  # later holders: only files with that many copies, while the row has room
                ok = np.flatnonzero((names >= 0) & (count[rows] < near))
                rows, at, names = rows[ok], at[ok], names[ok]
            # The first holder fits: an open row has count < near, and every held row has one.
            out[rows, count[rows]] = names
            count[rows] += 1
        open_rows = open_rows[count[open_rows] < near]  # full rows need no further site
    return out


def origin_sources(files: I64, hashes: U64, sites: list[list[tuple[int, str, float]]]) -> I32:
    """Per file, the origin appliances: sites in the given order, by score inside a site."""
    columns: list[I32] = []
    bases = hashes[files]
    for apps in sites:
        if len(apps) == 1:
            columns.append(np.full((files.size, 1), apps[0][0], dtype=np.int32))
            continue
        score = np.stack([hrw_scores(bases, appliance_seed(n), w) for _, n, w in apps], axis=1)
        # Stable: ties go to fleet order, as in the reference.
        by_score = np.argsort(-score, axis=1, kind="stable")
        columns.append(np.array([i for i, _, _ in apps], dtype=np.int32)[by_score])
    if not columns:
        return np.zeros((files.size, 0), dtype=np.int32)
    return np.concatenate(columns, axis=1)


def compact(candidates: I32, near: int, tail: I32, width: int) -> I32:
    """Per row: the first *near* of *candidates* (holes allowed), then *tail*; -1 pads.

    *width* must hold near + tail's columns. One pass per column: the rows are many, the
    columns few (a numpy cumsum along short rows is slower).
    """
    n = candidates.shape[0]
    out = np.full((n, width), -1, dtype=np.int32)
    count = np.zeros(n, dtype=np.int32)
    everyone = np.arange(n)
    for c in range(candidates.shape[1]):
        names = candidates[:, c]
        ok = np.flatnonzero((names >= 0) & (count < near))
        out[ok, count[ok]] = names[ok]
        count[ok] += 1
    for c in range(tail.shape[1]):
        out[everyone, count + c] = tail[:, c]
    return out


@dataclass(frozen=True, slots=True)
class SiteSources:
    """The sources of every file a site holds, but for the site's own peers."""

    own: Holders
    tier: I32  # (own.files, near)
    origins: I32  # (own.files, kept origins)
    alone: I32  # (own.files, max_sources): tier then origins, for a file without peers
    near: int
    max_sources: int

    def of(self, me: int, hold: I64) -> I32:
        """The sources of appliance *me* (fleet index) for the files *hold*; -1 pads."""
        rows = self.own.pos[hold]
        out = self.alone[rows]
        if self.own.rows.shape[1] < 2:
            return out
        # Only files with another copy at the site (a holder besides *me*) need more work;
        # holders are left-aligned, so a second one means a peer.
        shared = np.flatnonzero(self.own.rows[rows, 1] >= 0)
        if shared.size:
            rows = rows[shared]
            mine = self.own.rows[rows]
            mine = np.where(mine == me, np.int32(-1), mine)
            near_part = np.concatenate([mine, self.tier[rows]], axis=1)
            out[shared] = compact(near_part, self.near, self.origins[rows], self.max_sources)
        return out


def manifest_texts(
    plan: FleetPlan, generation: int, created_at: float
) -> Iterator[tuple[str, bytes]]:
    """(appliance, manifest JSON) of every planned appliance, one at a time, region by region.

    The text is `json.dumps(manifest_to_doc(plan.manifest(...)), separators=(",", ":"))`.
    """
    catalog, fleet = plan.catalog, plan.fleet
    frags = catalog_fragments(catalog)
    names = [a.name for _, a in fleet.appliances]
    fleet_index = {n: i for i, n in enumerate(names)}
    quoted = [encode_basestring_ascii(n).encode() for n in names]
    first = TextTable(quoted)
    rest = TextTable([b"," + q for q in quoted])
    origin_sites = [s for s in fleet.sites if s.role == "origin"]
    site_apps = {
        s.name: [(fleet_index[a.name], a.name, a.weight) for a in fleet.site_appliances(s.name)]
        for s in fleet.sites
    }
    kept_origins = min(sum(len(site_apps[s.name]) for s in origin_sites), plan.max_sources)
    near = plan.max_sources - kept_origins

    by_region: dict[str, list[SitePlanResult]] = {}
    for result in plan.sites:
        by_region.setdefault(result.site.region, []).append(result)
    for region, results in by_region.items():
        # One region's holders at a time: what a site's tier sources are drawn from.
        holders = {
            r.site.name: site_holders(r, catalog.hashes, fleet_index, len(catalog)) for r in results
        }
        for result in results:
            site = result.site
            own = holders[site.name]
            tier_sites = sorted(
                (fleet.cost(site.name, s.name), s.name)
                for s in fleet.sites
                if s.role == "edge" and s.region == region and s.name != site.name
            )
            tier = tier_sources(
                own.files, [holders[n] for _, n in tier_sites if n in holders], near
            )
            ranked = sorted((fleet.cost(site.name, s.name), s.name) for s in origin_sites)
            origins = origin_sources(
                own.files, catalog.hashes, [site_apps[n] for _, n in ranked if site_apps[n]]
            )[:, :kept_origins]
            alone = compact(tier, near, origins, plan.max_sources)
            sources = SiteSources(own, tier, origins, alone, near, plan.max_sources)
            for a, change in zip(result.appliances, result.outcome.changes, strict=True):
                header = manifest_header(a.name, generation, created_at)
                body = _entries(
                    frags, first, rest, change.hold, sources.of(fleet_index[a.name], change.hold)
                )
                yield a.name, header + body + b"]}"


CLOSE = np.frombuffer(b"]},", dtype=np.uint8)


def _entries(
    frags: TextTable, first: TextTable, rest: TextTable, files: I64, sources: I32
) -> bytes:
    """The entries of *files* with their *sources*, comma-separated (no trailing comma)."""
    n, slots = sources.shape
    if n == 0:
        return b""
    widths = [frags.width] + ([first.width] + [rest.width] * (slots - 1) if slots else [])
    edges = np.cumsum([0, *widths, CLOSE.size]).tolist()
    matrix = np.empty((n, edges[-1]), dtype=np.uint8)
    # np.take with out= writes the gathered rows in place; "wrap" maps a pad (-1) to the empty
    # last row and, unlike the default "raise", does not buffer the output.
    np.take(frags.rows, files, axis=0, out=matrix[:, : edges[1]], mode="wrap")
    if slots:
        np.take(first.rows, sources[:, 0], axis=0, out=matrix[:, edges[1] : edges[2]], mode="wrap")
        if slots > 1:
            cells = matrix[:, edges[2] : edges[-2]].reshape(n, slots - 1, rest.width)
            np.take(rest.rows, sources[:, 1:], axis=0, out=cells, mode="wrap")
    matrix[:, edges[-2] :] = CLOSE
    flat = matrix.ravel()
    text: bytes = flat[flat != 0][:-1].tobytes()  # the last entry's comma dropped
    return text
