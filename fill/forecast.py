"""Popularity forecast: per region, per file, tomorrow's views-equivalent from daily history.

The model (issue 5, "Forecast"):

- **Popularity** of a file on a day in a region is `bytes_streamed / size`: how many whole
  copies of the file were served, a views-equivalent that does not favour big files.
  Records of one (day, region, content) are summed. Records naming a file the catalog does not
  know, or a file of size 0, are ignored (they can never be placed).
- **Smoothing.** For a forecast day T, a history day d weighs `w(d) = 0.5 ** ((T - d) / h)`
  with h = `half_life_days`: yesterday counts most, a day h days older half as much. The
  forecast is

      F(region, file) = sum_d w(d) * p(d, region, file) / sum_d w(d)

  where d runs over every day that has at least one record anywhere (the history window), and a
  day with no record for the file counts as popularity 0. So a constant daily popularity p
  forecasts exactly p, and a file that stopped being watched fades with half-life h.
  T defaults to the last history day + 1; days after T are ignored.
- **Prior** for a catalog file with no history in a region (a new release):

      prior(region) = max(prior_views, prior_median_fraction * median of the region's forecasts)

  so by default (0.0, 0.5) a new file starts at half the popularity of the region's median
  file: it is placed ahead of the long tail but behind anything with real demand, and its own
  history takes over after its first day. With no history at all in a region the median is 0.

Streaming: records come as any iterable (a generator reading a CSV or JSONL file); the only
state kept is one running (weighted sum, anchor day) pair per (region, content) seen and the set
of history days, never the records themselves. A running sum is rescaled when a later day
arrives, so records may come in any order and the weights never overflow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from edgefleet.records import DailyRecord

Day = int | date

__all__ = ["DailyRecord", "ForecastParams", "day_number", "forecast", "region_prior"]


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """Smoothing half-life and the prior for files with no history in a region."""

    half_life_days: float = 3.0
    prior_views: float = 0.0
    prior_median_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.half_life_days > 0:
            raise ValueError("half_life_days must be > 0")
        if not self.prior_views >= 0:
            raise ValueError("prior_views must be >= 0")
        if not self.prior_median_fraction >= 0:
            raise ValueError("prior_median_fraction must be >= 0")


def day_number(day: Day) -> int:
    """An integer day: ints as they are, dates as their proleptic ordinal."""
    if isinstance(day, date):
        return day.toordinal()
    return int(day)


class _Smoother:
    """Running exponentially weighted sums keyed by (region, content id)."""

    def __init__(self, half_life_days: float) -> None:
        # ln(2) / h: a sum anchored at day a, moved to day b > a, is multiplied by exp(-k (b - a)).
        self._k = math.log(2.0) / half_life_days
        # Per (region, content) state: [weighted sum, anchor day].
        self.sums: dict[tuple[str, str], list[float]] = {}
        self.days: set[int] = set()

    def add(self, day: int, region: str, content_id: str, popularity: float) -> None:
        """Fold one day's popularity into the running sum of (region, content_id)."""
        self.days.add(day)
        state = self.sums.get((region, content_id))
        if state is None:
            self.sums[(region, content_id)] = [popularity, float(day)]
            return
        total, anchor = state
        if day > anchor:
            state[0] = total * math.exp(-self._k * (day - anchor)) + popularity
            state[1] = float(day)
        else:
            state[0] = total + popularity * math.exp(-self._k * (anchor - day))

    def value(self, key: tuple[str, str], target: int) -> float:
        """The weighted sum of *key* with weights relative to day *target* (not normalised)."""
        total, anchor = self.sums[key]
        return total * math.exp(-self._k * (target - anchor))

    def norm(self, target: int) -> float:
        """Sum of the weights of every history day, relative to day *target*."""
        return sum(math.exp(-self._k * (target - d)) for d in self.days)


def forecast(
    records: Iterable[DailyRecord],
    sizes: Mapping[str, int],
    params: ForecastParams | None = None,
    *,
    forecast_day: Day | None = None,
    regions: Iterable[str] = (),
) -> dict[str, dict[str, float]]:
    """Forecast popularity per region per catalog file (see the module docstring).

    Every region that appears in *records* or in *regions* gets an entry for every file of
    *sizes*: its smoothed history, or the region's prior when it has none.
    """
    p = params or ForecastParams()
    target = None if forecast_day is None else day_number(forecast_day)
    smoother = _Smoother(p.half_life_days)
    seen_regions: set[str] = set(regions)
    for record in records:
        if record.bytes_streamed < 0:
            raise ValueError(f"negative bytes_streamed for {record.content_id!r}")
        day = day_number(record.day)
        if target is not None and day >= target:
            continue
        seen_regions.add(record.region)
        size = sizes.get(record.content_id)
        if not size or size <= 0:
            continue
        smoother.add(day, record.region, record.content_id, record.bytes_streamed / size)

    if target is None:
        target = max(smoother.days) + 1 if smoother.days else 0
    norm = smoother.norm(target)

    history: dict[str, dict[str, float]] = {region: {} for region in seen_regions}
    for key in smoother.sums:
        region, content_id = key
        history[region][content_id] = smoother.value(key, target) / norm

    result: dict[str, dict[str, float]] = {}
    for region in sorted(seen_regions):
        known = history[region]
        prior = region_prior(known.values(), p)
        result[region] = {
            content_id: known.get(content_id, prior)
            for content_id in sizes
            if sizes[content_id] > 0
        }
    return result


def region_prior(forecasts: Iterable[float], params: ForecastParams) -> float:
    """The forecast of a file with no history in a region whose files forecast *forecasts*."""
    values = list(forecasts)
    median = statistics.median(values) if values else 0.0
    return max(params.prior_views, params.prior_median_fraction * median)
