"""The systemd units: rendering and its refusals (pure), `systemd-analyze verify` and
`security` on the rendered files (real systemd 252 tools), and the edge really running inside
the sandbox the units describe: its system calls within the unit's SystemCallFilter= (strace)
and serving with write+execute memory refused (MemoryDenyWriteExecute=, via PR_SET_MDWE).

systemd is not PID 1 in the test container, so the units themselves are not started here."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet import units
from edgefleet.units import (
    MAX_EXPOSURE,
    REQUIRED_HARDENING,
    SERVICES,
    UNITS,
    Settings,
    UnitError,
)
from tests.edge.edgeproc import KEEPER_NAME, READY_RE, EdgeProcess, _name, request
from tests.edge.probes import assert_serves, wait_until
from tests.processes import wait_for_line

TEMPLATES = Path(__file__).resolve().parents[2] / "systemd"
EXE = units.default_executable()
SETTINGS = Settings(executable=EXE)
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return units.render_all(TEMPLATES, SETTINGS)


@pytest.fixture
def unit_dir(tmp_path: Path, rendered: dict[str, str]) -> Path:
    out = tmp_path / "units"
    units.write_units(rendered, out)
    return out


# -- rendering (pure) ---------------------------------------------------------------------


def test_every_template_renders_without_a_placeholder_left(rendered: dict[str, str]) -> None:
    assert sorted(rendered) == sorted(UNITS)
    for name, text in rendered.items():
        assert units.PLACEHOLDER_RE.search(text) is None, name
    assert (
        f"ExecStart={EXE} edge serve --config /etc/edgefleet/edge.toml"
        in rendered["edgefleet-edge.service"].splitlines()
    )


def service_keys(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in units.directives(text)["Service"]:
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
    out = units.render_all(TEMPLATES, Settings(executable=EXE, fill_at="03:30", plan_at="00:15"))
    fill = units.directives(out["edgefleet-fill.timer"])["Timer"]
    plan = units.directives(out["edgefleet-planner.timer"])["Timer"]
    assert ("OnCalendar", "*-*-* 03:30:00") in fill
    assert ("Persistent", "true") in fill
    assert ("Unit", "edgefleet-fill.service") in fill
    assert ("OnCalendar", "*-*-* 00:15:00") in plan
    service = service_keys(out["edgefleet-fill.service"])
    assert service["RuntimeMaxSec"] == [f"{12 * 3600 + 3600}s"]


@given(st.floats(min_value=0.001, max_value=3600))
def test_systemd_never_kills_during_a_drain(drain: float) -> None:
    values = units.placeholders(Settings(executable=EXE, drain_timeout_s=drain))
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
        units.placeholders(settings)


def test_unknown_placeholder_names_the_line() -> None:
    with pytest.raises(UnitError, match=re.escape("x.service:2: unknown placeholder @NOPE@")):
        units.render("x.service", "[Service]\nExecStart=@NOPE@\n", {"EDGEFLEET": "/x"})


def test_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnitError, match="cannot read the template"):
        units.render_all(tmp_path, SETTINGS)


@pytest.mark.parametrize("key", sorted(REQUIRED_HARDENING))
def test_policy_catches_each_hardening_line_removed(rendered: dict[str, str], key: str) -> None:
    text = rendered["edgefleet-steering.service"]
    assert units.missing_hardening(text) == []
    without = "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(f"{key}=")
    )
    assert f"{key}= is missing" in units.missing_hardening(without)


def test_policy_catches_a_weakened_line(rendered: dict[str, str]) -> None:
    text = rendered["edgefleet-edge.service"].replace("ProtectSystem=strict", "ProtectSystem=full")
    assert units.missing_hardening(text) == ["ProtectSystem=full (want ProtectSystem=strict)"]
    text = rendered["edgefleet-edge.service"].replace("User=edgefleet", "User=root")
    assert units.missing_hardening(text) == ["User=root"]


def test_render_refuses_a_template_weaker_than_the_policy(tmp_path: Path) -> None:
    for name in UNITS:
        text = (TEMPLATES / name).read_text()
        (tmp_path / name).write_text(text.replace("NoNewPrivileges=yes\n", ""))
    with pytest.raises(UnitError, match="weaker than the policy: NoNewPrivileges= is missing"):
        units.render_all(tmp_path, SETTINGS)


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
    groups = units.parse_syscall_groups(GROUPS_TEXT)
    assert groups == {
        "@default": ["read", "exit"],
        "@a": ["@default", "write"],
        "@b": ["@a", "sendfile", "setuid"],
    }
    unit = "[Service]\nSystemCallFilter=@b\nSystemCallFilter=~setuid @nothing-here\n"
    with pytest.raises(UnitError, match="unknown system call group @nothing-here"):
        units.allowed_syscalls(unit, groups)
    unit = "[Service]\nSystemCallFilter=@b\nSystemCallFilter=~setuid\n"
    assert units.allowed_syscalls(unit, groups) == {"read", "exit", "write", "sendfile"}
    with pytest.raises(UnitError, match="no SystemCallFilter= allow list"):
        units.allowed_syscalls("[Service]\nSystemCallFilter=~setuid\n", groups)


def test_exposure_line_is_parsed() -> None:
    out = "… \n→ Overall exposure level for edgefleet-edge.service: 1.1 OK 🙂\n"
    assert units.parse_exposure(out) == (1.1, "OK")
    with pytest.raises(UnitError, match="no exposure level"):
        units.parse_exposure("Failed to load unit")


# -- systemd-analyze on the rendered files --------------------------------------------------


@needs_analyze
def test_rendered_units_verify_clean(unit_dir: Path) -> None:
    assert units.verify(units.unit_files(unit_dir)) == []


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "old", "new", "expected"),
    [
        (
            "edgefleet-edge.service",
            "PrivateTmp=yes\n",
            "PrivateTmp=yes\nProtectSystm=strict\n",
            "Unknown key 'ProtectSystm'",
        ),
        ("edgefleet-fill.service", EXE, "/nonexistent/edgefleet", "is not executable"),
        (
            "edgefleet-steering.service",
            "RestartSec=2s",
            "RestartSec=soon",
            "Failed to parse sec value",
        ),
        (
            "edgefleet-planner.timer",
            "Unit=edgefleet-planner.service",
            "Unit=edgefleet-planer.service",
            "edgefleet-planer.service",
        ),
    ],
)
def test_verify_fails_on_a_broken_unit(
    unit_dir: Path, unit: str, old: str, new: str, expected: str
) -> None:
    path = unit_dir / unit
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    problems = units.verify(units.unit_files(unit_dir))
    assert any(expected in p for p in problems), problems
    assert units.main(["verify", str(unit_dir)]) == 1


@needs_analyze
def test_every_service_exposure_is_low(unit_dir: Path) -> None:
    scores = {
        p.name: units.exposure(p) for p in units.unit_files(unit_dir) if p.suffix == ".service"
    }
    assert sorted(scores) == sorted(SERVICES)
    for name, (score, label) in scores.items():
        assert score <= MAX_EXPOSURE, (name, score)
        assert label in ("OK", "SAFE", "PERFECT"), name


@needs_analyze
def test_exposure_of_an_unhardened_unit_is_high(tmp_path: Path) -> None:
    # The measurement can fail: a bare service scores far above the bound.
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nExecStart={EXE} steering serve\n")
    score, _ = units.exposure(bare)
    assert score > 9.0
    assert units.main(["security", str(tmp_path)]) == 1


@needs_analyze
def test_cli_render_verify_security(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rendered"
    args = ["--executable", EXE, "--content-path", "/srv/a", "--content-path", "/srv/b"]
    assert units.main(["render", *args, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(UNITS)
    assert "ReadWritePaths=/srv/a /srv/b\n" in (out / "edgefleet-fill.service").read_text()
    assert oct((out / "edgefleet-edge.service").stat().st_mode & 0o777) == "0o644"
    assert units.main(["verify", str(out)]) == 0
    assert units.main(["security", str(out)]) == 0
    table = capsys.readouterr().out
    for name in SERVICES:
        assert re.search(rf"{name}\s+\d\.\d (OK|SAFE)", table), table


def test_cli_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert units.main(["render", "--prefix", "/home/me/venv", "--out", str(out)]) == 2
    assert "ProtectHome=yes hides" in capsys.readouterr().err
    assert not out.exists()
    assert units.main(["render", "--executable", EXE, "--prefix", "/opt", "--out", str(out)]) == 2
    assert units.main(["verify", str(tmp_path)]) == 1
    assert "no .service or .timer files" in capsys.readouterr().err


def test_install_writes_units_and_says_what_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "system"
    assert units.main(["install", "--prefix", "/opt/edgefleet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "systemctl daemon-reload" in text
    assert "systemctl enable --now edgefleet-edge.service edgefleet-fill.timer" in text
    # Not asked to create the user: says how, unless this box has it already.
    assert ("--create-user" in text) != all(units._exists(SETTINGS))
    edge = (out / "edgefleet-edge.service").read_text()
    assert "ExecStart=/opt/edgefleet/bin/edgefleet edge serve" in edge


def test_user_creation_commands() -> None:
    group, user = units.user_commands(SETTINGS)
    assert group == ["groupadd", "--system", "edgefleet"]
    assert user[:2] == ["useradd", "--system"]
    assert user[-1] == "edgefleet"
    assert "/usr/sbin/nologin" in user


# -- the edge inside the units' sandbox ----------------------------------------------------


class WrappedEdge(EdgeProcess):
    """An EdgeProcess started through *prefix* (strace, or a sandboxing exec wrapper)."""

    def __init__(self, root: Path, files: dict[str, bytes], prefix: list[str]) -> None:
        super().__init__(root, files, workers=2)
        self.prefix = prefix

    def start(self, timeout: float = 60.0) -> WrappedEdge:
        self._stderr = open(self.root / "stderr.log", "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(self.config_path)]
        self.proc = subprocess.Popen(
            [*self.prefix, *cmd], stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.proc.stdout is not None
        match = wait_for_line(self.proc.stdout, READY_RE, timeout)
        if match is None:
            self.stop()
            raise RuntimeError(f"edge did not start:\n{self.stderr()}")
        self.port = int(match.group(1))
        return self

    def supervisor(self) -> psutil.Process:
        """The edge's main process: the wrapper itself after exec, or strace's child."""
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        if self.prefix[0] != "strace":
            return main
        return next(c for c in main.children() if c.cmdline()[1:3] == ["-m", "edgefleet.cli"])

    def workers(self) -> list[int]:
        """The worker processes (the keeper, disk watch and scrub, is not one)."""
        return [
            c.pid
            for c in self.supervisor().children()
            if c.is_running() and _name(c) != KEEPER_NAME
        ]

    def signal(self, sig: int) -> None:
        self.supervisor().send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess, StopIteration):
                self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.workers():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode


SMALL = os.urandom(50_000)
BIG = os.urandom(3 << 20)


def exercise(edge: WrappedEdge) -> None:
    """Every path the units must allow: serve (sendfile), ranges, conditionals, reload,
    a worker crash and restart (fork), then the SIGTERM drain."""
    assert_serves(edge, "small.bin", SMALL)
    status, _, body = request(edge.port, edge.url("big.bin"), {"Range": "bytes=1000-2000000"})
    assert (status, body) == (206, BIG[1000:2000001])
    status, headers, _ = request(edge.port, edge.url("big.bin"), method="HEAD")
    assert status == 200
    status, _, _ = request(edge.port, edge.url("big.bin"), {"If-None-Match": headers["etag"]})
    assert status == 304
    edge.signal(signal.SIGHUP)
    assert_serves(edge, "small.bin", SMALL)
    victim = edge.workers()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(edge.workers()) == 2 and victim not in edge.workers(), 30, "worker restart"
    )
    assert_serves(edge, "big.bin", BIG)
    assert edge.stop() == 0


STRACE_RE = re.compile(r"^\d+\s+(?:<\.\.\. ([a-z0-9_]+) resumed>|([a-z0-9_]+)\()")
needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")


def traced_syscalls(*paths: Path) -> set[str]:
    """The system call names in `strace -f` output files."""
    used: set[str] = set()
    for path in paths:
        for line in path.read_text().splitlines():
            match = STRACE_RE.match(line)
            if match:
                used.add(match.group(1) or match.group(2))
    return used


@pytest.mark.slow
@needs_analyze
@needs_strace
def test_edge_system_calls_are_within_the_units_filter(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    trace = tmp_path / "strace.txt"
    edge = WrappedEdge(
        tmp_path / "edge",
        {"small.bin": SMALL, "big.bin": BIG},
        ["strace", "-f", "-qq", "-o", str(trace)],
    ).start()
    try:
        exercise(edge)
    finally:
        edge.stop()
    # The writer side too: `edge import` writes the LMDB index and the disks (as the fill does).
    more = tmp_path / "more"
    more.mkdir()
    (more / "new.bin").write_bytes(SMALL)
    subprocess.run(
        [
            *("strace", "-f", "-qq", "-o", f"{trace}.import"),
            *(sys.executable, "-m", "edgefleet.cli", "edge", "import"),
            *("-c", str(edge.config_path), str(more)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    used = traced_syscalls(trace, Path(f"{trace}.import"))
    # The trace saw what matters: without it an empty trace would pass.
    assert {"sendfile", "clone", "prctl", "mmap", "setsockopt"} <= used, sorted(used)
    groups = units.syscall_groups()
    for name in ("edgefleet-edge.service", "edgefleet-fill.service"):
        allowed = units.allowed_syscalls(rendered[name], groups)
        assert sorted(used - allowed) == [], name


@pytest.mark.slow
@needs_analyze
@needs_strace
def test_fill_agent_system_calls_are_within_its_units_filter(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    from tests.fill.agent.fillproc import (
        FillTarget,
        edge_with_keyring,
        manifest_doc,
        shared_keyring,
    )

    keyring = shared_keyring()
    files = {f"v{i}.mp4": os.urandom(200_000 + i) for i in range(3)}
    origin = edge_with_keyring(tmp_path / "origin", files, keyring).start()
    try:
        target = FillTarget(tmp_path / "target", keyring)
        urls = {"origin": f"http://127.0.0.1:{origin.port}"}
        target.write_manifest(manifest_doc(files, ["origin"], urls))
        trace = tmp_path / "strace.txt"
        done = subprocess.run(
            ["strace", "-f", "-qq", "-o", str(trace), *target.command()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        origin.stop()
    assert done.returncode == 0, done.stderr
    assert set(target.indexed()) == set(files)  # it really downloaded, wrote and indexed
    used = traced_syscalls(trace)
    assert {"connect", "fsync", "rename", "clone3"} <= used, sorted(used)  # a real trace
    allowed = units.allowed_syscalls(rendered["edgefleet-fill.service"], units.syscall_groups())
    assert sorted(used - allowed) == []


# Linux >= 6.3: PR_SET_MDWE refuses write+execute mappings for the process and what it
# executes; systemd 252 gets the same effect from MemoryDenyWriteExecute= with seccomp.
MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""
WX_PROBE = """
import mmap, sys
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    sys.exit(0)
sys.exit(4)
"""


def mdwe_works() -> bool:
    """The wrapper makes a W+X mapping fail in the program it executes."""
    probe = [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", WX_PROBE]
    return subprocess.run(probe, timeout=60, check=False, capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not mdwe_works(), reason="no PR_SET_MDWE here (Linux < 6.3)")
def test_edge_serves_with_write_execute_memory_refused(tmp_path: Path) -> None:
    edge = WrappedEdge(
        tmp_path / "edge",
        {"small.bin": SMALL, "big.bin": BIG},
        [sys.executable, "-c", MDWE_EXEC],
    ).start()
    try:
        exercise(edge)
    finally:
        edge.stop()
