"""The drill's faults and their schedule (pure): the kinds, how long each holds, and a seeded
schedule in which faults never overlap and each kind comes once before any repeats."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

FaultKind = Literal[
    "edge-kill",
    "edge-stop",
    "steering-kill",
    "control-restart",
    "edge-drain",
    "edge-delay",
    "disk-fail",
]
KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
# Faults after which the appliance must leave steering: the drill measures how fast it does.
OUT_KINDS: Final = frozenset({"edge-kill", "edge-stop", "edge-drain"})
# How long each fault lasts. A fault that takes an appliance out must last well past the bound
# (3 heartbeats + 1 snapshot), or "it never left" and "it came back" could not be told apart.
HOLD_S: Final[dict[str, float]] = {
    "edge-kill": 8.0,
    "edge-stop": 6.0,
    "steering-kill": 4.0,
    "control-restart": 5.0,
    "edge-drain": 8.0,
    "edge-delay": 10.0,
    "disk-fail": 8.0,
}


@dataclass(frozen=True)
class Fault:
    """One planned fault: *kind* on *target* at *at_s* seconds after the load started."""

    at_s: float
    kind: FaultKind
    target: str
    hold_s: float


def make_schedule(
    seed: int,
    duration_s: float,
    edges: Sequence[str],
    steering: Sequence[str],
    kinds: Sequence[FaultKind] = KINDS,
    *,
    warmup_s: float = 8.0,
    settle_s: float = 6.0,
    hold_scale: float = 1.0,
) -> list[Fault]:
    """Faults one after another, in rounds of every kind in a seeded random order, until
    a round does not fit (no kind repeats before every other kind ran).

    A fault starts `settle_s` (plus jitter) after the previous one ended, so that a restarted
    service has reported in before the next one breaks: the drill measures each fault alone.
    The last fault ends at least `settle_s` before `duration_s`.
    """
    if not edges:
        raise ValueError("edges: the drill needs at least one edge")
    if not kinds:
        raise ValueError("kinds: no faults to schedule")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"kinds: unknown fault {unknown[0]!r} (known: {', '.join(KINDS)})")
    if "steering-kill" in kinds and not steering:
        raise ValueError("kinds: steering-kill needs a steering replica")
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = warmup_s
    while True:
        order = list(dict.fromkeys(kinds))
        rng.shuffle(order)
        complete = True
        for kind in order:
            hold = HOLD_S[kind] * hold_scale
            if at + hold + settle_s > duration_s:
                complete = False
                continue  # a shorter fault may still fit
            pool = steering if kind == "steering-kill" else ("control",)
            target = rng.choice(list(edges if kind.startswith(("edge", "disk")) else pool))
            faults.append(Fault(at, kind, target, hold))
            at += hold + settle_s + rng.uniform(0, settle_s / 2)
        if not complete:  # no room for another round: kinds would repeat before others ran
            return faults
