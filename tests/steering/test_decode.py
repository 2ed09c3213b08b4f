"""The streaming snapshot decoder agrees with json.loads on every input, valid or not."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.fleet import FieldError
from steering.decode import decode_snapshot
from steering.index import ParsedContents, build_index
from tests.steering.fleetdocs import two_sites

ENCODINGS = [
    {"separators": (",", ":")},
    {},
    {"indent": 2},
    {"indent": "\t", "ensure_ascii": True},
]


def plain(doc: dict[str, Any]) -> dict[str, Any]:
    """decode_snapshot's document with contents as json.loads would give them."""
    out = dict(doc)
    if isinstance(out.get("contents"), ParsedContents):
        out["contents"] = {
            k.decode("utf-8", "surrogatepass"): list(v) for k, v in out["contents"].entries.items()
        }
    return out


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_document_as_json_loads(encoding: dict[str, Any]) -> None:
    doc = two_sites()
    doc["contents"]["é\u2028"] = [2]
    doc["contents"]['quote"back\\slash'] = [0, 1]
    body = json.dumps(doc, **encoding).encode()
    assert plain(decode_snapshot(body)) == json.loads(body)
    index = build_index(decode_snapshot(body))
    assert index.contents == build_index(json.loads(body)).contents
    doc["contents"]["big"] = [70000]  # past the preallocated ints
    body = json.dumps(doc, **encoding).encode()
    assert plain(decode_snapshot(body)) == json.loads(body)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_equal_lists_share_a_tuple(encoding: dict[str, Any]) -> None:
    body = json.dumps({"contents": {f"c{i}": [0, 2] for i in range(5)}}, **encoding).encode()
    parsed = decode_snapshot(body)["contents"]
    assert len({id(v) for v in parsed.entries.values()}) == 1
    assert parsed.high == 2


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"a":1',
        b'{"a":1}x',
        b'{"contents":{"a":[1,2]',
        b'{"contents":{"a":[1,2],}}',
        b'{"contents":{"a":[01]}}',
        b'{"contents":{"a" [1]}}',
        b'{"contents":{a:[1]}}',
        b'{"contents":{"a":[1]} "b":1}',
        b"\xff",
        b"[" * 10000,
    ],
)
def test_invalid_json_is_a_value_error(body: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        json.loads(body)
    with pytest.raises((ValueError, RecursionError)):
        decode_snapshot(body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[]", "$"),
        (b'{"contents":{"a":[-1]}}', "contents.a"),
        (b'{"contents":{"a":[true]}}', "contents.a"),
        (b'{"contents":{"a":[1.0]}}', "contents.a"),
        (b'{"contents":{"a":"0"}}', "contents.a"),
        (b'{"contents":{"a":[[0]]}}', "contents.a"),
    ],
)
def test_bad_holders_name_the_content_id(body: bytes, field: str) -> None:
    with pytest.raises(FieldError) as info:
        decode_snapshot(body)
    assert info.value.field == field


def test_an_index_past_the_appliances_is_named() -> None:
    doc = two_sites()
    doc["contents"]["far"] = [3]
    with pytest.raises(FieldError) as info:
        build_index(decode_snapshot(json.dumps(doc).encode()))
    assert info.value.field == "contents.far"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
holder_lists = st.lists(st.integers(0, 100_000), max_size=5)


@given(
    st.dictionaries(st.text(), holder_lists, max_size=8),
    st.dictionaries(st.text().filter(lambda k: k != "contents"), json_values, max_size=3),
    st.sampled_from(ENCODINGS),
)
def test_any_document_decodes_like_json_loads(
    contents: dict[str, list[int]], head: dict[str, Any], encoding: dict[str, Any]
) -> None:
    doc = {**head, "contents": contents}
    body = json.dumps(doc, **encoding).encode()
    assert plain(decode_snapshot(body)) == json.loads(body)


@given(st.binary(max_size=60))
def test_garbage_never_escapes_as_another_exception(body: bytes) -> None:
    with contextlib.suppress(ValueError, RecursionError):
        decode_snapshot(b'{"contents":{' + body)
