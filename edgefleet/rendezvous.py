"""Weighted rendezvous hashing, one score per (content, appliance), scalar and vectorised.

The score of appliance (seed s, weight w) for a content id is `-w / ln(h)` (weighted HRW:
each appliance wins a share of files proportional to its weight), with

    b = xxh64(content id)                      once per file, the planner's catalog column
    x = splitmix64 finaliser of (b XOR s)      s = xxh64(appliance name)
    h = ((x >> 12) + 0.5) * 2**-52             52 bits + 0.5: strictly inside (0, 1)

This module is the hash's one owner: steering (steering/ranking.py, per request) calls
`hrw_score`, the planner (fill/planner/, a million files at once) `hrw_scores`, and the two
give the same bits for every (file, appliance, weight). Two choices make that possible:

- the per-pair hash is an integer mix of two precomputed 64-bit hashes, not a seeded xxh64 per
  pair, so numpy computes it over whole columns;
- `ln` is `portable_ln`: frexp plus an odd series in (m - 1) / (m + 1), evaluated by Horner's
  rule with IEEE-754 +, -, *, / only. Those are correctly rounded everywhere, so the same
  operations in the same order give the same bits in Python and numpy (numpy's own `log` is a
  SIMD routine that differs from libm's in the last bit for about 1 value in 300).

tests/edgefleet/test_rendezvous.py checks that the scalar and vectorised scores are equal (==)
for any file, appliance and weight.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import xxhash

if TYPE_CHECKING:
    # numpy only for the planner's columns: steering imports this module without loading it.
    import numpy as np
    import numpy.typing as npt

    U64 = npt.NDArray[np.uint64]
    F64 = npt.NDArray[np.float64]

_H64 = xxhash.xxh64_intdigest
_frexp = math.frexp
_UNIT = 2.0**-52
_MASK = (1 << 64) - 1
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_LN2 = 0.6931471805599453
_SQRT_HALF = 0.7071067811865476
# 1 / (2k + 1), k = 6 .. 1: |s| <= 0.1716, so the truncation error is below s**14 / 15 < 2e-12
# relative: far below what weights need, and both implementations truncate identically.
_SERIES = tuple(1.0 / (2 * k + 1) for k in range(6, 0, -1))
_C13, _C11, _C9, _C7, _C5, _C3 = _SERIES


def content_hash(content_id: str) -> int:
    """The file's 64-bit base hash (computed once per catalog file)."""
    return _H64(content_id.encode())


def key_hash(key: bytes) -> int:
    """`content_hash` of a content id already in utf-8 (steering's request key)."""
    return _H64(key)


def appliance_seed(name: str) -> int:
    """The appliance's 64-bit seed."""
    return _H64(name.encode())


def portable_ln(h: float) -> float:
    """ln(h) for 0 < h, with only correctly rounded operations (see the module docstring)."""
    m, e = math.frexp(h)
    if m < _SQRT_HALF:
        m *= 2.0
        e -= 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    # _SERIES by Horner's rule, unrolled (steering calls this per request): the operations and
    # their order are exactly portable_ln_array's loop.
    p = (((((_C13 * s2 + _C11) * s2 + _C9) * s2 + _C7) * s2 + _C5) * s2 + _C3) * s2 + 1.0
    return float(e) * _LN2 + 2.0 * s * p


def hrw_score(base: int, seed: int, weight: float) -> float:
    """Weighted rendezvous score of appliance (*seed*, *weight*) for a file of hash *base*:
    steering's per-request score and, bit for bit, an element of `hrw_scores`."""
    x = base ^ seed
    x = ((x ^ (x >> 30)) * _M1) & _MASK
    x = ((x ^ (x >> 27)) * _M2) & _MASK
    x ^= x >> 31
    # portable_ln, inlined (steering's hot path saves the call): the same operations in the
    # same order, so the same bits (tested against portable_ln and hrw_scores).
    m, e = _frexp(((x >> 12) + 0.5) * _UNIT)
    if m < _SQRT_HALF:
        m *= 2.0
        e -= 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = (((((_C13 * s2 + _C11) * s2 + _C9) * s2 + _C7) * s2 + _C5) * s2 + _C3) * s2 + 1.0
    return -weight / (e * _LN2 + 2.0 * s * p)  # int * float: e converted exactly


def portable_ln_array(h: F64) -> F64:
    """`portable_ln` over an array, operation for operation."""
    import numpy as np

    m, e = np.frexp(h)
    low = m < _SQRT_HALF
    m = np.where(low, m * 2.0, m)
    ef = e.astype(np.float64) - low
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, _SERIES[0])
    for c in _SERIES[1:]:
        p = p * s2 + c
    p = p * s2 + 1.0
    out: F64 = ef * _LN2 + 2.0 * s * p
    return out


def hrw_scores(bases: U64, seed: int, weight: float) -> F64:
    """`hrw_score` of one appliance for every file hash of *bases*."""
    import numpy as np

    x = bases ^ np.uint64(seed)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
    x ^= x >> np.uint64(31)
    h = ((x >> np.uint64(12)).astype(np.float64) + 0.5) * _UNIT
    out: F64 = -weight / portable_ln_array(h)
    return out
