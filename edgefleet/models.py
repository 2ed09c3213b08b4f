"""What crosses the wire between services: content ids and content records."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Content ids are opaque: one leading alphanumeric, then up to 127 of [A-Za-z0-9._-].
# No "/" and no leading "." means an id can never name a filesystem path.
CONTENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_content_id(value: str) -> bool:
    """True when *value* is a well-formed content id."""
    return CONTENT_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ContentRecord:
    """One stored file as the appliance index knows it."""

    content_id: str
    disk_id: str
    relpath: str
    size: int
    checksum: str  # xxh3-128, 32 lowercase hex digits
    content_type: str
    install_time: int  # unix seconds; also the Last-Modified of the file
    generation: int  # index generation at which this record was written
