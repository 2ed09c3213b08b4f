"""Heartbeat parsing: the optional `served` map (bytes served per content id)."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.fleet import MAX_SERVED_BYTES, MAX_SERVED_IDS, FieldError, parse_heartbeat


def test_served_is_optional_and_kept_out_of_extra() -> None:
    assert parse_heartbeat({}).served == {}
    hb = parse_heartbeat({"served": {"a.mp4": 10, "b": 0}, "base_url": "http://x"})
    assert hb.served == {"a.mp4": 10, "b": 0}
    assert hb.extra == {"base_url": "http://x"}
    assert parse_heartbeat({"served": {"a": MAX_SERVED_BYTES}}).served == {"a": MAX_SERVED_BYTES}


@pytest.mark.parametrize(
    ("served", "field"),
    [
        ([], "served"),
        ({"../etc": 1}, "served"),
        ({"": 1}, "served"),
        ({"a.mp4": -1}, "served.a.mp4"),
        ({"a.mp4": 1.5}, "served.a.mp4"),
        ({"a.mp4": True}, "served.a.mp4"),
        ({"a.mp4": "1"}, "served.a.mp4"),
        ({"a.mp4": MAX_SERVED_BYTES + 1}, "served.a.mp4"),
        ({f"f{i}": 1 for i in range(MAX_SERVED_IDS + 1)}, "served"),
    ],
)
def test_bad_served_names_the_field(served: Any, field: str) -> None:
    with pytest.raises(FieldError) as err:
        parse_heartbeat({"served": served})
    assert err.value.field == field
