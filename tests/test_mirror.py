"""The test-tree check (tests/mirror.py) on small trees of real files, and on this tree."""

from __future__ import annotations

from pathlib import Path

from tests import mirror


def make(root: Path, *files: str) -> Path:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_this_tree_mirrors_its_code() -> None:
    assert mirror.check(Path(mirror.__file__).resolve().parent.parent) == []


def test_a_module_and_its_aspects_are_found(tmp_path: Path) -> None:
    make(
        tmp_path, "edge/server.py", "tests/edge/test_server.py", "tests/edge/test_server_ranges.py"
    )
    assert mirror.module_of(tmp_path / "tests/edge/test_server_ranges.py", tmp_path) == (
        tmp_path / "edge/server.py"
    )
    assert mirror.check(tmp_path, {}) == []


def test_a_test_named_for_no_module_and_an_untested_module_are_reported(tmp_path: Path) -> None:
    make(tmp_path, "edge/server.py", "edge/worker.py", "tests/edge/test_lifecycle.py")
    problems = mirror.check(tmp_path, {})
    assert problems[0].startswith("tests/edge/test_lifecycle.py: names no module")
    assert {p.split(":")[0] for p in problems[1:]} == {"edge/server.py", "edge/worker.py"}


def test_a_package_test_and_test_helpers_beside_their_tests(tmp_path: Path) -> None:
    make(tmp_path, "bench/hostile/__init__.py", "tests/bench/test_hostile.py")
    make(tmp_path, "tests/wire.py", "tests/test_wire.py")
    assert mirror.check(tmp_path, {}) == []


def test_a_stale_exemption_is_reported(tmp_path: Path) -> None:
    make(tmp_path, "edge/cli.py", "tests/edge/test_cli.py")
    assert mirror.check(tmp_path, {"edge/cli.py": "x", "edge/gone.py": "y"}) == [
        "edge/cli.py: has a test module now; drop it from UNTESTED",
        "edge/gone.py: in UNTESTED but no longer exists",
    ]
