"""The fleet's shared vocabulary: the fleet secret, role tokens, appliance states, FieldError.

What crosses the wire between edge, control and steering is defined once in edgefleet (see
docs/fleet-api.md): registration and heartbeats in `edgefleet.heartbeat`, manifests in
`edgefleet.manifests`; services build and check those documents with those modules and never
import each other's.
"""

from __future__ import annotations

import hmac
from enum import StrEnum
from pathlib import Path
from typing import Any

ROLE_PREFIX = "edgefleet-role\n"
MIN_SECRET_BYTES = 32


class AuthError(ValueError):
    """A fleet secret file is missing or invalid."""


class ApplianceState(StrEnum):
    """What steering needs to know about an appliance."""

    UP = "up"
    DOWN = "down"
    DRAINING = "draining"
    SATURATED = "saturated"


def load_secret(path: str | Path) -> bytes:
    """The fleet secret: a file holding 32+ random bytes as hex."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise AuthError(f"{path}: {exc.strerror}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise AuthError(f"{path}: the fleet secret must be hex") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise AuthError(f"{path}: the fleet secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def role_token(secret: bytes, role: str) -> str:
    """The bearer token of *role* ("appliance:<name>", "steering", "admin")."""
    return hmac.new(secret, (ROLE_PREFIX + role).encode(), "sha256").hexdigest()


def bearer(headers: Any) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class FieldError(ValueError):
    """A JSON document has a missing or invalid field; `field` names it."""

    def __init__(self, field_name: str, message: str, *, prefix_field: bool = True) -> None:
        # Most messages start with the field's name; a few that control has always sent
        # bare (registration, prefix types) keep their wording (`prefix_field=False`).
        super().__init__(f"{field_name}: {message}" if prefix_field else message)
        self.field = field_name
