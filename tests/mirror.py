"""Does the test tree mirror the code?  `python -m tests.mirror` (run by `make lint`).

mitmproxy keeps the same rule with a script in CI (test/filename_matching.py): a reader who
opens `edge/ranges.py` finds its tests in `tests/edge/test_ranges.py`, and a test file's name
says which module it tests. Two rules, both checked here:

1. Every test module `tests/<path>/test_<name>.py` tests the module `<path>/<name>.py` (or
   the package `<path>/<name>/`), or one aspect of it: `test_<name>_<aspect>.py`
   (tests/edge/test_server_ranges.py tests edge/server.py's range answers). Test modules
   that test a whole running system rather than one module live in the directories named in
   `SYSTEM_TESTS`, each with the reason.
2. Every source module has at least one test module, unless `UNTESTED` names it with the
   reason (a `__main__` that only calls a tested `main`, say).
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGES = ("edgefleet", "edge", "control", "steering", "fill", "demo", "deploy", "bench")
SYSTEM_TESTS: dict[str, str] = {
    "tests/fleet": "the whole fleet as processes: control, steering, edges, fill",
}
UNTESTED: dict[str, str] = {}


def module_of(test: Path, root: Path) -> Path | None:
    """The source module (or package) a test module names, or None."""
    rel = test.relative_to(root / "tests")
    name = rel.stem.removeprefix("test_")
    parts = name.split("_")
    # The longest prefix of the name that is a module: test_server_ranges -> server.py.
    # A test of a test helper sits beside it: tests/test_wire.py for tests/wire.py.
    bases = (root / rel.parent, root / "tests" / rel.parent)
    for cut in range(len(parts), 0, -1):
        for base in bases:
            candidate = base / "_".join(parts[:cut])
            if candidate.with_suffix(".py").is_file():
                return candidate.with_suffix(".py")
            if (candidate / "__init__.py").is_file():
                return candidate
    return None


def check(root: Path) -> list[str]:
    """Every way the tree at *root* breaks the two rules, one line each."""
    problems: list[str] = []
    tested: set[Path] = set()
    for test in sorted((root / "tests").rglob("test_*.py")):
        rel_dir = test.parent.relative_to(root).as_posix()
        if any(rel_dir == d or rel_dir.startswith(d + "/") for d in SYSTEM_TESTS):
            continue
        module = module_of(test, root)
        if module is None:
            problems.append(
                f"{test.relative_to(root)}: names no module "
                f"(expected {test.parent.relative_to(root / 'tests')}/"
                f"{test.stem.removeprefix('test_')}.py or a prefix of it)"
            )
            continue
        tested.add(module)
        if module.is_dir():  # a test of a package covers its __init__
            tested.add(module / "__init__.py")
    for package in PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            rel = source.relative_to(root)
            if "results" in rel.parts or rel.as_posix() in UNTESTED:
                continue
            if source.name == "__init__.py" and source.stat().st_size == 0:
                continue
            if source not in tested and not (
                source.name == "__init__.py" and source.parent in tested
            ):
                problems.append(f"{rel}: no test module (tests/{rel.parent}/test_{source.stem}.py)")
    return problems


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = check(root)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"tests/mirror: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
