"""A synthetic catalog and daily popularity with drift, for tests, the benchmark and the demo.

The model, chosen to look like a streaming catalog at the scales the planner is sized for:

- **Sizes**: log-normal, median 600 MB, sigma 0.9, clipped to [50 MB, 5 GB] (an encode of a
  film or episode at one bitrate; most files a few hundred MB, a tail of multi-GB 4K encodes).
- **Popularity**: Zipf-like, exponent 0.9, over a random ranking of the catalog; each region
  multiplies the global popularity by its own log-normal taste (sigma 0.5), so regions agree
  on the hits but not on the tail.
- **Drift**: every day each file's log-popularity takes a Gaussian step of `drift` (0.1: a
  file's popularity moves ±10 % a day), the same step in every region.
- **Views** per region per day: `views_per_day` x popularity share; the daily record's
  `bytes_streamed` is views x size (rounded). Files below one byte streamed have no record.

Everything is a pure function of (files, regions, seed, drift): day d's popularity is reached by
d steps from day 0, so two runs agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import xxhash

from edgefleet.records import CatalogEntry, DailyRecord

MB = 10**6
GB = 10**9
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
EPOCH = date(2026, 1, 1)


def content_ids(files: int) -> list[str]:
    """Synthetic content ids, in sorted order."""
    return [f"t{i:07d}.mp4" for i in range(files)]


def checksum_of(content_id: str) -> str:
    """A well-formed, deterministic stand-in checksum for a synthetic file (no bytes exist)."""
    return xxhash.xxh3_128_hexdigest(content_id.encode())


@dataclass
class SynthWorld:
    """A catalog, its regions and their day-by-day popularity."""

    files: int
    regions: tuple[str, ...] = ("eu", "us")
    seed: int = 0
    drift: float = 0.1
    views_per_day: float = 1e6
    zipf_exponent: float = 0.9
    ids: list[str] = field(init=False)
    sizes: I64 = field(init=False)
    _log_pop: F64 = field(init=False)
    _taste: dict[str, F64] = field(init=False)
    _day: int = field(init=False, default=0)
    _walk: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.ids = content_ids(self.files)
        raw = rng.lognormal(np.log(600 * MB), 0.9, self.files)
        self.sizes = np.clip(raw, 50 * MB, 5 * GB).astype(np.int64)
        rank = rng.permutation(self.files) + 1
        self._log_pop = -self.zipf_exponent * np.log(rank.astype(np.float64))
        self._taste = {r: rng.normal(0.0, 0.5, self.files) for r in self.regions}
        self._walk = np.random.default_rng([self.seed, 1])

    def catalog(self) -> Iterator[CatalogEntry]:
        """The catalog as record entries (what `--catalog FILE` reads)."""
        for c, size in zip(self.ids, self.sizes.tolist(), strict=True):
            yield CatalogEntry(c, size, checksum_of(c))

    def views(self, day: int) -> dict[str, F64]:
        """Views per file per region on *day* (0, 1, ...; days must not go backwards)."""
        if day < self._day:
            raise ValueError(f"day {day} is before day {self._day}: replay from a new SynthWorld")
        while self._day < day:
            self._log_pop = self._log_pop + self._walk.normal(0.0, self.drift, self.files)
            self._day += 1
        out: dict[str, F64] = {}
        for region, taste in self._taste.items():
            weight = np.exp(self._log_pop + taste)
            out[region] = weight * (self.views_per_day / weight.sum())
        return out

    def records(self, first_day: int, days: int) -> Iterator[DailyRecord]:
        """Daily popularity records of days first_day .. first_day + days - 1."""
        for day in range(first_day, first_day + days):
            when = EPOCH + timedelta(days=day)
            for region, views in self.views(day).items():
                streamed = np.rint(views * self.sizes).astype(np.int64)
                for i in np.flatnonzero(streamed > 0).tolist():
                    yield DailyRecord(when, region, self.ids[i], int(streamed[i]))
