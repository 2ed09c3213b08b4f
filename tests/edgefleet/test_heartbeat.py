"""The appliance ↔ control documents: registration, heartbeat, replies, both directions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.fleet import FieldError
from edgefleet.heartbeat import (
    MAX_EPOCH_CHARS,
    MAX_REGISTER_CHARS,
    MAX_SERVED_BYTES,
    MAX_SERVED_IDS,
    DiskHealth,
    Health,
    Heartbeat,
    HeartbeatReply,
    InventoryUpdate,
    RegisterReply,
    Registration,
    ReportedState,
    UnnamedFieldError,
)
from edgefleet.models import CONTENT_ID_RE


def test_served_is_optional_and_apart_from_base_url() -> None:
    assert Heartbeat.from_json({}).served == {}
    hb = Heartbeat.from_json({"served": {"a.mp4": 10, "b": 0}, "base_url": "http://x"})
    assert hb.served == {"a.mp4": 10, "b": 0}
    assert hb.base_url == "http://x"
    assert Heartbeat.from_json({"served": {"a": MAX_SERVED_BYTES}}).served == {
        "a": MAX_SERVED_BYTES
    }


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
        Heartbeat.from_json({"served": served})
    assert err.value.field == field


# -- both directions: parse(build(x)) == x, and anything malformed is a FieldError -----------

CONTENT_IDS = st.from_regex(CONTENT_ID_RE, fullmatch=True)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
COUNTS = st.integers(min_value=0, max_value=2**63)
SHORT_TEXT = st.text(max_size=MAX_REGISTER_CHARS)
URLS = st.sampled_from(["", "http://192.0.2.10:8080", "https://edge.example/", "http://[::1]:80"])
PREFIXES = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"{a}/32"),
    st.ip_addresses(v=6).map(lambda a: f"{a}/128"),
    st.sampled_from(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]),
)
JSON = st.recursive(
    st.none() | st.booleans() | FINITE | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)

disk_health = st.builds(DiskHealth, st.text(), st.text(), COUNTS, COUNTS, st.booleans())
health = st.builds(
    Health,
    cpu=FINITE,
    load1=FINITE,
    memory=FINITE,
    connections=COUNTS,
    nic_bps=FINITE,
    nic_capacity_bps=FINITE,
    disks=st.lists(disk_health, max_size=3).map(tuple),
    quarantined=COUNTS,
)
ids = st.lists(CONTENT_IDS, max_size=5).map(tuple)
epochs = st.text(max_size=MAX_EPOCH_CHARS)
inventory = st.one_of(
    st.builds(InventoryUpdate, version=COUNTS, full=ids, epoch=epochs),
    st.builds(InventoryUpdate, version=COUNTS, base=COUNTS, added=ids, removed=ids, epoch=epochs),
)
heartbeat = st.builds(
    Heartbeat,
    state=st.sampled_from(ReportedState),
    health=health,
    prefixes=st.lists(PREFIXES, max_size=3).map(tuple),
    inventory=st.none() | inventory,
    base_url=st.text(max_size=50),
    served=st.dictionaries(CONTENT_IDS, st.integers(0, MAX_SERVED_BYTES), max_size=5),
)
registration = st.builds(
    Registration, software=SHORT_TEXT, boot_id=SHORT_TEXT, base_url=URLS, inventory_epoch=epochs
)
intervals = st.floats(min_value=1e-3, max_value=1e6)
register_reply = st.builds(RegisterReply, intervals, COUNTS)
heartbeat_reply = st.builds(HeartbeatReply, intervals, st.booleans(), st.booleans())
WIRE_TYPES: list[tuple[Any, Any]] = [
    (Registration, registration),
    (RegisterReply, register_reply),
    (Heartbeat, heartbeat),
    (HeartbeatReply, heartbeat_reply),
]


def _over_the_wire(doc: Any) -> Any:
    return json.loads(json.dumps(doc))


@pytest.mark.parametrize(("kind", "values"), WIRE_TYPES, ids=lambda v: getattr(v, "__name__", ""))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_parse_of_build_is_identity(kind: Any, values: Any, data: st.DataObject) -> None:
    value = data.draw(values)
    assert kind.from_json(_over_the_wire(value.to_json())) == value


@pytest.mark.parametrize(("kind", "values"), WIRE_TYPES, ids=lambda v: getattr(v, "__name__", ""))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_malformed_documents_raise_field_error_only(
    kind: Any, values: Any, data: st.DataObject
) -> None:
    """Any JSON in place of the document, or of one of its fields: parsed, or a FieldError."""
    doc = data.draw(st.one_of(JSON, values.map(lambda v: v.to_json())))
    if isinstance(doc, dict) and doc and data.draw(st.booleans()):
        doc[data.draw(st.sampled_from(sorted(doc)))] = data.draw(JSON)
    try:
        kind.from_json(doc)
    except FieldError as exc:
        assert exc.field and str(exc)


def test_register_and_prefix_errors_keep_their_wording() -> None:
    """Control has always sent these messages without the field's name in front."""
    with pytest.raises(FieldError) as err:
        Registration.from_json({"software": 5})
    assert (err.value.field, str(err.value)) == (
        "software",
        "must be a string of at most 200 characters",
    )
    with pytest.raises(FieldError) as err:
        Registration.from_json({"base_url": "ftp://x"})
    assert (err.value.field, str(err.value)) == ("base_url", "must be an http(s) URL")
    with pytest.raises(FieldError) as err:
        Registration.from_json([])
    assert (err.value.field, str(err.value)) == ("$", "must be a JSON object")
    with pytest.raises(FieldError) as err:
        Heartbeat.from_json({"state": "bogus", "prefixes": ["10.0.0.0/8", 5]})
    assert (err.value.field, str(err.value)) == ("prefixes[1]", "must be an address prefix string")
    with pytest.raises(FieldError) as err:
        Heartbeat.from_json({"health": {"cpu": "x"}})
    assert (err.value.field, str(err.value)) == (
        "health.cpu",
        "health.cpu: must be a finite number",
    )


