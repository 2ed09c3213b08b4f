"""The units' vocabulary: their file names, what differs between boxes (`Settings`), and the
one error every step raises (`UnitError`)."""

from __future__ import annotations

from dataclasses import dataclass

SERVICES = (
    "edgefleet-edge.service",
    "edgefleet-control.service",
    "edgefleet-steering.service",
    "edgefleet-fill.service",
    "edgefleet-planner.service",
)
TIMERS = ("edgefleet-fill.timer", "edgefleet-planner.timer")
UNITS = SERVICES + TIMERS


class UnitError(Exception):
    """A setting that cannot be rendered, or a unit that fails verification; says which."""


@dataclass(frozen=True)
class Settings:
    """What the rendered units point at on this box."""

    executable: str  # the installed `edgefleet` console script
    config_dir: str = "/etc/edgefleet"
    state_dir: str = "/var/lib/edgefleet"
    # Writable for the edge and the fill agent only: the disk mount points or their parent
    # (mounts below a ReadWritePaths entry are writable too).
    content_paths: tuple[str, ...] = ("/srv/edgefleet",)
    user: str = "edgefleet"
    group: str = "edgefleet"
    drain_timeout_s: float = 30.0  # the edge config's drain_timeout_s
    fill_at: str = "02:00"  # the fill config's window_start (local time)
    fill_window_s: float = 12 * 3600.0  # the fill config's window_length_s
    plan_at: str = "01:00"  # the planner runs daily at this local time, before the fill
