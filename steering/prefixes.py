"""Longest-prefix match of client addresses (IPv4 and IPv6) onto sites.

A `PrefixTable` holds, per address family, one dict per prefix length present, keyed by the
network's leading bits (`address >> (family bits - length)`). A lookup probes the lengths
present from longest to shortest: at most 33 (IPv4) or 129 (IPv6) dict probes, in practice the
dozen or so lengths a routing table uses, whatever the number of prefixes.

IPv4-mapped IPv6 addresses (`::ffff:198.51.100.7`) and prefixes inside `::ffff:0:0/96` are
treated as IPv4: a dual-stack listener reports IPv4 clients that way.

Clients no prefix matches get a fallback: `nearest(ip)` names the site holding the prefix
whose network address shares the most leading bits with the client (ties: the lower network
address). Addresses handed out together tend to be routed together, so that site is a better
guess than none; steering then orders the other sites by cost from it, as for a matched
client, but classifies the answer `no_site`. Great-circle distance would need the client's
location, which steering does not have. The nearest network is found by bisection in a sorted
array of network addresses: among sorted integers, the one sharing the longest leading bits
with x is x's predecessor or successor.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")

IPV4, IPV6 = 4, 6
_BITS = {IPV4: 32, IPV6: 128}
_MAPPED_NET = int(ipaddress.IPv6Address("::ffff:0:0"))
_MAPPED_MASK = ((1 << 96) - 1) << 32


class PrefixError(ValueError):
    """A prefix or address is not valid."""


def parse_ip(text: str) -> tuple[int, int]:
    """(family, address as int) of *text*; IPv4-mapped IPv6 becomes IPv4. Raises PrefixError."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise PrefixError(f"not an IP address: {text[:60]!r}") from None
    if isinstance(addr, ipaddress.IPv4Address):
        return IPV4, int(addr)
    if addr.scope_id is not None:
        raise PrefixError("scoped IPv6 addresses are not accepted")
    value = int(addr)
    if value & _MAPPED_MASK == _MAPPED_NET:
        return IPV4, value & 0xFFFFFFFF
    return IPV6, value


def parse_prefix(text: str) -> tuple[int, int, int]:
    """(family, network as int, length) of *text* (host bits are cleared). Raises PrefixError."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except (TypeError, ValueError):
        raise PrefixError(f"not an address prefix: {str(text)[:60]!r}") from None
    value, length = int(net.network_address), net.prefixlen
    if net.version == IPV4:
        return IPV4, value, length
    if length >= 96 and value & _MAPPED_MASK == _MAPPED_NET:
        return IPV4, value & 0xFFFFFFFF, length - 96
    return IPV6, value, length


def common_leading_bits(a: int, b: int, bits: int) -> int:
    """How many leading bits of two *bits*-bit integers are equal."""
    return bits - (a ^ b).bit_length()


class _Family(Generic[V]):
    """The prefixes of one address family."""

    __slots__ = ("bits", "by_length", "probes", "sorted_nets", "sorted_values")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.by_length: dict[int, dict[int, V]] = {}
        # (shift, table) from the longest length to the shortest; built by freeze().
        self.probes: tuple[tuple[int, dict[int, V]], ...] = ()
        self.sorted_nets: list[int] = []
        self.sorted_values: list[V] = []

    def freeze(self) -> None:
        lengths = sorted(self.by_length, reverse=True)
        self.probes = tuple((self.bits - n, self.by_length[n]) for n in lengths)
        pairs: dict[int, V] = {}
        # Shorter prefixes first, so that a longer prefix with the same network address wins.
        for n in sorted(self.by_length):
            shift = self.bits - n
            for key, value in self.by_length[n].items():
                pairs[key << shift] = value
        self.sorted_nets = sorted(pairs)
        self.sorted_values = [pairs[k] for k in self.sorted_nets]


class PrefixTable(Generic[V]):
    """Maps addresses to values (sites) by longest-prefix match; immutable once built.

    A prefix given twice with different values keeps the first one and is listed in
    `conflicts` (prefix, kept value, refused value): with learned routes in the snapshot, two
    sites may well announce the same prefix, and refusing the whole table would freeze
    steering on an old snapshot.
    """

    __slots__ = ("_families", "_size", "conflicts")

    def __init__(self, entries: Iterable[tuple[str, V]]) -> None:
        families: dict[int, _Family[V]] = {IPV4: _Family(32), IPV6: _Family(128)}
        size = 0
        conflicts: list[tuple[str, V, V]] = []
        for text, value in entries:
            family, network, length = parse_prefix(text)
            fam = families[family]
            table = fam.by_length.setdefault(length, {})
            key = network >> (fam.bits - length)
            if key not in table:
                table[key] = value
                size += 1
            elif table[key] != value:
                conflicts.append((text, table[key], value))
        for fam in families.values():
            fam.freeze()
        self._families = families
        self._size = size
        self.conflicts = tuple(conflicts)

    def __len__(self) -> int:
        return self._size

    def lookup_int(self, family: int, address: int) -> V | None:
        """The value of the longest prefix holding *address* (from `parse_ip`), or None."""
        for shift, table in self._families[family].probes:
            value = table.get(address >> shift)
            if value is not None:
                return value
        return None

    def lookup(self, ip: str) -> V | None:
        """The value of the longest prefix holding *ip*, or None. Raises PrefixError."""
        return self.lookup_int(*parse_ip(ip))

    def nearest_int(self, family: int, address: int) -> V | None:
        """The value of the prefix whose network shares most leading bits with *address*.

        None when the family has no prefixes at all.
        """
        fam = self._families[family]
        nets = fam.sorted_nets
        if not nets:
            return None
        i = bisect.bisect_right(nets, address)
        if i == 0:
            return fam.sorted_values[0]
        if i == len(nets):
            return fam.sorted_values[-1]
        below = common_leading_bits(nets[i - 1], address, fam.bits)
        above = common_leading_bits(nets[i], address, fam.bits)
        return fam.sorted_values[i - 1] if below >= above else fam.sorted_values[i]

    def nearest(self, ip: str) -> V | None:
        """`nearest_int` for an address string. Raises PrefixError."""
        return self.nearest_int(*parse_ip(ip))
