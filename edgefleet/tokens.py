"""Signed URLs: who may fetch which content, until when, and (optionally) from which address.

A URL carries `?e=<unix expiry>&k=<key id>&t=<token>` and, when the token is bound to the
client's address, `&p=<prefix length>`. The token is HMAC-SHA256 (base64url, unpadded) over

    v1 \\n <content id> \\n <expiry> \\n <prefix length or "-"> \\n <client network or "-">

where the client network is the client address masked to the prefix length (p=32 for one IPv4
address, p=128 for one IPv6 address; p=24 or p=64 lets a client move within its subnet). `p`
is inside the signed message, so stripping it from a URL invalidates the token.

Keys live in a keyring (TOML) with several ids at once, so that keys rotate without breaking
URLs already handed out: sign with the new key, keep the old one until its URLs have expired.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import time
import tomllib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlencode

MIN_KEY_BYTES = 32
KEY_ID_MAX = 32


class TokenError(Enum):
    """Why a token was refused; the value is the one-line reason sent with the 403."""

    MISSING = "missing token (expected ?e=&k=&t=)"
    MALFORMED = "malformed token"
    UNKNOWN_KEY = "unknown signing key"
    EXPIRED = "token expired"
    MISMATCH = "token does not match this content or client address"


class KeyringError(ValueError):
    """The keyring file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Keyring:
    """Signing keys by id, and the id to sign new URLs with."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def load(cls, path: str | Path) -> Keyring:
        """Read a keyring file: `current = "id"` and a `[keys]` table of id = "hex secret"."""
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise KeyringError(f"{path}: {exc}") from None
        raw = data.get("keys")
        if not isinstance(raw, dict) or not raw:
            raise KeyringError(f"{path}: needs a [keys] table with at least one key")
        keys: dict[str, bytes] = {}
        for key_id, secret in raw.items():
            if not (
                0 < len(key_id) <= KEY_ID_MAX
                and key_id.isascii()
                and key_id.replace("-", "").isalnum()
            ):
                raise KeyringError(f"{path}: key id '{key_id}' must be 1-32 of [A-Za-z0-9-]")
            try:
                value = bytes.fromhex(secret)
            except (TypeError, ValueError):
                raise KeyringError(f"{path}: key '{key_id}' must be a hex string") from None
            if len(value) < MIN_KEY_BYTES:
                raise KeyringError(f"{path}: key '{key_id}' is shorter than {MIN_KEY_BYTES} bytes")
            keys[key_id] = value
        current = data.get("current", next(iter(keys)))
        if not isinstance(current, str) or current not in keys:
            raise KeyringError(f"{path}: current key '{current}' is not in [keys]")
        unknown = set(data) - {"keys", "current"}
        if unknown:
            raise KeyringError(f"{path}: unknown key '{sorted(unknown)[0]}'")
        return cls(keys=keys, current=current)

    def dumps(self) -> str:
        """The keyring as TOML, for writing a new keyring file."""
        lines = [f'current = "{self.current}"', "", "[keys]"]
        lines += [f'{kid} = "{secret.hex()}"' for kid, secret in self.keys.items()]
        return "\n".join(lines) + "\n"


def _network(client_ip: str, prefix_len: int) -> str:
    addr = ipaddress.ip_address(client_ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    plen = min(prefix_len, addr.max_prefixlen)
    return str(ipaddress.ip_network(f"{addr}/{plen}", strict=False).network_address)


def _mac(key: bytes, content_id: str, expiry: str, prefix: str, network: str) -> str:
    msg = f"v1\n{content_id}\n{expiry}\n{prefix}\n{network}".encode()
    return base64.urlsafe_b64encode(hmac.digest(key, msg, "sha256")).rstrip(b"=").decode()


def sign(
    keyring: Keyring,
    content_id: str,
    expiry: int,
    client_ip: str | None = None,
    prefix_len: int | None = None,
) -> dict[str, str]:
    """Query parameters authorising *content_id* until *expiry* (unix seconds).

    With *client_ip*, the token is bound to that address masked to *prefix_len*
    (default: the whole address).
    """
    params = {"e": str(int(expiry)), "k": keyring.current}
    prefix, network = "-", "-"
    if client_ip is not None:
        addr = ipaddress.ip_address(client_ip)
        plen = prefix_len if prefix_len is not None else addr.max_prefixlen
        if not 0 <= plen <= addr.max_prefixlen:
            raise ValueError(f"prefix length {plen} is out of range for {client_ip}")
        prefix, network = str(plen), _network(client_ip, plen)
        params["p"] = prefix
    params["t"] = _mac(keyring.keys[keyring.current], content_id, params["e"], prefix, network)
    return params


def signed_query(
    keyring: Keyring,
    content_id: str,
    expiry: int,
    client_ip: str | None = None,
    prefix_len: int | None = None,
) -> str:
    """`sign`, as a URL query string."""
    return urlencode(sign(keyring, content_id, expiry, client_ip, prefix_len))


def verify(
    keyring: Keyring,
    content_id: str,
    params: dict[str, str],
    client_ip: str,
    now: float | None = None,
    require_binding: bool = False,
) -> TokenError | None:
    """None when *params* authorise *client_ip* to fetch *content_id* now, else the reason."""
    expiry, key_id, token = params.get("e"), params.get("k"), params.get("t")
    if expiry is None or key_id is None or token is None:
        return TokenError.MISSING
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12 or len(token) > 64:
        return TokenError.MALFORMED
    key = keyring.keys.get(key_id)
    if key is None:
        return TokenError.UNKNOWN_KEY
    prefix = params.get("p")
    if prefix is None:
        if require_binding:
            return TokenError.MISMATCH
        prefix_s, network = "-", "-"
    else:
        # Bounded length: int() of a several-thousand-digit string raises ValueError.
        if not (prefix.isascii() and prefix.isdigit()) or len(prefix) > 3 or int(prefix) > 128:
            return TokenError.MALFORMED
        prefix_s, network = prefix, _network(client_ip, int(prefix))
    expected = _mac(key, content_id, expiry, prefix_s, network)
    # Compare before checking expiry so that timing reveals nothing about the token.
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return TokenError.MISMATCH
    if int(expiry) < (time.time() if now is None else now):
        return TokenError.EXPIRED
    return None


def new_key() -> str:
    """A fresh random secret, as hex, for a keyring."""
    import secrets

    return secrets.token_hex(MIN_KEY_BYTES)
