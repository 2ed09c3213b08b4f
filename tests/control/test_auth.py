"""Role tokens: 401 without or with an unknown token, 403 with another role's token."""

from __future__ import annotations

import secrets

from control.auth import ADMIN, STEERING, AuthResult, RoleTokens, appliance_role
from edgefleet.fleet import role_token

SECRET = secrets.token_bytes(32)


def test_roles() -> None:
    tokens = RoleTokens(SECRET, ["ams1-a", "ams1-b"])
    a = role_token(SECRET, "appliance:ams1-a")
    assert tokens.check(a, [appliance_role("ams1-a")]) is AuthResult.OK
    assert tokens.check(a, [appliance_role("ams1-b")]) is AuthResult.FORBIDDEN
    assert tokens.check(a, [ADMIN]) is AuthResult.FORBIDDEN
    assert tokens.check(tokens.token(STEERING), [STEERING, ADMIN]) is AuthResult.OK
    assert tokens.check(tokens.token(STEERING), [ADMIN]) is AuthResult.FORBIDDEN
    assert tokens.check(None, [ADMIN]) is AuthResult.MISSING
    assert tokens.check("00" * 32, [ADMIN]) is AuthResult.UNKNOWN
    assert tokens.check("é" * 64, [ADMIN]) is AuthResult.UNKNOWN
    other = RoleTokens(secrets.token_bytes(32), ["ams1-a"])
    assert other.check(a, [appliance_role("ams1-a")]) is AuthResult.UNKNOWN
    assert [r.status for r in AuthResult] == [200, 401, 401, 403]


def test_appliances_follow_the_topology() -> None:
    tokens = RoleTokens(SECRET, ["ams1-a"])
    b = role_token(SECRET, "appliance:ams1-b")
    # Right for its own path even before control knows the name (control then answers 404).
    assert tokens.check(b, [appliance_role("ams1-b")]) is AuthResult.OK
    assert tokens.check(b, [ADMIN]) is AuthResult.UNKNOWN
    tokens.set_appliances(["ams1-a", "ams1-b"])
    assert tokens.check(b, [ADMIN]) is AuthResult.FORBIDDEN
