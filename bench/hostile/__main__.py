"""`python -m bench.hostile` (`make hostile`): run every attack, print and write the report;
exit 0 when every attack passes, 1 when one fails, 2 when the run cannot be made."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.hostile.options import parse_args
from bench.hostile.run import run
from bench.servers import BenchError, sigterm_as_interrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (bench/hostile/__init__.py describes the run)."""
    opts = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        with sigterm_as_interrupt():
            return run(opts)
    except BenchError as exc:
        print(f"bench.hostile: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
