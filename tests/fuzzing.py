"""The fuzz budget and hypothesis profile shared by the fuzz tests.

`make test` runs a small budget; `make fuzz` sets EDGEFLEET_FUZZ_EXAMPLES to ≥ 10,000 and
EDGEFLEET_FUZZ_REPORT=1 so each fuzz test prints what it did (cases, statuses, time).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("EDGEFLEET_FUZZ_EXAMPLES", "300"))

# deadline=None: two noisy cores make a slow example normal. derandomize=False: every run
# explores new inputs; a failure is stored in hypothesis' example database and replayed first.
# too_slow / data_too_large: each example is a real network exchange with large headers.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Tally:
    """What one fuzz target saw: cases, statuses, connections closed with no response."""

    target: str
    started: float = field(default_factory=time.monotonic)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    silent_closes: int = 0
    resets: int = 0
    workers: list[int] = field(default_factory=list)  # pids when fuzzing began

    def report(self) -> str:
        took = time.monotonic() - self.started
        by_class = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        return (
            f"fuzz {self.target}: {self.cases} cases in {took:.1f} s, "
            f"{sum(self.statuses.values())} responses {dict(sorted(by_class.items()))}, "
            f"statuses {dict(sorted(self.statuses.items()))}, "
            f"closed without a response {self.silent_closes}, resets {self.resets}"
        )

    def print_if_asked(self) -> None:
        if os.environ.get("EDGEFLEET_FUZZ_REPORT"):
            print("\n" + self.report(), file=sys.stderr, flush=True)
