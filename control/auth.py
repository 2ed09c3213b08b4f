"""Bearer-token authorisation of control's callers by role (docs/fleet-api.md, Authentication).

Pure: a presented token and the roles an endpoint allows in, an `AuthResult` out. Tokens are
HMAC-derived from the fleet secret (`edgefleet.fleet.role_token`), so control stores nothing
per caller; it precomputes the tokens of the roles it knows (steering, admin, the topology's
appliances) to tell a token of another role (403) from a token of no role (401).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from enum import Enum

from edgefleet.fleet import role_token

STEERING = "steering"
ADMIN = "admin"


def appliance_role(name: str) -> str:
    """The role an appliance authenticates as."""
    return f"appliance:{name}"


class AuthResult(Enum):
    """The outcome of checking a bearer token; the value is the error sent with a refusal."""

    OK = ""
    MISSING = "missing bearer token"
    UNKNOWN = "invalid bearer token"  # matches no role
    FORBIDDEN = "this token's role may not call this endpoint"  # valid, for another role

    @property
    def status(self) -> int:
        """The HTTP status it maps to."""
        return _STATUS[self]


_STATUS = {
    AuthResult.OK: 200,
    AuthResult.MISSING: 401,
    AuthResult.UNKNOWN: 401,
    AuthResult.FORBIDDEN: 403,
}


class RoleTokens:
    """The fleet's role tokens, for checking what callers present."""

    def __init__(self, secret: bytes, appliance_names: Iterable[str] = ()) -> None:
        self._secret = secret
        self._by_role: dict[str, str] = {}
        self._by_token: dict[str, str] = {}
        self.set_appliances(appliance_names)

    def set_appliances(self, names: Iterable[str]) -> None:
        """Know these appliances (after a topology reload)."""
        roles = [STEERING, ADMIN, *(appliance_role(n) for n in names)]
        self._by_role = {role: role_token(self._secret, role) for role in roles}
        self._by_token = {token: role for role, token in self._by_role.items()}

    def token(self, role: str) -> str:
        """The bearer token of *role*."""
        known = self._by_role.get(role)
        return known if known is not None else role_token(self._secret, role)

    def check(self, presented: str | None, allowed: Iterable[str]) -> AuthResult:
        """Whether *presented* is the token of one of the *allowed* roles."""
        if presented is None:
            return AuthResult.MISSING
        if not presented.isascii():
            return AuthResult.UNKNOWN
        given = presented.encode()
        for role in allowed:
            # Constant time against the token that would be right: timing tells nothing.
            if hmac.compare_digest(given, self.token(role).encode()):
                return AuthResult.OK
        # Only for 401 vs 403. A dict probe hashes with SipHash under a per-process random
        # key, so its timing says nothing useful about stored tokens.
        return AuthResult.FORBIDDEN if presented in self._by_token else AuthResult.UNKNOWN
