"""Tonight's share of a site plan: the fill budget, held-back deletes and the site report.

The greedy (greedy.py, or the reference in placement.py) says what each appliance
should hold; this module says what it holds after tonight's fill (steps 4 and 5 of the
placement model in placement.py):

- adds, in choice order, go while they fit the appliance's budget (first fit: an add that does
  not fit is deferred and a smaller later one may still go);
- files the plan drops are deleted, except that the most valuable of them (forecast density,
  then catalog order) are held back up to the bytes of the deferred adds.

All columns are catalog indices, so a site of ten appliances holding 300,000 files each costs a
few array passes, not a Python loop per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fill.planner.model import F64, I64, Appliance, Mask, PlacementParams, SiteReport, SiteTarget


@dataclass(frozen=True, slots=True)
class ApplianceChange:
    """One appliance's night: what it holds afterwards and how it gets there."""

    hold: I64  # choice order (most valuable first), held-back files last
    adds: I64  # choice order
    deletes: I64  # ascending
    deferred: I64  # choice order
    held_back: I64  # value order
    add_bytes: int
    deferred_bytes: int


@dataclass(frozen=True, slots=True)
class SiteOutcome:
    """Per appliance (in the site's order) the night's change, and the site report."""

    changes: tuple[ApplianceChange, ...]
    report: SiteReport


def first_fit(sizes: I64, budget: int | None) -> Mask:
    """Which items, taken in order, fit *budget* (each one that does not fit is skipped)."""
    take = np.zeros(sizes.size, dtype=np.bool_)
    if budget is None:
        take[:] = True
        return take
    left = budget
    idx = np.arange(sizes.size)
    while idx.size:
        cum = np.cumsum(sizes[idx])
        fit = int(np.searchsorted(cum, left, side="right"))
        take[idx[:fit]] = True
        if fit:
            left -= int(cum[fit - 1])
        if fit == idx.size:
            break
        rest = idx[fit + 1 :]
        idx = rest[sizes[rest] <= left]
    return take


def budget_of(appliance: Appliance, params: PlacementParams) -> int | None:
    """The appliance's bytes for tonight: the smaller of its own and the site-wide budget."""
    limits = [b for b in (appliance.fill_budget_bytes, params.fill_budget_bytes) if b is not None]
    return min(limits) if limits else None


def settle(
    appliances: Sequence[Appliance],
    sizes: I64,
    forecast: F64,
    held: Sequence[I64],
    chosen: SiteTarget,
    params: PlacementParams,
    total_mass: float,
) -> SiteOutcome:
    """Apply budgets and held-back deletes to *chosen*; *held[j]* is what appliance j holds."""
    mark = np.zeros(sizes.size, dtype=np.bool_)  # scratch, all False between uses
    present = np.zeros(sizes.size, dtype=np.bool_)
    changes: list[ApplianceChange] = []
    totals = np.zeros(8, dtype=np.int64)
    for j, appliance in enumerate(appliances):
        cur, tgt = held[j], chosen.target[j]
        mark[cur] = True
        kept = mark[tgt]
        mark[cur] = False
        new = tgt[~kept]
        take = first_fit(sizes[new], budget_of(appliance, params))
        adds, deferred = new[take], new[~take]
        kept[~kept] = take  # kept now marks every target file held after tonight
        mark[tgt] = True
        gone = np.sort(cur[~mark[cur]])
        mark[tgt] = False
        deferred_bytes = int(sizes[deferred].sum())
        held_back = gone[:0]
        if deferred_bytes and gone.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = forecast[gone] / sizes[gone]
            ranked = gone[np.argsort(-np.nan_to_num(value, nan=0.0), kind="stable")]
            keep = first_fit(sizes[ranked], deferred_bytes)
            held_back = ranked[keep]
            gone = np.sort(ranked[~keep])
        # Nothing deferred (most nights): the target itself, no copy.
        hold = tgt if kept.all() else np.concatenate([tgt[kept], held_back])
        present[hold] = True
        add_bytes = int(sizes[adds].sum())
        changes.append(
            ApplianceChange(hold, adds, gone, deferred, held_back, add_bytes, deferred_bytes)
        )
        totals += [
            adds.size,
            gone.size,
            add_bytes,
            int(sizes[gone].sum()),
            deferred.size,
            deferred_bytes,
            held_back.size,
            int(sizes[held_back].sum()),
        ]
    mass = total_mass
    t = [int(x) for x in totals]
    report = SiteReport(
        files=chosen.files,
        stored_bytes=chosen.stored_bytes,
        usable_bytes=chosen.usable_bytes,
        predicted_offload=chosen.placed_mass / mass if mass > 0 else 0.0,
        offload_upper_bound=chosen.bound_mass / mass if mass > 0 else 0.0,
        offload_tonight=float(forecast[present].sum()) / mass if mass > 0 else 0.0,
        adds=t[0],
        deletes=t[1],
        add_bytes=t[2],
        delete_bytes=t[3],
        deferred=t[4],
        deferred_bytes=t[5],
        held_back=t[6],
        held_back_bytes=t[7],
    )
    return SiteOutcome(tuple(changes), report)
