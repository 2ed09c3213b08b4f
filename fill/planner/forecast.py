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

Two implementations: `forecast` (dicts, the reference) and `ColumnForecast` (the planner's:
numpy columns aligned with a catalog, records buffered compactly per (region, day) and summed
with bincount, so 35 million records of a million-file catalog fit in a few hundred MB).

Streaming: records come as any iterable (a generator reading a CSV or JSONL file); the only
state kept is one running (weighted sum, anchor day) pair per (region, content) seen and the set
of history days, never the records themselves. A running sum is rescaled when a later day
arrives, so records may come in any order and the weights never overflow.
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from edgefleet.records import DailyRecord

Day = int | date

__all__ = [
    "ColumnForecast",
    "DailyRecord",
    "ForecastParams",
    "day_number",
    "forecast",
    "region_prior",
]


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


class ColumnForecast:
    """`forecast` over columns aligned with a catalog: one float64 array per region."""

    def __init__(
        self,
        index: Mapping[str, int],
        sizes: npt.NDArray[np.int64],
        params: ForecastParams | None = None,
        *,
        forecast_day: Day | None = None,
        regions: Iterable[str] = (),
    ) -> None:
        self._index = index
        self._sizes = sizes
        self._params = params or ForecastParams()
        self._target = None if forecast_day is None else day_number(forecast_day)
        self._regions: set[str] = set(regions)
        # (region, day) -> (catalog indices, bytes streamed), compact until `result`.
        self._buffers: dict[tuple[str, int], tuple[array[int], array[float]]] = {}
        # With a known forecast day, columns are summed on arrival (days seen, per region sums).
        self._eager: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = {}
        self._days: set[int] = set()
        self._chunks: dict[
            tuple[str, int], list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]
        ] = {}

    def add(self, record: DailyRecord) -> None:
        """Take one record (the same rules as `forecast`: future days and unknown ids skipped)."""
        if record.bytes_streamed < 0:
            raise ValueError(f"negative bytes_streamed for {record.content_id!r}")
        day = day_number(record.day)
        if self._target is not None and day >= self._target:
            return
        self._regions.add(record.region)
        i = self._index.get(record.content_id)
        if i is None or self._sizes[i] <= 0:
            return
        buffer = self._buffers.get((record.region, day))
        if buffer is None:
            buffer = self._buffers[(record.region, day)] = (array("q"), array("d"))
        buffer[0].append(i)
        buffer[1].append(record.bytes_streamed)

    def add_all(self, records: Iterable[DailyRecord]) -> None:
        """Take every record of a stream."""
        for record in records:
            self.add(record)

    def add_columns(
        self, day: Day, region: str, idx: npt.NDArray[np.int64], streamed: npt.NDArray[np.float64]
    ) -> None:
        """Take one (day, region)'s records as columns (catalog indices, bytes streamed)."""
        if (streamed < 0).any():
            raise ValueError(f"negative bytes_streamed in {region!r}")
        d = day_number(day)
        if self._target is not None and d >= self._target:
            return
        self._regions.add(region)
        keep = self._sizes[idx] > 0
        idx, streamed = idx[keep], streamed[keep].astype(np.float64)
        if self._target is None:
            self._chunks.setdefault((region, d), []).append((idx, streamed))
            return
        # The forecast day is known: fold the day in now, keeping one column per region.
        n = self._sizes.size
        if region not in self._eager:
            self._eager[region] = (np.zeros(n), np.zeros(n, dtype=np.bool_))
        total, seen = self._eager[region]
        k = math.log(2.0) / self._params.half_life_days
        popularity = streamed / np.maximum(self._sizes[idx], 1)
        total += math.exp(-k * (self._target - d)) * np.bincount(idx, popularity, minlength=n)
        seen[idx] = True
        self._days.add(d)

    def result(self) -> dict[str, npt.NDArray[np.float64]]:
        """Per region, every catalog file's forecast (history or the region's prior)."""
        chunks = {key: list(value) for key, value in self._chunks.items()}
        for key, (idx_buf, bytes_buf) in self._buffers.items():
            chunks.setdefault(key, []).append(
                (np.frombuffer(idx_buf, dtype=np.int64), np.frombuffer(bytes_buf, dtype=np.float64))
            )
        days = {d for _, d in chunks} | self._days
        target = self._target
        if target is None:
            target = max(days) + 1 if days else 0
        k = math.log(2.0) / self._params.half_life_days
        norm = sum(math.exp(-k * (target - d)) for d in days)
        n = self._sizes.size
        size = np.maximum(self._sizes, 1).astype(np.float64)
        out: dict[str, npt.NDArray[np.float64]] = {}
        for region in sorted(self._regions):
            total = np.zeros(n, dtype=np.float64)
            seen = np.zeros(n, dtype=np.bool_)
            if region in self._eager:
                total, seen = self._eager.pop(region)
            for (r, d), parts in chunks.items():
                if r != region:
                    continue
                for idx, streamed in parts:
                    popularity = streamed / size[idx]
                    weight = math.exp(-k * (target - d))
                    total += weight * np.bincount(idx, popularity, minlength=n)
                    seen[idx] = True
            if norm > 0:
                total /= norm
            known = total[seen]
            median = float(np.median(known)) if known.size else 0.0
            p = self._params
            prior = max(p.prior_views, p.prior_median_fraction * median)
            out[region] = np.where(seen, total, prior)
            out[region][self._sizes <= 0] = 0.0
        return out
