"""The hardening policy (pure): what every service unit must say, reading a unit file's
directives, the system calls a SystemCallFilter= allows, and `systemd-analyze security`'s
exposure line. No process is run here (deploy/units/analyze.py runs systemd-analyze)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from deploy.units.settings import UnitError

# Every service unit must say these (name → required value; None: any value). A template
# edited into something weaker fails `verify`, not only a reviewer's eye.
REQUIRED_HARDENING: Mapping[str, str | None] = {
    "User": None,
    "UMask": "0027",
    "CapabilityBoundingSet": "",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
}


# Exposure above this fails `edgefleet units security`. systemd's scale runs from 0 to 10 and
# labels 1.0-4.9 "OK" (below: "SAFE"); a bound inside "OK" catches a weakened unit sooner.
MAX_EXPOSURE = 2.0

EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\S+)")


def directives(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's `[Section]` → [(key, value)] in order; comments and blanks dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
        elif "=" in stripped and current is not None:
            key, _, value = stripped.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def missing_hardening(text: str) -> list[str]:
    """The required hardening lines a service unit lacks or weakens (empty: all present).

    The first assignment of a key is checked: it is the one that sets the base value (later
    SystemCallFilter=~… lines only subtract).
    """
    service = directives(text).get("Service", [])
    first: dict[str, str] = {}
    for key, value in service:
        first.setdefault(key, value)
    problems = []
    for key, want in REQUIRED_HARDENING.items():
        if key not in first:
            problems.append(f"{key}= is missing")
        elif want is not None and first[key] != want:
            problems.append(f"{key}={first[key]} (want {key}={want})")
    if first.get("User") == "root":
        problems.append("User=root")
    return problems


def policy_problems(unit_texts: Mapping[str, str]) -> list[str]:
    """What `systemd-analyze verify` lets pass but we do not: a service weaker than the
    hardening policy, and a timer whose service is not among the units (systemd only loads
    it as "not found" when the timer fires)."""
    problems: list[str] = []
    for name, text in sorted(unit_texts.items()):
        if name.endswith(".service"):
            problems.extend(f"{name}: {p}" for p in missing_hardening(text))
        elif name.endswith(".timer"):
            timer = directives(text).get("Timer", [])
            target = dict(timer).get("Unit", name.removesuffix(".timer") + ".service")
            if target not in unit_texts:
                problems.append(f"{name}: Unit={target} is not among the units")
    return problems


def parse_syscall_groups(text: str) -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter` output → group name → members (syscalls or @groups)."""
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("@"):
            current = groups.setdefault(stripped, [])
        elif not stripped:
            current = None
        elif current is not None and not stripped.startswith("#"):
            current.append(stripped)
    return groups


def expand_syscalls(groups: Mapping[str, Sequence[str]], items: Iterable[str]) -> set[str]:
    """The system calls *items* name, groups expanded recursively; UnitError on an unknown
    group (a typo would otherwise silently allow or deny nothing)."""
    out: set[str] = set()
    pending = list(items)
    seen: set[str] = set()
    while pending:
        item = pending.pop()
        if not item.startswith("@"):
            out.add(item)
        elif item not in seen:
            if item not in groups:
                raise UnitError(f"unknown system call group {item}")
            seen.add(item)
            pending.extend(groups[item])
    return out


def allowed_syscalls(unit_text: str, groups: Mapping[str, Sequence[str]]) -> set[str]:
    """What a service's SystemCallFilter= lines allow, as systemd(5) combines them: the first
    line without `~` starts an allow list, later `~` lines take calls out of it."""
    allow: set[str] = set()
    deny: set[str] = set()
    for key, value in directives(unit_text).get("Service", []):
        if key != "SystemCallFilter" or not value:
            continue
        if value.startswith("~"):
            deny |= expand_syscalls(groups, value[1:].split())
        else:
            allow |= expand_syscalls(groups, value.split())
    if not allow:
        raise UnitError("no SystemCallFilter= allow list in the unit")
    return allow - deny


def parse_exposure(output: str) -> tuple[float, str]:
    """(score, label) from `systemd-analyze security` output; UnitError when absent."""
    match = EXPOSURE_RE.search(output)
    if match is None:
        raise UnitError(f"no exposure level in systemd-analyze output: {output[-300:]!r}")
    return float(match.group(1)), match.group(2)
