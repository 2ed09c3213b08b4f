"""Snapshot validation and indexing: every bad field is named, good documents are indexed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from edgefleet.fleet import ApplianceState, FieldError
from steering.index import build_index, great_circle_km
from tests.steering.fleetdocs import two_sites


def test_a_good_snapshot_is_indexed() -> None:
    index = build_index(two_sites(version=7))
    assert index.version == 7
    assert [s.name for s in index.sites] == ["ams1", "lon1", "par1"]
    assert index.appliances[2].state is ApplianceState.UP
    assert index.contents[b"both.mp4"] == (0, 1, 2)
    assert index.prefixes.lookup("198.51.100.9") == 0
    assert index.site_up == ((0, 1), (2,), ())
    assert index.site_weight == (2.0, 1.0, 0)


def test_identical_holder_lists_are_shared() -> None:
    doc = two_sites()
    doc["contents"] = {f"c{i}": [0, 2] for i in range(10)}
    index = build_index(doc)
    assert len({id(v) for v in index.contents.values()}) == 1


def test_down_appliances_are_kept_but_not_up() -> None:
    index = build_index(two_sites(states={"ams1-a": "down"}))
    assert index.up == (False, True, True)
    assert index.site_up[0] == (1,)


def edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        node: Any = doc
        *parents, leaf = path.split("/")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return apply


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (edit("version", -1), "version"),
        (edit("version", True), "version"),
        (edit("version", "3"), "version"),
        (edit("generated_at", "now"), "generated_at"),
        (edit("sites", {}), "sites"),
        (edit("sites/0", []), "sites[0]"),
        (edit("sites/0/name", ""), "sites[0].name"),
        (edit("sites/1/name", "ams1"), "sites[1].name"),
        (edit("sites/0/lat", 91), "sites[0].lat"),
        (edit("sites/0/prefixes", ["not-a-prefix"]), "sites.prefixes"),
        (edit("sites/0/prefixes", [7]), "sites[0].prefixes"),
        (edit("sites/0/costs", {"lon1": -1}), "sites[0].costs.lon1"),
        (edit("sites/0/costs", {"nowhere": 1}), "sites[0].costs.nowhere"),
        (edit("appliances/0/site", "nowhere"), "appliances[0].site"),
        (edit("appliances/0/state", "sleeping"), "appliances[0].state"),
        (edit("appliances/0/weight", 0), "appliances[0].weight"),
        (edit("appliances/0/load", float("nan")), "appliances[0].load"),
        (edit("appliances/0/base_url", "ftp://x"), "appliances[0].base_url"),
        (edit("appliances/0/base_url", "http://x/?a=1"), "appliances[0].base_url"),
        (edit("appliances/1/name", "ams1-a"), "appliances[1].name"),
        (edit("contents", []), "contents"),
        (edit("contents/ams.mp4", [0, 3]), "contents.ams.mp4"),
        (edit("contents/ams.mp4", [0, True]), "contents.ams.mp4"),
        (edit("contents/ams.mp4", 0), "contents.ams.mp4"),
    ],
)
def test_a_bad_field_is_named(change: Callable[[dict[str, Any]], None], field: str) -> None:
    doc = copy.deepcopy(two_sites())
    change(doc)
    with pytest.raises(FieldError) as info:
        build_index(doc)
    assert info.value.field == field


def test_bool_indexes_are_refused_even_after_an_equal_int_list() -> None:
    doc = two_sites()
    doc["contents"] = {"a": [1], "b": [True]}
    with pytest.raises(FieldError, match=r"contents\.b"):
        build_index(doc)


def test_a_prefix_two_sites_announce_goes_to_the_first() -> None:
    doc = two_sites()
    doc["sites"][1]["prefixes"].append("198.51.100.0/24")
    index = build_index(doc)
    assert index.prefixes.lookup("198.51.100.1") == index.site_by_name["ams1"]
    assert index.prefixes.conflicts == (("198.51.100.0/24", 0, 1),)


def test_not_an_object() -> None:
    with pytest.raises(FieldError):
        build_index([])


def test_great_circle() -> None:
    assert great_circle_km(52.37, 4.9, 51.5, -0.12) == pytest.approx(358, abs=5)
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(20015, abs=5)


def test_unchanged_contents_are_reused_not_resent() -> None:
    first = two_sites(version=1)
    first["contents_version"] = 7
    held = build_index(first)
    update = {k: v for k, v in two_sites(version=2, states={"ams1-a": "down"}).items()}
    del update["contents"]
    update.update(contents_version=7, contents_unchanged=True)
    index = build_index(update, held)
    assert index.contents is held.contents
    assert index.version == 2
    assert not index.up[0]
    # Asked against other contents (a restarted control): refused, never mixed up.
    update["contents_version"] = 8
    with pytest.raises(FieldError) as err:
        build_index(update, held)
    assert err.value.field == "contents_unchanged"
