"""The drill's verdict (pure): the playback targets, no wrong byte, every broken appliance out
of steering within the bound, no client steered to the origin."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.chaos.schedule import OUT_KINDS
from bench.player import SessionReport, Summary


@dataclass(frozen=True)
class Check:
    """One target of the drill."""

    name: str
    ok: bool
    detail: str


def verdict(
    summary: Summary,
    wrong_bytes: int,
    faults: Sequence[dict[str, Any]],
    bound_s: float,
    origin_answers: int = 0,
) -> list[Check]:
    """The drill's targets against what it measured (*faults*: the report's fault rows;
    *origin_answers*: steering answers that sent a player to the origin)."""
    checks = [
        Check("sessions failed = 0", summary.failed == 0, f"{summary.failed} failed"),
        Check("wrong-byte responses = 0", wrong_bytes == 0, f"{wrong_bytes} wrong"),
        Check("players never sent to the origin", origin_answers == 0, f"{origin_answers} answers"),
        Check(
            "sessions ran", summary.sessions > 0, f"{summary.sessions} started (a drill needs load)"
        ),
    ]
    for f in faults:
        if f["kind"] not in OUT_KINDS:
            continue
        out = f["out_of_steering_s"]
        ok = out is not None and out <= bound_s
        shown = "never left steering" if out is None else f"{out:.2f} s"
        checks.append(
            Check(f"{f['kind']} {f['target']} out of steering", ok, f"{shown} (≤ {bound_s:g} s)")
        )
    return checks


def session_hours(reports: Iterable[SessionReport]) -> float:
    """Hours of sessions (pressing play to the end): the denominator of rebuffer per hour."""
    return sum(r.duration_s for r in reports) / 3600
