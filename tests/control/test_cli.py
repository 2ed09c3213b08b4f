"""`edgefleet control …`: a real `serve` subprocess on port 0, SIGHUP reloads, drain, tools."""

from __future__ import annotations

import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control.cli import main
from edgefleet.fleet import load_secret, role_token
from tests.control.controlproc import ControlFiles, ControlProcess, topology_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlProcess]:
    proc = ControlProcess(ControlFiles(tmp_path / "control")).start()
    yield proc
    assert proc.stop() == 0, proc.stderr()


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def names(control: ControlProcess) -> list[str]:
    status, _, body = control.call("GET", "/v1/appliances", "admin")
    assert status == 200
    return [a["name"] for a in body["appliances"]]


def test_serve_reload_and_drain(
    control: ControlProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert control.call("GET", "/healthz")[2] == "ok"
    assert names(control) == ["ams1-a", "ams1-b", "lon1-a", "nyc1-a"]
    topology = control.files.topology_path
    extra = '[[appliances]]\nname = "lon1-b"\nsite = "lon1"\nbase_url = "http://127.0.0.1:9"\n'
    topology.write_text(topology_text(2.0, extra))
    control.signal(signal.SIGHUP)
    wait_for(lambda: "lon1-b" in names(control))
    # An invalid file is refused, logged, and the topology in force stays.
    topology.write_text(topology_text(2.0).replace('"us-east"', '"us-eest"', 1))
    control.signal(signal.SIGHUP)
    wait_for(lambda: "NOT reloaded" in control.stderr())
    assert "unknown region 'us-east'" in control.stderr()
    assert names(control)[-1] == "lon1-b"

    config = str(control.files.config_path)
    url = f"http://127.0.0.1:{control.port}"
    assert main(["drain", "lon1-b", "-c", config, "--url", url]) == 0
    assert capsys.readouterr().out == "lon1-b: draining\n"
    _, _, body = control.call("GET", "/v1/appliances", "admin")
    assert body["appliances"][-1]["admin_drain"] is True
    assert main(["drain", "lon1-b", "--undo", "-c", config, "--url", url]) == 0
    assert capsys.readouterr().out == "lon1-b: back in service\n"
    assert main(["drain", "nope", "-c", config, "--url", url]) == 1
    assert "404: unknown appliance 'nope'" in capsys.readouterr().err


def test_drain_reports_an_unreachable_control(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = ControlFiles(tmp_path)
    # Port 1 on loopback: nothing listens there (and binding it needs root).
    url = "http://127.0.0.1:1"
    assert main(["drain", "ams1-a", "-c", str(files.config_path), "--url", url]) == 1
    assert "cannot reach control" in capsys.readouterr().err


def test_serve_refuses_a_bad_topology(tmp_path: Path) -> None:
    files = ControlFiles(tmp_path)
    files.topology_path.write_text("[[sites]]\nname = 'x'\n")
    proc = ControlProcess(files)
    with pytest.raises(RuntimeError, match="did not start"):
        proc.start()
    assert proc.proc is not None and proc.proc.returncode == 2
    assert "sites[0] 'x': 'region' is required" in proc.stderr()


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLES / "topology.toml")]) == 0
    assert "ok (topology: 2 regions, 4 sites, 5 appliances)" in capsys.readouterr().out
    files = ControlFiles(tmp_path)
    assert main(["check-config", str(files.config_path)]) == 0
    assert "ok (control config" in capsys.readouterr().out
    files.secret_path.write_text("abcd\n")
    assert main(["check-config", str(files.config_path)]) == 2
    assert "fleet secret must be at least 32 bytes" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = 3\n")
    assert main(["check-config", str(bad)]) == 2
    assert "[listen] must be a table" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "missing.toml")]) == 2


def test_secret_and_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fleet.secret"
    assert main(["secret", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = load_secret(path)
    assert main(["secret", str(path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert load_secret(path) == secret
    files = ControlFiles(tmp_path / "c")
    assert main(["token", "steering", "-c", str(files.config_path)]) == 0
    assert capsys.readouterr().out.strip() == role_token(files.secret, "steering")


def test_dispatcher_lists_control(capsys: pytest.CaptureFixture[str]) -> None:
    from edgefleet.cli import main as edgefleet

    assert edgefleet(["--help"]) == 0
    assert "control" in capsys.readouterr().out


def test_export_popularity_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["export-popularity", "--from", "2026-11-24", "--to", "2026-11-25"]
    out = str(tmp_path / "p.csv")
    assert main([*base, "--store", str(tmp_path / "none.sqlite3"), "--out", out]) == 1
    assert "no such store" in capsys.readouterr().err
    bad_day = ["export-popularity", "--from", "2026-11-31", "--to", "2026-12-01"]
    assert main([*bad_day, "--store", "x", "--out", out]) == 2
    assert "--from: must be a date" in capsys.readouterr().err
    assert main([*base, "--store", "x", "--out", str(tmp_path / "p.txt")]) == 2
    assert main([*base, "--control", "http://127.0.0.1:9", "--out", out]) == 2
    assert "--secret-file" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
