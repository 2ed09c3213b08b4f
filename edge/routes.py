"""The general path: which answer a request gets (content, health, metrics, errors).

`answer` looks the request up (content id, token, index record, open file) and returns the
planned `Response` with the file it reads, for the connection (`edge.server`) to hand to its
sender. Everything the fast path declines comes here; it is the reference behaviour.
"""

from __future__ import annotations

from typing import NamedTuple

from edge import tokencheck
from edge.fdcache import FileUnavailable, OpenFile
from edge.plan import Response, plan_file, plan_reply
from edge.ranges import parse_path_range
from edge.request import CONTENT_ID_B, Request
from edge.responses import ALLOW, TEXT
from edge.server_state import ServerState

METRICS_TYPE = b"Content-Type: text/plain; version=0.0.4\r\n"


class Answer(NamedTuple):
    """A planned response and, for content, the open file (one reference taken) and its id."""

    response: Response
    file: OpenFile | None = None
    content_id: bytes | None = None


def answer(worker: ServerState, req: Request, peer: str, connection: bytes) -> Answer:
    """The answer to *req* from client *peer*; *connection* is its Connection header line."""
    path, _, query = req.target.partition(b"?")
    head_only = req.method == b"HEAD"

    def reply(status: int, message: str | bytes, extra: bytes = b"", ctype: bytes = TEXT) -> Answer:
        return Answer(
            plan_reply(status, message, worker.date_line, connection, head_only, extra, ctype)
        )

    if path.startswith(b"/c/"):
        if req.method not in (b"GET", b"HEAD"):
            return reply(405, "method not allowed", ALLOW)
        cid, slash, rest = path[3:].partition(b"/")
        if CONTENT_ID_B.fullmatch(cid) is None:
            worker.stats.error("bad_content_id")
            return reply(400, "invalid content id")
        path_range = None
        if slash:
            if not rest.startswith(b"range/"):
                return reply(404, "not found")
            path_range = parse_path_range(rest[6:].decode("latin-1"))
            if path_range is None:
                return reply(400, "invalid path range (expected /range/{first}-{last})")
        if not tokencheck.known_expiry(worker, cid, query, peer):
            err = tokencheck.verify(worker, cid, query, peer)
            if err is not None:
                worker.stats.error("token_" + err.name.lower())
                return reply(403, err.value)
        raw = worker.view.get_raw(cid)
        if raw is None:
            return reply(404, "no such content")
        try:
            entry = worker.fdcache.acquire(cid, raw)
        except FileUnavailable as exc:
            worker.file_unavailable(cid, exc)
            return reply(exc.status, f"content unavailable ({exc.kind})")
        try:
            response = plan_file(
                req.method,
                req.headers,
                req.conditional,
                entry,
                path_range,
                worker.config.limits.max_ranges,
                worker.date_line,
                connection,
                worker.boundary,
            )
        except BaseException:
            entry.release()
            raise
        return Answer(response, entry, cid)
    if path == b"/healthz":
        ok, text = worker.health()
        return reply(200 if ok else 503, text)
    if path == b"/metrics":
        return reply(200, worker.render_metrics(), ctype=METRICS_TYPE)
    return reply(404, "not found")
