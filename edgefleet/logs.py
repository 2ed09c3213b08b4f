"""One log set-up for every service, on standard error (journald reads it under systemd).

Text (default): `time level logger[pid]: message`. JSON, one object a line, when
`EDGEFLEET_LOG_FORMAT=json` is in the environment (a systemd `Environment=` line, or the
shell), for log shippers that parse fields rather than lines:

    {"ts": "2026-11-25T01:02:03.456Z", "level": "info", "logger": "edge.worker",
     "pid": 1234, "msg": "...", "exc": "Traceback ..."}

The level comes from `EDGEFLEET_LOG_LEVEL` (debug, info, warning, error; default info).
An unknown value of either variable is an error at start-up, never silently ignored.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
FORMAT_ENV = "EDGEFLEET_LOG_FORMAT"
LEVEL_ENV = "EDGEFLEET_LOG_LEVEL"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class LogSetupError(ValueError):
    """EDGEFLEET_LOG_FORMAT or EDGEFLEET_LOG_LEVEL holds an unknown value."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: fixed keys, UTC timestamps with milliseconds."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def settings(environ: dict[str, str] | None = None) -> tuple[str, int]:
    """(format, level) from the environment; LogSetupError on an unknown value."""
    env = os.environ if environ is None else environ
    fmt = env.get(FORMAT_ENV, "text").strip().lower() or "text"
    if fmt not in ("text", "json"):
        raise LogSetupError(f"{FORMAT_ENV}={fmt!r}: expected text or json")
    name = env.get(LEVEL_ENV, "info").strip().lower() or "info"
    level = _LEVELS.get(name)
    if level is None:
        raise LogSetupError(f"{LEVEL_ENV}={name!r}: expected one of {', '.join(_LEVELS)}")
    return fmt, level


def configure(level: int | None = None) -> None:
    """Set up the root logger (once per process; later calls change nothing)."""
    try:
        fmt, env_level = settings()
    except LogSetupError as exc:
        print(f"edgefleet: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    logging.basicConfig(level=env_level if level is None else level, handlers=[handler])
