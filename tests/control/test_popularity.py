"""The popularity buffer: counts add up, a failed write loses nothing and counts nothing twice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.popularity import Key, PopularityBuffer, parse_day, utc_day

IDS = st.sampled_from(["a.mp4", "b.mp4", "c.mp4"])
BEATS = st.lists(
    st.tuples(
        st.sampled_from(["2026-11-24", "2026-11-25"]),
        st.sampled_from(["eu-west", "us-east"]),
        st.dictionaries(IDS, st.integers(0, 10**12)),
        st.sampled_from(["none", "take", "fail"]),  # what the flusher does after this beat
    ),
    max_size=30,
)


@given(BEATS)
def test_every_byte_is_written_exactly_once(
    beats: list[tuple[str, str, dict[str, int], str]],
) -> None:
    buffer = PopularityBuffer()
    expected: dict[Key, int] = {}
    written: dict[Key, int] = {}
    for day, region, served, flush in beats:
        assert buffer.add(day, region, served) == sum(served.values())
        for cid, n in served.items():
            if n:
                expected[(day, region, cid)] = expected.get((day, region, cid), 0) + n
        if flush != "none":
            taken = buffer.take()
            assert len(buffer) == 0 and buffer.pending_bytes == 0
            if flush == "fail":
                buffer.put_back(taken)
            else:
                for key, n in taken.items():
                    written[key] = written.get(key, 0) + n
    for key, n in buffer.take().items():
        written[key] = written.get(key, 0) + n
    assert written == expected
    assert all(n > 0 for n in written.values())


def test_days_are_utc_and_checked() -> None:
    assert utc_day(0.0) == "1970-01-01"
    assert utc_day(1795561724.5) == "2026-11-24"
    assert utc_day(86400 * 365 - 0.5) == "1970-12-31"
    assert parse_day("2026-11-24", "from") == "2026-11-24"
    for bad in ("", "2026-13-01", "20261124", "2026-11-24T00:00", "2026-11-2"):
        with pytest.raises(ValueError, match=r"^from: must be a date"):
            parse_day(bad, "from")
