"""deploy/units/render.py: rendering the templates and its refusals (pure)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.units.hardening import directives
from deploy.units.render import PLACEHOLDER_RE, placeholders, render, render_all
from deploy.units.settings import SERVICES, UNITS, Settings, UnitError
from tests.deploy.units.common import EXE, SETTINGS, TEMPLATES

# -- rendering (pure) ---------------------------------------------------------------------


def test_every_template_renders_without_a_placeholder_left(rendered: dict[str, str]) -> None:
    assert sorted(rendered) == sorted(UNITS)
    for name, text in rendered.items():
        assert PLACEHOLDER_RE.search(text) is None, name
    assert (
        f"ExecStart={EXE} edge serve --config /etc/edgefleet/edge.toml"
        in rendered["edgefleet-edge.service"].splitlines()
    )


def service_keys(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in directives(text)["Service"]:
        out.setdefault(key, []).append(value)
    return out


def test_planner_reads_its_config_file_and_optional_extra_args(rendered: dict[str, str]) -> None:
    planner = service_keys(rendered["edgefleet-planner.service"])
    assert planner["ExecStart"] == [
        f"{EXE} fill plan --config /etc/edgefleet/planner.toml $PLAN_ARGS"
    ]
    # "-": planner.env may be absent; then $PLAN_ARGS expands to no argument.
    assert planner["EnvironmentFile"] == ["-/etc/edgefleet/planner.env"]


def test_edge_unit_lifecycle_lines(rendered: dict[str, str]) -> None:
    edge = service_keys(rendered["edgefleet-edge.service"])
    # The supervisor itself is the main process and the only one that notifies.
    assert edge["Type"] == ["notify"]
    assert edge["NotifyAccess"] == ["main"]
    assert edge["WatchdogSec"] == ["10s"]
    assert edge["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert edge["KillMode"] == ["mixed"]  # SIGTERM to the supervisor only: it drains
    assert edge["LimitNOFILE"] == ["1048576"]
    assert edge["Restart"] == ["on-failure"]
    assert edge["TimeoutStopSec"] == ["45s"]  # 30 s drain + 5 s supervisor grace + margin
    assert edge["ReadWritePaths"] == ["/srv/edgefleet"]
    assert edge["RuntimeDirectory"] == ["edgefleet"]


def test_only_edge_and_fill_write_content_disks(rendered: dict[str, str]) -> None:
    writers = {n for n in SERVICES if "ReadWritePaths" in service_keys(rendered[n])}
    assert writers == {"edgefleet-edge.service", "edgefleet-fill.service"}
    assert "StateDirectory" not in service_keys(rendered["edgefleet-steering.service"])


def test_timers_start_at_the_configured_times() -> None:
    out = render_all(TEMPLATES, Settings(executable=EXE, fill_at="03:30", plan_at="00:15"))
    fill = directives(out["edgefleet-fill.timer"])["Timer"]
    plan = directives(out["edgefleet-planner.timer"])["Timer"]
    assert ("OnCalendar", "*-*-* 03:30:00") in fill
    assert ("Persistent", "true") in fill
    assert ("Unit", "edgefleet-fill.service") in fill
    assert ("OnCalendar", "*-*-* 00:15:00") in plan
    service = service_keys(out["edgefleet-fill.service"])
    assert service["RuntimeMaxSec"] == [f"{12 * 3600 + 3600}s"]


@given(st.floats(min_value=0.001, max_value=3600))
def test_systemd_never_kills_during_a_drain(drain: float) -> None:
    values = placeholders(Settings(executable=EXE, drain_timeout_s=drain))
    stop_s = int(values["TIMEOUT_STOP_SEC"].removesuffix("s"))
    # The supervisor itself gives up drain + 5 s after SIGTERM (edge/supervisor.py).
    assert stop_s >= drain + 5 + 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"executable": "bin/edgefleet"}, "executable: 'bin/edgefleet' must be an absolute path"),
        ({"executable": "/home/ops/venv/bin/edgefleet"}, "ProtectHome=yes hides"),
        ({"executable": "/root/.venv/bin/edgefleet"}, "ProtectHome=yes hides"),
        ({"config_dir": "/opt/edgefleet/etc"}, "config_dir: '/opt/edgefleet/etc' must be a"),
        ({"state_dir": "/var/lib"}, "state_dir: '/var/lib' must be a directory below /var/lib/"),
        ({"state_dir": "/var/lib/../tmp"}, "without spaces or '..'"),
        ({"content_paths": ()}, "content_paths: at least one"),
        ({"content_paths": ("/srv/my disk",)}, "content_paths: '/srv/my disk'"),
        ({"user": "root"}, "user: 'root' is not a valid non-root"),
        ({"group": "Edge Fleet"}, "group: 'Edge Fleet'"),
        ({"fill_at": "2:00"}, "fill_at: '2:00' is not a HH:MM"),
        ({"plan_at": "24:00"}, "plan_at: '24:00'"),
        ({"drain_timeout_s": 0.0}, "drain_timeout_s: must be"),
        ({"fill_window_s": 90000.0}, "fill_window_s: must be"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    change: dict[str, object], message: str
) -> None:
    settings = Settings(**{"executable": EXE, **change})  # type: ignore[arg-type]
    with pytest.raises(UnitError, match=re.escape(message)):
        placeholders(settings)


def test_unknown_placeholder_names_the_line() -> None:
    with pytest.raises(UnitError, match=re.escape("x.service:2: unknown placeholder @NOPE@")):
        render("x.service", "[Service]\nExecStart=@NOPE@\n", {"EDGEFLEET": "/x"})


def test_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnitError, match="cannot read the template"):
        render_all(tmp_path, SETTINGS)


def test_render_refuses_a_template_weaker_than_the_policy(tmp_path: Path) -> None:
    for name in UNITS:
        text = (TEMPLATES / name).read_text()
        (tmp_path / name).write_text(text.replace("NoNewPrivileges=yes\n", ""))
    with pytest.raises(UnitError, match="weaker than the policy: NoNewPrivileges= is missing"):
        render_all(tmp_path, SETTINGS)
