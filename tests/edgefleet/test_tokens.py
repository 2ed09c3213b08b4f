"""Signed URLs: sign/verify, tampering, address binding, key rotation, keyring files."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgefleet.models import CONTENT_ID_RE
from edgefleet.tokens import (
    MIN_KEY_BYTES,
    Keyring,
    KeyringError,
    TokenError,
    new_key,
    sign,
    signed_query,
    verify,
)

NOW = 1_700_000_000
LATER = NOW + 3600
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
RING = Keyring(keys={"a": KEY_A}, current="a")


# -- round trip --------------------------------------------------------------------------------


def test_unbound_token_verifies_from_any_address() -> None:
    params = sign(RING, "movie.mp4", LATER)
    assert set(params) == {"e", "k", "t"}
    assert params["k"] == "a"
    for client in ("192.0.2.1", "203.0.113.9", "2001:db8::1"):
        assert verify(RING, "movie.mp4", params, client, now=NOW) is None


def test_signed_query_is_a_url_query_that_verifies() -> None:
    query = signed_query(RING, "movie.mp4", LATER, "192.0.2.1")
    params = dict(parse_qsl(query))
    assert verify(RING, "movie.mp4", params, "192.0.2.1", now=NOW) is None


content_ids = st.from_regex(CONTENT_ID_RE, fullmatch=True)
expiries = st.integers(NOW, 10**12 - 1)


@st.composite
def clients(draw: st.DrawFn) -> tuple[str, int | None]:
    addr = draw(st.ip_addresses())
    prefix = draw(st.none() | st.integers(0, addr.max_prefixlen))
    return str(addr), prefix


@given(content_ids, expiries, clients())
def test_round_trip(content_id: str, expiry: int, client: tuple[str, int | None]) -> None:
    ip, prefix = client
    params = sign(RING, content_id, expiry, ip, prefix)
    assert verify(RING, content_id, params, ip, now=NOW) is None
    assert verify(RING, content_id, params, ip, now=NOW, require_binding=True) is None
    # The same token for another content id is refused.
    assert verify(RING, content_id + "x", params, ip, now=NOW) is TokenError.MISMATCH


@given(content_ids, expiries, st.ip_addresses(v=4), st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_ipv4_binding_admits_exactly_the_bound_network(
    content_id: str, expiry: int, addr: ipaddress.IPv4Address, prefix: int, other: int
) -> None:
    params = sign(RING, content_id, expiry, str(addr), prefix)
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    inside = ipaddress.IPv4Address(int(net.network_address) | (other & int(net.hostmask)))
    assert verify(RING, content_id, params, str(inside), now=NOW) is None
    client = ipaddress.IPv4Address(other)
    expected = None if client in net else TokenError.MISMATCH
    assert verify(RING, content_id, params, str(client), now=NOW) is expected


@given(st.ip_addresses(v=6), st.integers(0, 128), st.integers(0, 2**128 - 1))
def test_ipv6_binding_admits_exactly_the_bound_network(
    addr: ipaddress.IPv6Address, prefix: int, other: int
) -> None:
    if addr.ipv4_mapped is not None:
        addr = ipaddress.IPv6Address(int(addr) ^ (1 << 100))  # keep this test to real IPv6
    params = sign(RING, "a.m4s", LATER, str(addr), prefix)
    client = ipaddress.IPv6Address(other)
    assume(client.ipv4_mapped is None)
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    inside = ipaddress.IPv6Address(int(net.network_address) | (other & int(net.hostmask)))
    if inside.ipv4_mapped is None:
        assert verify(RING, "a.m4s", params, str(inside), now=NOW) is None
    expected = None if client in net else TokenError.MISMATCH
    assert verify(RING, "a.m4s", params, str(client), now=NOW) is expected


def test_default_binding_is_the_whole_address() -> None:
    v4 = sign(RING, "x", LATER, "192.0.2.1")
    assert v4["p"] == "32"
    assert verify(RING, "x", v4, "192.0.2.1", now=NOW) is None
    assert verify(RING, "x", v4, "192.0.2.2", now=NOW) is TokenError.MISMATCH
    v6 = sign(RING, "x", LATER, "2001:db8::1")
    assert v6["p"] == "128"
    assert verify(RING, "x", v6, "2001:db8::2", now=NOW) is TokenError.MISMATCH


def test_subnet_binding() -> None:
    params = sign(RING, "x", LATER, "192.0.2.1", 24)
    assert verify(RING, "x", params, "192.0.2.254", now=NOW) is None
    assert verify(RING, "x", params, "192.0.3.1", now=NOW) is TokenError.MISMATCH
    params = sign(RING, "x", LATER, "2001:db8:1:2::1", 64)
    assert verify(RING, "x", params, "2001:db8:1:2:ffff::9", now=NOW) is None
    assert verify(RING, "x", params, "2001:db8:1:3::1", now=NOW) is TokenError.MISMATCH


def test_address_families_do_not_match_each_other() -> None:
    params = sign(RING, "x", LATER, "0.0.0.0", 0)
    assert verify(RING, "x", params, "203.0.113.7", now=NOW) is None
    assert verify(RING, "x", params, "2001:db8::1", now=NOW) is TokenError.MISMATCH


@pytest.mark.parametrize(
    ("signed_for", "client", "prefix"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1", None),
        ("192.0.2.1", "::ffff:192.0.2.1", None),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1", None),
        ("192.0.2.1", "::ffff:192.0.2.77", 24),
        ("::ffff:192.0.2.1", "192.0.2.77", 24),
    ],
)
def test_ipv4_mapped_ipv6_is_treated_as_ipv4(
    signed_for: str, client: str, prefix: int | None
) -> None:
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    params = sign(RING, "x", LATER, signed_for, prefix)
    assert verify(RING, "x", params, client, now=NOW) is None
    assert verify(RING, "x", params, "::ffff:198.51.100.1", now=NOW) is TokenError.MISMATCH


# -- refusals ----------------------------------------------------------------------------------


def test_expired() -> None:
    params = sign(RING, "x", NOW, "192.0.2.1")
    assert verify(RING, "x", params, "192.0.2.1", now=NOW) is None  # valid until expiry
    assert verify(RING, "x", params, "192.0.2.1", now=NOW + 1) is TokenError.EXPIRED
    assert verify(RING, "x", params, "192.0.2.1") is TokenError.EXPIRED  # wall clock


def _flip(text: str) -> str:
    return ("B" if text[0] == "A" else "A") + text[1:]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"t": "flip"}, TokenError.MISMATCH),
        ({"e": str(LATER + 1)}, TokenError.MISMATCH),  # extending the expiry
        ({"e": str(NOW - 10)}, TokenError.MISMATCH),  # even when it would be expired
        ({"p": "16"}, TokenError.MISMATCH),  # widening the bound network
        ({"p": None}, TokenError.MISMATCH),  # stripping the binding
        ({"k": "b"}, TokenError.UNKNOWN_KEY),
        ({"e": None}, TokenError.MISSING),
        ({"k": None}, TokenError.MISSING),
        ({"t": None}, TokenError.MISSING),
        ({"e": "soon"}, TokenError.MALFORMED),
        ({"e": "-1"}, TokenError.MALFORMED),
        ({"e": "1" * 13}, TokenError.MALFORMED),
        ({"e": "\u00b2"}, TokenError.MALFORMED),  # "²".isdigit() is True; int("²") fails
        ({"e": "\u0661\u0662"}, TokenError.MALFORMED),  # Arabic-Indic digits
        ({"t": "A" * 65}, TokenError.MALFORMED),
        ({"p": "abc"}, TokenError.MALFORMED),
        ({"p": "129"}, TokenError.MALFORMED),
        ({"p": "-1"}, TokenError.MALFORMED),
        ({"p": "\u00b2"}, TokenError.MALFORMED),
        ({"p": "3" * 5000}, TokenError.MALFORMED),  # int() refuses > 4300 digits
    ],
)
def test_tampered_or_broken_token(change: dict[str, str | None], error: TokenError) -> None:
    params = sign(RING, "x", LATER, "192.0.2.1", 24)
    for name, value in change.items():
        if value is None:
            del params[name]
        else:
            params[name] = _flip(params[name]) if value == "flip" else value
    assert verify(RING, "x", params, "192.0.2.1", now=NOW) is error


def test_tampered_content_id() -> None:
    params = sign(RING, "episode1.mp4", LATER)
    assert verify(RING, "episode2.mp4", params, "192.0.2.1", now=NOW) is TokenError.MISMATCH
    assert verify(RING, "episode1.mp", params, "192.0.2.1", now=NOW) is TokenError.MISMATCH


def test_adding_a_binding_to_an_unbound_token_fails() -> None:
    params = sign(RING, "x", LATER) | {"p": "0"}
    assert verify(RING, "x", params, "192.0.2.1", now=NOW) is TokenError.MISMATCH


def test_require_binding_refuses_unbound_tokens() -> None:
    unbound = sign(RING, "x", LATER)
    assert verify(RING, "x", unbound, "192.0.2.1", now=NOW) is None
    refused = verify(RING, "x", unbound, "192.0.2.1", now=NOW, require_binding=True)
    assert refused is TokenError.MISMATCH
    bound = sign(RING, "x", LATER, "192.0.2.1")
    assert verify(RING, "x", bound, "192.0.2.1", now=NOW, require_binding=True) is None


def test_every_error_has_a_one_line_reason() -> None:
    for error in TokenError:
        assert error.value
        assert "\n" not in error.value


# -- key rotation -----------------------------------------------------------------------------


def test_key_rotation() -> None:
    old_ring = Keyring(keys={"k1": KEY_A}, current="k1")
    old_url = sign(old_ring, "x", LATER)
    # Rotate: sign with k2, keep k1 until its URLs have expired.
    rotated = Keyring(keys={"k1": KEY_A, "k2": KEY_B}, current="k2")
    new_url = sign(rotated, "x", LATER)
    assert new_url["k"] == "k2"
    assert new_url["t"] != old_url["t"]
    assert verify(rotated, "x", old_url, "192.0.2.1", now=NOW) is None
    assert verify(rotated, "x", new_url, "192.0.2.1", now=NOW) is None
    # The old appliance does not know k2 yet.
    assert verify(old_ring, "x", new_url, "192.0.2.1", now=NOW) is TokenError.UNKNOWN_KEY
    # Retire k1.
    retired = Keyring(keys={"k2": KEY_B}, current="k2")
    assert verify(retired, "x", old_url, "192.0.2.1", now=NOW) is TokenError.UNKNOWN_KEY
    assert verify(retired, "x", new_url, "192.0.2.1", now=NOW) is None


def test_same_key_id_with_another_secret_fails() -> None:
    params = sign(RING, "x", LATER)
    impostor = Keyring(keys={"a": KEY_B}, current="a")
    assert verify(impostor, "x", params, "192.0.2.1", now=NOW) is TokenError.MISMATCH


# -- keyring files ----------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keyring.toml"
    path.write_text(text)
    return path


def test_keyring_file_round_trip(tmp_path: Path) -> None:
    ring = Keyring(keys={"2024-01": KEY_A, "2024-02": bytes.fromhex(new_key())}, current="2024-02")
    loaded = Keyring.load(_write(tmp_path, ring.dumps()))
    assert loaded == ring
    params = sign(ring, "x", LATER)
    assert verify(loaded, "x", params, "192.0.2.1", now=NOW) is None


def test_current_defaults_to_the_first_key(tmp_path: Path) -> None:
    path = _write(tmp_path, f'[keys]\nfirst = "{KEY_A.hex()}"\nsecond = "{KEY_B.hex()}"\n')
    assert Keyring.load(path).current == "first"


def test_new_key_is_long_enough_and_random() -> None:
    a, b = new_key(), new_key()
    assert len(bytes.fromhex(a)) >= MIN_KEY_BYTES
    assert a != b


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'current = "a"\n[keys]\na = "{"ab" * 31}"\n', "shorter than 32 bytes"),
        ('current = "a"\n[keys]\na = "not hex at all"\n', "must be a hex string"),
        ('current = "a"\n[keys]\na = 42\n', "must be a hex string"),
        (f'current = "b"\n[keys]\na = "{KEY_A.hex()}"\n', "current key 'b' is not in [keys]"),
        (f'current = ["a"]\n[keys]\na = "{KEY_A.hex()}"\n', "is not in [keys]"),
        (f'current = "a"\nextra = 1\n[keys]\na = "{KEY_A.hex()}"\n', "unknown key 'extra'"),
        ('current = "a"\n', "needs a [keys] table"),
        ('current = "a"\n[keys]\n', "needs a [keys] table"),
        ('keys = "a"\n', "needs a [keys] table"),
        (f'[keys]\n"a b" = "{KEY_A.hex()}"\n', "key id 'a b'"),
        (f'[keys]\n"{"k" * 33}" = "{KEY_A.hex()}"\n', "must be 1-32"),
        (f'[keys]\n"cl\u00e9" = "{KEY_A.hex()}"\n', "must be 1-32 of [A-Za-z0-9-]"),
        ("this is not toml", "keyring.toml"),
    ],
)
def test_keyring_validation_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(KeyringError) as excinfo:
        Keyring.load(path)
    assert message in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_missing_keyring_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match=r"nowhere\.toml"):
        Keyring.load(tmp_path / "nowhere.toml")
