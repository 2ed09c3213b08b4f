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
   test that covers it instead, or the reason it has none. (`__init__` and `__main__` only
   name and start a package: they need none.) An entry that is no longer true (the module
   is gone or got its own test module) is reported too, so the list cannot rot.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGES = ("edgefleet", "edge", "control", "steering", "fill", "demo", "deploy", "bench")
SYSTEM_TESTS: dict[str, str] = {
    "tests/fleet": "the whole fleet as processes: control, steering, edges, fill",
}
UNTESTED: dict[str, str] = {
    # Thin command lines: each runs as a process in the tests of what it drives.
    "edgefleet/cli.py": "the dispatcher: every service's tests run `edgefleet <service> ...`",
    "steering/cli.py": "tests/steering/test_app_fuzz.py runs `edgefleet steering serve`",
    "fill/cli.py": "tests/fill/planner/test_run.py and tests/fill/agent/test_runner.py",
    "fill/agent/cli.py": "tests/fill/agent/test_runner.py runs `edgefleet fill run`",
    # Types and constants with no behaviour of their own, exercised by their users' tests.
    "edgefleet/models.py": "content ids and ContentRecord: tests/edge/test_index.py, test_server_*",
    "edgefleet/tasks.py": "named tasks: every asyncio service test (control, steering, reporter)",
    "edgefleet/progress.py": "the terminal progress bar: tests/edge/test_importer.py",
    "edge/config.py": "EdgeConfig: tests/edgefleet/test_config.py loads every service's config",
    "edge/request.py": "the request vocabulary: tests/edge/test_server_transport.py",
    "edge/routes.py": "the general path: tests/edge/test_server_transport.py, test_server_protocol.py",
    "edge/server_state.py": "a typing.Protocol: tests/edge/fakeworker.py implements it (mypy checks)",
    "edge/sender.py": "tests/edge/test_server_transport.py, with sendfile and the fallback",
    "edge/tokencheck.py": "tests/edge/test_server_transport.py::test_tokens, test_server_protocol.py",
    "edge/responses.py": "status lines and fixed headers: tests/edge/test_server_protocol.py",
    "steering/api.py": "request checks and answers: tests/steering/test_app.py, test_app_fuzz.py",
    "steering/metrics.py": "tests/steering/test_app.py scrapes /metrics",
    "fill/planner/model.py": "the planner's types: tests/fill/planner/test_placement.py",
    "deploy/units/settings.py": "unit names and Settings: tests/deploy/units/test_render.py",
    # Benchmarks: programs run by hand, judged by the report they write (bench/results/).
    "bench/edge.py": "a benchmark program (`make bench`)",
    "bench/fill.py": "a benchmark program (`python -m bench.fill`)",
    "bench/planner.py": "a benchmark program (`python -m bench.planner`)",
    "bench/steering.py": "a benchmark program (`python -m bench.steering`)",
    "bench/steering_fleet.py": "bench.steering's synthetic fleet",
    "bench/steering_wrk.py": "bench.steering's wrk runner",
    "bench/servers.py": "bench.edge's nginx and edge set-up",
    "bench/minimal_server.py": "bench.edge's floor server",
    "bench/report.py": "the benchmarks' results files",
    "bench/chaos/fleet.py": "the drill's fleet: tests/bench/chaos/test_drill.py runs it",
    "bench/hostile/run.py": "the hostile-client program (`make hostile`)",
    "bench/hostile/player.py": "the hostile bench's normal client: tests/bench/hostile runs it",
    "bench/hostile/probes.py": "the hostile bench's RSS and /metrics sampling",
}


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


def check(root: Path, untested: dict[str, str] | None = None) -> list[str]:
    """Every way the tree at *root* breaks the two rules, one line each."""
    untested = UNTESTED if untested is None else untested
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
            if "results" in rel.parts or source.name in ("__init__.py", "__main__.py"):
                continue
            if rel.as_posix() in untested:
                if source in tested:
                    problems.append(f"{rel}: has a test module now; drop it from UNTESTED")
                continue
            if source not in tested:
                problems.append(f"{rel}: no test module (tests/{rel.parent}/test_{source.stem}.py)")
    for name in untested:
        if not (root / name).is_file():
            problems.append(f"{name}: in UNTESTED but no longer exists")
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