def test_replies_need_a_positive_interval() -> None:
    for doc in ({}, {"heartbeat_interval_s": 0}, {"heartbeat_interval_s": "2"}):
        with pytest.raises(FieldError) as err:
            HeartbeatReply.from_json(doc)
        assert err.value.field == "heartbeat_interval_s"
    with pytest.raises(FieldError) as err:
        HeartbeatReply.from_json({"heartbeat_interval_s": 2, "resync": 1})
    assert err.value.field == "resync"
    assert RegisterReply.from_json({"heartbeat_interval_s": 2}) == RegisterReply(2.0, 0)


def test_the_reporters_body_is_the_documented_one() -> None:
    """What an appliance posts, field for field (docs/fleet-api.md)."""
    hb = Heartbeat(
        ReportedState.DRAINING,
        Health(cpu=0.5, disks=(DiskHealth("d0", "/srv/d0", 1, 2, False),)),
        prefixes=("10.0.0.0/8",),
        inventory=InventoryUpdate(version=3, base=2, added=("a",), epoch="e"),
        base_url="http://192.0.2.10:8080",
    )
    assert hb.to_json() == {
        "state": "draining",
        "base_url": "http://192.0.2.10:8080",
        "health": {
            "cpu": 0.5,
            "load1": 0.0,
            "memory": 0.0,
            "connections": 0,
            "nic_bps": 0.0,
            "nic_capacity_bps": 0.0,
            "disks": [
                {"id": "d0", "root": "/srv/d0", "free_bytes": 1, "total_bytes": 2, "failed": False}
            ],
            "quarantined": 0,
        },
        "prefixes": ["10.0.0.0/8"],
        "inventory": {"epoch": "e", "base": 2, "version": 3, "added": ["a"], "removed": []},
    }
    assert "served" not in hb.to_json()
    reg = Registration(software="0.1.0", base_url="http://h:1", inventory_epoch="e")
    assert reg.to_json() == {"software": "0.1.0", "base_url": "http://h:1", "inventory_epoch": "e"}


def test_a_bad_document_the_parser_fails_to_name_is_still_a_field_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gap in the parser is answered 422 naming `$`, and is marked so control logs it."""

    def gap(doc: object) -> Heartbeat:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(Heartbeat, "_from_json", gap)
    with pytest.raises(UnnamedFieldError) as caught:
        Heartbeat.from_json({})
    assert isinstance(caught.value, FieldError) and caught.value.field == "$"
    assert str(caught.value) == "invalid heartbeat: unhashable type: 'list'"
