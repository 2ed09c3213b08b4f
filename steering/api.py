"""The steering API's documents: check a request, answer it with ranked signed URLs. No I/O.

`parse_body` (POST /v1/steer) and `parse_query` (GET /v1/steer/{content_id}) turn client input
into a `SteerRequest` or raise `RequestError` carrying the status (400: the body is not JSON;
422: a field is missing or invalid) and the field's name, which app.py sends as
`{"error": ..., "field": ...}`. `Answerer.answer` ranks each content id (steering.ranking),
records the assignments it hands out in the LoadTracker, and signs one URL per appliance
(edgefleet.tokens, bound to the client's network).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from edgefleet.errors import error_body
from edgefleet.models import is_content_id
from edgefleet.tokens import Keyring, signed_query
from steering.config import SteeringConfig
from steering.index import FleetIndex
from steering.prefixes import IPV4, IPV6, PrefixError, parse_ip
from steering.ranking import AnswerClass, LoadTracker, locate, steer

MAX_URLS_LIMIT = 20


class RequestError(ValueError):
    """A steering request is invalid: HTTP *status*, the *field* at fault, and why."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    def document(self) -> bytes:
        """The JSON error body."""
        return error_body(str(self), self.field)


@dataclass(frozen=True, slots=True)
class SteerRequest:
    """A checked request: the client, the content ids, how many URLs each."""

    client_ip: str  # normalised; IPv4-mapped IPv6 written as IPv4
    family: int
    address: int
    content_ids: tuple[str, ...]
    max_urls: int


def _client(value: Any) -> tuple[str, int, int]:
    if not isinstance(value, str):
        raise RequestError(422, "client_ip", "must be an IP address string")
    try:
        family, address = parse_ip(value)
    except PrefixError as exc:
        raise RequestError(422, "client_ip", str(exc)) from None
    if family == IPV4:
        text = ".".join(str((address >> s) & 0xFF) for s in (24, 16, 8, 0))
    else:
        text = str(ipaddress.IPv6Address(address))
    return text, family, address


def _max_urls(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_URLS_LIMIT:
        raise RequestError(422, "max_urls", f"must be an integer 1..{MAX_URLS_LIMIT}")
    return value


def parse_body(body: bytes, max_ids: int, default_max_urls: int) -> SteerRequest:
    """Check a POST /v1/steer body. Raises RequestError."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, "$", "the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise RequestError(422, "$", "the body must be a JSON object")
    unknown = sorted(set(doc) - {"client_ip", "content_ids", "max_urls"})
    if unknown:
        raise RequestError(422, unknown[0][:60], "unknown field")
    if "client_ip" not in doc:
        raise RequestError(422, "client_ip", "is required")
    text, family, address = _client(doc["client_ip"])
    ids = doc.get("content_ids")
    if not isinstance(ids, list) or not ids:
        raise RequestError(422, "content_ids", "must be a non-empty list of content ids")
    if len(ids) > max_ids:
        raise RequestError(422, "content_ids", f"at most {max_ids} content ids per request")
    for i, cid in enumerate(ids):
        if not isinstance(cid, str) or not is_content_id(cid):
            raise RequestError(422, f"content_ids[{i}]", "invalid content id")
    max_urls = _max_urls(doc.get("max_urls", default_max_urls))
    return SteerRequest(text, family, address, tuple(ids), max_urls)


def parse_query(content_id: str, query: Any, default_max_urls: int) -> SteerRequest:
    """Check GET /v1/steer/{content_id}?client_ip=…&max_urls=…; *query* is a multidict."""
    if not is_content_id(content_id):
        raise RequestError(422, "content_id", "invalid content id")
    ip = query.get("client_ip")
    if ip is None:
        raise RequestError(422, "client_ip", "is required")
    text, family, address = _client(ip)
    raw = query.get("max_urls")
    if raw is None:
        max_urls = default_max_urls
    elif raw.isascii() and raw.isdigit() and len(raw) <= 3:
        max_urls = _max_urls(int(raw))
    else:
        raise RequestError(422, "max_urls", f"must be an integer 1..{MAX_URLS_LIMIT}")
    return SteerRequest(text, family, address, (content_id,), max_urls)


class Answerer:
    """Answers checked requests from an index: ranks, records assignments, signs URLs."""

    def __init__(self, conf: SteeringConfig, keyring: Keyring, tracker: LoadTracker) -> None:
        self.keyring = keyring
        self.tracker = tracker
        self.url_ttl_s = conf.url_ttl_s
        self.bound = conf.load_bound
        self.prefix_len = {IPV4: conf.client_prefix_len, IPV6: conf.client_prefix_len_v6}

    def answer(
        self, index: FleetIndex, req: SteerRequest, wall_now: float, mono_now: float
    ) -> tuple[dict[str, Any], list[tuple[AnswerClass, str]]]:
        """The response document, and (class, client site name or "none") per content id."""
        matched, anchor = locate(index, req.family, req.address)
        site_name = index.sites[matched].name if matched is not None else None
        label = site_name or "none"
        expiry = int(wall_now) + self.url_ttl_s
        plen = self.prefix_len[req.family]
        apps, sites = index.appliances, index.sites
        results = []
        classes = []
        for cid in req.content_ids:
            decision = steer(index, self.tracker, cid, matched, anchor, req.max_urls, self.bound)
            if decision.appliances:
                self.tracker.record(apps[decision.appliances[0]].name, mono_now)
                query = signed_query(self.keyring, cid, expiry, req.client_ip, plen)
                urls = [
                    {
                        "url": f"{apps[j].base_url}/c/{cid}?{query}",
                        "site": sites[apps[j].site].name,
                        "appliance": apps[j].name,
                    }
                    for j in decision.appliances
                ]
            else:
                urls = []
            results.append({"content_id": cid, "class": decision.answer.value, "urls": urls})
            classes.append((decision.answer, label))
        doc = {
            "client_ip": req.client_ip,
            "client_site": site_name,
            "snapshot_version": index.version,
            "results": results,
        }
        return doc, classes
