"""`python -m bench.chaos`: run one drill (bench/chaos/cli.py)."""

from __future__ import annotations

import sys

from bench.chaos.cli import main

if __name__ == "__main__":
    sys.exit(main())
