"""The planner's model types: appliances, parameters, a site's chosen target and its report.

A leaf: placement.py (the specification and `plan_site`), greedy.py (the fast greedy),
nightly.py (tonight's budget and the report) and plan.py all use these types and this module
imports none of them, so the steps of a site plan import each other in one direction only:
placement imports greedy and nightly, which import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Columns aligned with the catalog (one element per file, catalog order).
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Appliance:
    """One storage appliance of the site, as the planner sees it."""

    name: str
    capacity_bytes: int
    reserve_bytes: int = 0
    weight: float = 1.0
    fill_budget_bytes: int | None = None  # a night's downloads (rate x window); None: unlimited

    def __post_init__(self) -> None:
        if self.capacity_bytes < 0 or self.reserve_bytes < 0:
            raise ValueError(f"{self.name}: capacity_bytes and reserve_bytes must be >= 0")
        if not self.weight > 0 or not math.isfinite(self.weight):
            raise ValueError(f"{self.name}: weight must be > 0")
        if self.fill_budget_bytes is not None and self.fill_budget_bytes < 0:
            raise ValueError(f"{self.name}: fill_budget_bytes must be >= 0")

    @property
    def usable_bytes(self) -> int:
        """Bytes the planner may fill: capacity minus reserve, never negative."""
        return max(0, self.capacity_bytes - self.reserve_bytes)


@dataclass(frozen=True, slots=True)
class PlacementParams:
    """Copy bounds, the copies rule, the hysteresis margin and the nightly fill budget."""

    min_copies: int = 1
    max_copies: int | None = None  # None: the number of appliances
    popularity_per_copy: float = math.inf
    hysteresis: float = 1.1
    fill_budget_bytes: int | None = None  # per appliance, every appliance; None: unlimited

    def __post_init__(self) -> None:
        if self.min_copies < 1:
            raise ValueError("min_copies must be >= 1")
        if self.max_copies is not None and self.max_copies < self.min_copies:
            raise ValueError("max_copies must be >= min_copies")
        if not self.popularity_per_copy > 0:
            raise ValueError("popularity_per_copy must be > 0")
        if not self.hysteresis >= 1.0 or not math.isfinite(self.hysteresis):
            raise ValueError("hysteresis must be >= 1")
        if self.fill_budget_bytes is not None and self.fill_budget_bytes < 0:
            raise ValueError("fill_budget_bytes must be >= 0")


@dataclass(frozen=True, slots=True)
class SiteReport:
    """The plan's figures for one site (files and bytes count the full, unbudgeted plan)."""

    files: int
    stored_bytes: int
    usable_bytes: int
    predicted_offload: float
    offload_upper_bound: float
    offload_tonight: float  # what the appliances hold after tonight's (budgeted) fill
    adds: int
    deletes: int
    add_bytes: int
    delete_bytes: int
    deferred: int
    deferred_bytes: int
    held_back: int = 0
    held_back_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SiteTarget:
    """The unbudgeted plan of one site, as catalog indices."""

    target: list[I64]  # per appliance, in choice order (most valuable first)
    files: int  # files placed
    stored_bytes: int
    usable_bytes: int
    placed_mass: float  # forecast views of the placed files
    bound_mass: float  # the fractional-knapsack optimum, in the same unit
