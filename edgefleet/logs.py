"""One log format for every service: time, level, logger[pid], message, on standard error."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def configure(level: int = logging.INFO) -> None:
    """Set up the root logger (once per process; later calls change nothing)."""
    logging.basicConfig(level=level, format=FORMAT)
