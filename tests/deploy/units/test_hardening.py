"""deploy/units/hardening.py: the hardening policy, SystemCallFilter= and exposure text (pure)."""

from __future__ import annotations

import pytest

from deploy.units.hardening import (
    REQUIRED_HARDENING,
    allowed_syscalls,
    missing_hardening,
    parse_exposure,
    parse_syscall_groups,
)
from deploy.units.settings import UnitError


@pytest.mark.parametrize("key", sorted(REQUIRED_HARDENING))
def test_policy_catches_each_hardening_line_removed(rendered: dict[str, str], key: str) -> None:
    text = rendered["edgefleet-steering.service"]
    assert missing_hardening(text) == []
    without = "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(f"{key}=")
    )
    assert f"{key}= is missing" in missing_hardening(without)


def test_policy_catches_a_weakened_line(rendered: dict[str, str]) -> None:
    text = rendered["edgefleet-edge.service"].replace("ProtectSystem=strict", "ProtectSystem=full")
    assert missing_hardening(text) == ["ProtectSystem=full (want ProtectSystem=strict)"]
    text = rendered["edgefleet-edge.service"].replace("User=edgefleet", "User=root")
    assert missing_hardening(text) == ["User=root"]


GROUPS_TEXT = """@default
    # always
    read
    exit

@a
    # A
    @default
    write

@b
    @a
    sendfile
    setuid

# unlisted
#   uprobe
"""


def test_syscall_groups_expand_recursively_and_deny_lines_subtract() -> None:
    groups = parse_syscall_groups(GROUPS_TEXT)
    assert groups == {
        "@default": ["read", "exit"],
        "@a": ["@default", "write"],
        "@b": ["@a", "sendfile", "setuid"],
    }
    unit = "[Service]\nSystemCallFilter=@b\nSystemCallFilter=~setuid @nothing-here\n"
    with pytest.raises(UnitError, match="unknown system call group @nothing-here"):
        allowed_syscalls(unit, groups)
    unit = "[Service]\nSystemCallFilter=@b\nSystemCallFilter=~setuid\n"
    assert allowed_syscalls(unit, groups) == {"read", "exit", "write", "sendfile"}
    with pytest.raises(UnitError, match="no SystemCallFilter= allow list"):
        allowed_syscalls("[Service]\nSystemCallFilter=~setuid\n", groups)


def test_exposure_line_is_parsed() -> None:
    out = "… \n→ Overall exposure level for edgefleet-edge.service: 1.1 OK 🙂\n"
    assert parse_exposure(out) == (1.1, "OK")
    with pytest.raises(UnitError, match="no exposure level"):
        parse_exposure("Failed to load unit")
