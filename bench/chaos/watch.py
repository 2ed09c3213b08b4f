"""Time out of steering (pure): for each fault that takes an appliance out, the last steering
answer that still listed it, and the answers that listed an appliance never to be sent to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.schedule import Fault


@dataclass
class Exit:
    """What the steering watch saw of one fault's target while the fault lasted."""

    fault: Fault
    started: float  # monotonic time the fault was injected
    ended: float | None = None  # when it was undone (the appliance may come back from then)
    last_seen: float | None = None  # the last answer, at or after `started`, that listed it
    answers: int = 0  # answers observed while the fault lasted

    def out_after_s(self, margin_s: float) -> float | None:
        """Seconds from the fault to the last client steered to the target; None when it was
        still listed within *margin_s* of the fault's end (it never left steering)."""
        if self.ended is None or self.answers == 0:
            return None
        if self.last_seen is None:
            return 0.0
        if self.ended - self.last_seen < margin_s:
            return None
        return self.last_seen - self.started


@dataclass
class SteeringWatch:
    """Every steering answer (pollers' and players') checked against the open faults."""

    exits: list[Exit] = field(default_factory=list)
    never: frozenset[str] = frozenset()  # appliances no player may be sent to (the origin)
    forbidden: int = 0  # answers that listed one of them

    def open(self, fault: Fault, now: float) -> Exit:
        """Watch *fault*'s target from *now*."""
        exit_ = Exit(fault, now)
        self.exits.append(exit_)
        return exit_

    def close(self, exit_: Exit, now: float) -> None:
        """The fault is undone: answers from now on no longer count."""
        exit_.ended = now

    def observe(self, now: float, appliances: Iterable[str]) -> None:
        """An answer received at *now* listed *appliances*."""
        listed = set(appliances)
        if listed & self.never:
            self.forbidden += 1
        for e in self.exits:
            if e.ended is None and now >= e.started:
                e.answers += 1
                if e.fault.target in listed:
                    e.last_seen = now


def answer_appliances(answer: Any) -> set[str]:
    """The appliances a steering answer lists, for any content id (empty for a bad answer)."""
    names: set[str] = set()
    try:
        for result in answer["results"]:
            names.update(str(u["appliance"]) for u in result["urls"])
    except (KeyError, TypeError):
        return set()
    return names
