"""Signed-URL tokens as a worker checks them: verified once per (content id, query, client) and
remembered until they expire, so a player fetching hundreds of ranges with one URL costs one
HMAC. The signature itself is `edgefleet.tokens`' (shared with the control plane)."""

from __future__ import annotations

import math
import time
from typing import Final

from edge.server_state import ServerState
from edgefleet import tokens

TOKENS_SEEN_MAX: Final = 65_536  # then the memory starts afresh


def known_expiry(worker: ServerState, cid: bytes, query: bytes, peer: str) -> float:
    """Until when *peer*'s token for *cid* is known good: infinity when tokens are not
    required, 0 when it was not verified yet or has expired (then `verify`)."""
    if worker.keyring is None:
        return math.inf
    seen = worker.tokens_seen.get((cid, query, peer))
    return 0.0 if seen is None or seen < time.time() else seen


def verify(worker: ServerState, cid: bytes, query: bytes, peer: str) -> tokens.TokenError | None:
    """Verify the token in *query*; remember it when good, else say why it was refused."""
    assert worker.keyring is not None
    params = query_params(query)
    err = tokens.verify(
        worker.keyring,
        cid.decode(),
        params,
        peer,
        require_binding=worker.config.tokens.require_client_binding,
    )
    if err is not None:
        return err
    seen = worker.tokens_seen
    if len(seen) >= TOKENS_SEEN_MAX:
        worker.tokens_seen = seen = {}  # a new object: connections' known_targets go stale
    seen[(cid, query, peer)] = int(params["e"])
    return None


def query_params(query: bytes) -> dict[str, str]:
    """The token parameters of a query string (the rest is ignored)."""
    params: dict[str, str] = {}
    if query:
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if name in (b"e", b"k", b"t", b"p"):
                params[name.decode("latin-1")] = value.decode("latin-1")
    return params
