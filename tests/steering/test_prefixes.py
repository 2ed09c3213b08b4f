"""Longest-prefix match and the nearest-prefix fallback, against ipaddress as the oracle."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steering.prefixes import (
    IPV4,
    IPV6,
    PrefixError,
    PrefixTable,
    common_leading_bits,
    parse_ip,
    parse_prefix,
)

TABLE = PrefixTable(
    [
        ("10.0.0.0/8", "wide"),
        ("10.1.0.0/16", "mid"),
        ("10.1.2.0/24", "narrow"),
        ("10.1.2.7/32", "host"),
        ("2001:db8::/32", "v6-wide"),
        ("2001:db8:1::/48", "v6-narrow"),
        ("::ffff:192.0.2.0/120", "mapped"),
    ]
)


@pytest.mark.parametrize(
    ("ip", "site"),
    [
        ("10.9.9.9", "wide"),
        ("10.1.9.9", "mid"),
        ("10.1.2.8", "narrow"),
        ("10.1.2.7", "host"),
        ("11.0.0.1", None),
        ("::ffff:10.1.2.9", "narrow"),
        ("2001:db8:2::1", "v6-wide"),
        ("2001:db8:1:ffff::1", "v6-narrow"),
        ("2001:db9::1", None),
        ("192.0.2.77", "mapped"),
        ("::ffff:192.0.2.77", "mapped"),
    ],
)
def test_lookup_takes_the_longest_prefix(ip: str, site: str | None) -> None:
    assert TABLE.lookup(ip) == site


def test_len_counts_distinct_prefixes() -> None:
    assert len(TABLE) == 7
    assert len(PrefixTable([("10.0.0.0/8", 1), ("10.2.3.4/8", 1)])) == 1


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.256", "::g", "fe80::1%eth0", "10.0.0.0/8"])
def test_parse_ip_rejects(bad: str) -> None:
    with pytest.raises(PrefixError):
        parse_ip(bad)


def test_parse_ip_maps_ipv4_mapped_addresses() -> None:
    assert parse_ip("::ffff:1.2.3.4") == (IPV4, 0x01020304)
    assert parse_ip("1.2.3.4") == (IPV4, 0x01020304)
    assert parse_ip("::1") == (IPV6, 1)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "x/8", "2001:db8::/129", ""])
def test_parse_prefix_rejects(bad: str) -> None:
    with pytest.raises(PrefixError):
        parse_prefix(bad)


def test_host_bits_are_cleared() -> None:
    assert parse_prefix("10.1.2.3/8") == (IPV4, 10 << 24, 8)
    assert parse_prefix("::ffff:10.0.0.0/104") == (IPV4, 10 << 24, 8)


def test_a_prefix_claimed_by_two_sites_keeps_the_first() -> None:
    table = PrefixTable([("10.0.0.0/8", "a"), ("10.0.0.0/8", "a"), ("10.9.0.0/8", "b")])
    assert table.lookup("10.1.1.1") == "a"
    assert len(table) == 1
    assert table.conflicts == (("10.9.0.0/8", "a", "b"),)


def test_nearest_prefers_most_common_leading_bits() -> None:
    table = PrefixTable([("10.0.0.0/24", "a"), ("10.0.128.0/24", "b"), ("192.168.0.0/16", "c")])
    assert table.lookup("10.0.200.1") is None
    assert table.nearest("10.0.200.1") == "b"  # shares 17 bits with 10.0.128.0
    assert table.nearest("9.255.255.255") == "a"
    assert table.nearest("200.0.0.1") == "c"
    assert table.nearest("2001:db8::1") is None  # no IPv6 prefixes at all


def test_common_leading_bits() -> None:
    assert common_leading_bits(0, 0, 32) == 32
    assert common_leading_bits(0x80000000, 0, 32) == 0
    assert common_leading_bits(0x0000FFFF, 0x0000FF00, 32) == 24


prefixes4 = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32))


@given(st.lists(prefixes4, max_size=40), st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_lookup_matches_a_linear_scan(prefixes: list[tuple[int, int]], ips: list[int]) -> None:
    nets = {}
    for value, length in prefixes:
        net = ipaddress.IPv4Network((value, length), strict=False)
        nets[net] = str(net)
    table = PrefixTable((str(net), name) for net, name in nets.items())
    for value in ips:
        addr = ipaddress.IPv4Address(value)
        holding = [net for net in nets if addr in net]
        best = max(holding, key=lambda n: n.prefixlen, default=None)
        assert table.lookup(str(addr)) == (nets[best] if best else None)
        if best is None and nets:
            # The fallback picks a prefix whose network shares the most leading bits.
            top = max(common_leading_bits(int(n.network_address), value, 32) for n in nets)
            chosen = table.nearest(str(addr))
            assert chosen is not None
            net = ipaddress.IPv4Network(chosen)
            assert common_leading_bits(int(net.network_address), value, 32) == top


@given(st.integers(0, 2**128 - 1), st.integers(0, 128))
def test_ipv6_prefix_contains_its_addresses(value: int, length: int) -> None:
    net = ipaddress.IPv6Network((value, length), strict=False)
    table = PrefixTable([(str(net), "s")])
    assert table.lookup(str(ipaddress.IPv6Address(value))) in ("s", None)
    if value >> 32 != 0xFFFF:  # mapped addresses are IPv4 and the prefix may not be
        assert table.lookup(str(ipaddress.IPv6Address(value))) == "s"
