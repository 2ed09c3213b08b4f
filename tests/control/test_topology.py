"""The topology file: parsed into frozen objects, every mistake named by its entry."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from control.topology import (
    ApplianceSpec,
    FleetSettings,
    Topology,
    TopologyError,
    load_topology,
    parse_topology,
)
from tests.control.controlproc import topology_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "topology.toml"


def fleet_data() -> dict[str, Any]:
    """The test topology as a plain mapping, for tests to break."""
    return tomllib.loads(topology_text())


def test_example_file_loads() -> None:
    topo = load_topology(EXAMPLE)
    assert topo.summary() == "2 regions, 4 sites, 5 appliances"
    assert topo.fleet == FleetSettings(2.0, 3, 0.9)
    assert topo.appliance("ams1-a") == ApplianceSpec(
        "ams1-a", "ams1", "http://127.0.0.1:9001", 1.0, 10e9
    )


def test_parse_values_and_defaults() -> None:
    topo = parse_topology(fleet_data())
    assert topo.appliance_names() == ("ams1-a", "ams1-b", "lon1-a", "nyc1-a")
    assert topo.appliance("nope") is None
    b = topo.appliance("ams1-b")
    assert b is not None and b.weight == 2.0 and b.nic_capacity_bps == 0.0
    ams = topo.sites[0]
    assert ams.prefixes == ("198.51.100.0/24", "2001:db8:1::/48")
    assert ams.costs == {"lon1": 10.0}
    assert topo.sites[2].prefixes == () and topo.sites[2].costs == {}
    assert topo.fleet.down_after_s == 6.0


def test_empty_file_is_an_empty_fleet_with_defaults() -> None:
    assert parse_topology({}) == Topology()
    assert Topology().fleet.heartbeat_interval_s == 2.0


def test_prefixes_are_normalised() -> None:
    data = fleet_data()
    data["sites"][2]["prefixes"] = ["2001:DB8:0:0::/64"]
    assert parse_topology(data).sites[2].prefixes == ("2001:db8::/64",)


def test_base_url_loses_its_trailing_slash() -> None:
    data = fleet_data()
    data["appliances"][0]["base_url"] = "https://edge.example/"
    assert parse_topology(data).appliances[0].base_url == "https://edge.example"


def _set(path: str, value: Any) -> Any:
    """A mutation of fleet_data(): set the dotted *path* (list indexes allowed) to *value*."""

    def apply(data: dict[str, Any]) -> None:
        node: Any = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(leaf) if leaf.isdigit() else leaf] = value

    return apply


BAD = [
    (_set("sites.1.region", "eu-wst"), "sites[1] 'lon1': unknown region 'eu-wst'"),
    (_set("sites.1.name", "ams1"), "sites[1] 'ams1': duplicate name (also sites[0])"),
    (_set("regions.1.name", "eu-west"), "regions[1] 'eu-west': duplicate name"),
    (_set("appliances.3.name", "ams1-a"), "appliances[3] 'ams1-a': duplicate name"),
    (_set("appliances.2.site", "par1"), "appliances[2] 'lon1-a': unknown site 'par1'"),
    (_set("sites.0.costs", {"par1": 3}), "sites[0] 'ams1': costs name unknown site 'par1'"),
    (_set("sites.0.costs", {"lon1": -1}), "costs.lon1 must be finite and >= 0"),
    (_set("sites.0.costs", {"lon1": "near"}), "costs.lon1 must be a number"),
    (_set("sites.0.prefixes", ["198.51.100.0/33"]), "sites[0] 'ams1': prefixes[0]"),
    (_set("sites.0.prefixes", ["198.51.100.1/24"]), "has host bits set"),
    (_set("sites.0.prefixes", ["not-a-net"]), "'not-a-net' is not a valid prefix"),
    (_set("sites.0.prefixes", "198.51.100.0/24"), "'prefixes' must be a list"),
    (_set("sites.1.prefixes", ["198.51.100.0/24"]), "already served by 'ams1'"),
    (_set("sites.0.lat", 91), "sites[0] 'ams1': 'lat' must be within -90..90"),
    (_set("sites.0.lon", "east"), "'lon' must be a finite number"),
    (_set("sites.0.lat", True), "'lat' must be a finite number"),
    (_set("appliances.0.name", "-lead"), "appliances[0]: name '-lead' must match"),
    (_set("appliances.0.name", "a/b"), "name 'a/b' must match"),
    (_set("appliances.0.name", "a" * 65), "must match"),
    (_set("appliances.0.name", 7), "appliances[0]: 'name' is required"),
    (_set("appliances.0.base_url", "ftp://x"), "base_url must be an http(s) URL"),
    (_set("appliances.0.base_url", "http://"), "base_url must be an http(s) URL"),
    (_set("appliances.0.weight", 0), "appliances[0] 'ams1-a': weight must be > 0"),
    (_set("appliances.0.nic_capacity_bps", -1), "'nic_capacity_bps' must be within 0..inf"),
    (_set("appliances.0.colour", "red"), "unknown key 'appliances[0].colour'"),
    (_set("sitez", []), "unknown key 'sitez'"),
    (_set("sites", {"name": "x"}), "'sites' must be an array of tables"),
    (_set("fleet.heartbeat_interval_s", 0), "heartbeat_interval_s must be > 0"),
    (_set("fleet.down_after_missed", 0), "down_after_missed must be an integer >= 1"),
    (_set("fleet.down_after_missed", 2.5), "down_after_missed must be an integer"),
    (_set("fleet.saturation_threshold", -0.1), "saturation_threshold must be > 0"),
    (_set("fleet.beat", 1), "unknown key 'fleet.beat'"),
    (_set("fleet", 3), "[fleet] must be a table"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_invalid_topologies_name_the_entry(mutate: Any, message: str) -> None:
    data = fleet_data()
    mutate(data)
    with pytest.raises(TopologyError) as info:
        parse_topology(data)
    assert message in str(info.value)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"missing\.toml: No such file"):
        load_topology(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[sites]\n")
    with pytest.raises(TopologyError, match=r"broken\.toml: "):
        load_topology(broken)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(topology_text().replace('region = "eu-west"', 'region = "eu-wst"', 1))
    with pytest.raises(TopologyError, match=r"wrong\.toml: sites\[0\] 'ams1': unknown region"):
        load_topology(wrong)


def test_site_roles_and_storage_capacity() -> None:
    data = fleet_data()
    data["sites"].append({"name": "org", "region": "us-east", "role": "origin", "lat": 0, "lon": 0})
    data["appliances"].append({"name": "org-1", "site": "org", "capacity_bytes": 10**13})
    topo = parse_topology(data)
    assert [s.role for s in topo.sites] == ["edge", "edge", "edge", "origin"]
    assert topo.site("org") is not None and topo.site("org").prefixes == ()  # type: ignore[union-attr]
    assert topo.site("nowhere") is None
    assert topo.appliance("org-1").capacity_bytes == 10**13  # type: ignore[union-attr]
    assert topo.appliance("ams1-a").capacity_bytes == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("sites", 1, "role", "cache"), 'sites[1] \'lon1\': role must be "edge" or "origin"'),
        (("sites", 0, "role", 1), "sites[0] 'ams1': role must be"),
        (("appliances", 2, "capacity_bytes", -1), "appliances[2] 'lon1-a': 'capacity_bytes'"),
        (("appliances", 0, "capacity_bytes", 1.5), "appliances[0] 'ams1-a': 'capacity_bytes'"),
        (("appliances", 0, "capacity_bytes", True), "appliances[0] 'ams1-a': 'capacity_bytes'"),
    ],
)
def test_role_and_capacity_errors_name_the_entry(
    change: tuple[str, int, str, Any], message: str
) -> None:
    data = fleet_data()
    table, index, key, value = change
    data[table][index][key] = value
    with pytest.raises(TopologyError) as err:
        parse_topology(data)
    assert str(err.value).startswith(message), err.value
