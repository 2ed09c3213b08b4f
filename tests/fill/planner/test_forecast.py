"""Forecast: smoothing, half-life weighting, priors and streaming input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fill.planner.forecast import DailyRecord, ForecastParams, day_number, forecast, region_prior

SIZES = {"a.mp4": 1000, "b.mp4": 500, "new.mp4": 2000}


def test_constant_history_forecasts_the_same_popularity() -> None:
    records = [DailyRecord(d, "eu", "a.mp4", 3000) for d in range(10)]
    result = forecast(records, SIZES, ForecastParams(half_life_days=2.0))
    assert result["eu"]["a.mp4"] == pytest.approx(3.0)


@given(
    st.floats(min_value=0.0, max_value=1e6),
    st.integers(min_value=1, max_value=60),
    st.floats(min_value=0.1, max_value=30.0),
)
def test_constant_popularity_any_half_life(p: float, days: int, half_life: float) -> None:
    records = [DailyRecord(d, "eu", "a.mp4", round(p * 1000)) for d in range(days)]
    result = forecast(records, {"a.mp4": 1000}, ForecastParams(half_life_days=half_life))
    assert result["eu"]["a.mp4"] == pytest.approx(round(p * 1000) / 1000, rel=1e-9, abs=1e-12)


def test_half_life_weighting() -> None:
    # Two history days: day 0 with popularity 4, day 1 with popularity 0 (no record for a.mp4).
    # Forecast day 2, half-life 1: weights 0.25 (day 0) and 0.5 (day 1).
    records = [DailyRecord(0, "eu", "a.mp4", 4000), DailyRecord(1, "eu", "b.mp4", 500)]
    result = forecast(records, SIZES, ForecastParams(half_life_days=1.0))
    assert result["eu"]["a.mp4"] == pytest.approx(4 * 0.25 / 0.75)
    assert result["eu"]["b.mp4"] == pytest.approx(1 * 0.5 / 0.75)


def test_record_order_does_not_matter() -> None:
    records = [DailyRecord(d, "eu", "a.mp4", 1000 * (d + 1)) for d in range(8)]
    params = ForecastParams(half_life_days=2.5)
    forward = forecast(records, SIZES, params)
    backward = forecast(reversed(records), SIZES, params)
    assert forward["eu"]["a.mp4"] == pytest.approx(backward["eu"]["a.mp4"])
    weights = [0.5 ** ((8 - d) / 2.5) for d in range(8)]
    expected = sum(w * (d + 1) for d, w in enumerate(weights)) / sum(weights)
    assert forward["eu"]["a.mp4"] == pytest.approx(expected)


def test_same_day_records_add_up() -> None:
    records = [DailyRecord(0, "eu", "a.mp4", 1000), DailyRecord(0, "eu", "a.mp4", 2000)]
    assert forecast(records, SIZES)["eu"]["a.mp4"] == pytest.approx(3.0)


def test_prior_for_unseen_files_is_a_fraction_of_the_median() -> None:
    records = [DailyRecord(0, "eu", "a.mp4", 4000), DailyRecord(0, "eu", "b.mp4", 1000)]
    result = forecast(records, SIZES, ForecastParams(prior_median_fraction=0.5))
    # Region forecasts: a = 4, b = 2 → median 3 → prior 1.5.
    assert result["eu"]["new.mp4"] == pytest.approx(1.5)


def test_fixed_prior_and_regions_without_history() -> None:
    params = ForecastParams(prior_views=0.25, prior_median_fraction=0.0)
    result = forecast([], SIZES, params, regions=["us"])
    assert result == {"us": {c: 0.25 for c in SIZES}}
    assert region_prior([], ForecastParams()) == 0.0


def test_regions_are_separate() -> None:
    records = [DailyRecord(0, "eu", "a.mp4", 5000), DailyRecord(0, "us", "b.mp4", 500)]
    result = forecast(records, SIZES, ForecastParams(prior_median_fraction=0.0))
    assert result["eu"]["a.mp4"] == pytest.approx(5.0)
    assert result["eu"]["b.mp4"] == 0.0
    assert result["us"]["b.mp4"] == pytest.approx(1.0)


def test_unknown_and_empty_files_are_ignored() -> None:
    sizes = {"a.mp4": 1000, "empty.mp4": 0}
    records = [DailyRecord(0, "eu", "ghost.mp4", 10), DailyRecord(0, "eu", "empty.mp4", 10)]
    result = forecast(records, sizes)
    assert set(result["eu"]) == {"a.mp4"}


def test_negative_bytes_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        forecast([DailyRecord(0, "eu", "a.mp4", -1)], SIZES)


def test_bad_params_rejected() -> None:
    with pytest.raises(ValueError, match="half_life"):
        ForecastParams(half_life_days=0)
    with pytest.raises(ValueError, match="prior_views"):
        ForecastParams(prior_views=-1)


def test_streaming_from_a_generator_with_dates() -> None:
    start = date(2026, 11, 1)
    consumed = 0

    def records() -> Iterator[DailyRecord]:
        nonlocal consumed
        for d in range(30):
            for i in range(100):
                consumed += 1
                yield DailyRecord(start + timedelta(days=d), "eu", f"f{i}", 1000 * (i + 1))

    sizes = {f"f{i}": 1000 for i in range(100)}
    result = forecast(records(), sizes, ForecastParams(half_life_days=3.0))
    assert consumed == 3000
    assert result["eu"]["f9"] == pytest.approx(10.0)
    assert day_number(start) == start.toordinal()


def test_explicit_forecast_day_ignores_later_records() -> None:
    records = [DailyRecord(0, "eu", "a.mp4", 1000), DailyRecord(5, "eu", "a.mp4", 9000)]
    result = forecast(records, SIZES, ForecastParams(half_life_days=1.0), forecast_day=3)
    assert result["eu"]["a.mp4"] == pytest.approx(1.0)


def test_fading_file_halves_per_half_life() -> None:
    # Watched on day 0 only; other files keep the history going. Two more days of history
    # (one half-life) halve its forecast, as the normaliser barely moves over a long window.
    def records(last: int) -> list[DailyRecord]:
        return [DailyRecord(0, "eu", "a.mp4", 1000)] + [
            DailyRecord(d, "eu", "b.mp4", 500) for d in range(last)
        ]

    params = ForecastParams(half_life_days=2.0)
    early = forecast(records(30), SIZES, params)["eu"]["a.mp4"]
    later = forecast(records(32), SIZES, params)["eu"]["a.mp4"]
    assert later / early == pytest.approx(0.5, rel=0.01)
    assert math.isfinite(early) and early > 0


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=9),
            st.sampled_from(["eu", "us"]),
            st.sampled_from(["a.mp4", "b.mp4", "new.mp4", "ghost.mp4", "empty.mp4"]),
            st.integers(min_value=0, max_value=10**7),
        ),
        max_size=60,
    ),
    st.floats(min_value=0.5, max_value=10.0),
    st.none() | st.integers(min_value=3, max_value=12),
)
def test_column_forecast_equals_the_reference(
    raw: list[tuple[int, str, str, int]], half_life: float, target: int | None
) -> None:
    import numpy as np

    from fill.planner.forecast import ColumnForecast

    sizes = {**SIZES, "empty.mp4": 0}
    ids = sorted(sizes)
    records = [DailyRecord(d, r, c, b) for d, r, c, b in raw]
    params = ForecastParams(half_life_days=half_life, prior_views=0.01)
    expected = forecast(records, sizes, params, forecast_day=target, regions=["asia"])
    columns = ColumnForecast(
        {c: i for i, c in enumerate(ids)},
        np.array([sizes[c] for c in ids], dtype=np.int64),
        params,
        forecast_day=target,
        regions=["asia"],
    )
    columns.add_all(records)
    got = columns.result()
    assert set(got) == set(expected)
    for region, values in got.items():
        for i, c in enumerate(ids):
            assert values[i] == pytest.approx(expected[region].get(c, 0.0), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("target", [None, 6])
def test_column_forecast_columns_equal_records(target: int | None) -> None:
    import numpy as np

    from fill.planner.forecast import ColumnForecast

    ids = sorted(SIZES)
    sizes = np.array([SIZES[c] for c in ids], dtype=np.int64)
    index = {c: i for i, c in enumerate(ids)}
    params = ForecastParams(half_life_days=2.0)
    by_records = ColumnForecast(index, sizes, params, forecast_day=target)
    by_columns = ColumnForecast(index, sizes, params, forecast_day=target)
    for day in range(6):
        streamed = np.array([1000.0 * (day + 1), 0.0, 500.0 * day])
        by_columns.add_columns(day, "eu", np.arange(3), streamed)
        by_records.add_all(
            DailyRecord(day, "eu", c, int(b)) for c, b in zip(ids, streamed, strict=True)
        )
    a, b = by_records.result(), by_columns.result()
    assert np.allclose(a["eu"], b["eu"], rtol=1e-12)
    with pytest.raises(ValueError, match="negative"):
        by_columns.add_columns(0, "eu", np.arange(1), np.array([-1.0]))
