"""`edgefleet fill plan` as a real process: files in, manifests out; and against real control."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgefleet.manifests import parse_manifest
from edgefleet.records import write_records_file
from fill.planner.run import PlanInputError, publish_manifests, put_with_retries
from fill.planner.synth import SynthWorld
from tests.control.controlproc import ControlFiles, ControlProcess, topology_text

GB = 10**9
EXAMPLE_PLANNER = Path(__file__).parents[3] / "examples" / "planner.toml"


def fill_plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "fill", "plan", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def inputs(tmp: Path, files: int = 300) -> tuple[SynthWorld, Path, Path]:
    world = SynthWorld(files, ("eu-west", "us-east"), seed=3)
    catalog = tmp / "catalog.csv"
    write_records_file(catalog, "catalog", world.catalog())
    popularity = tmp / "popularity.jsonl"
    write_records_file(popularity, "popularity", world.records(0, 3))
    return world, catalog, popularity


def fleet_doc(capacity: int) -> dict[str, Any]:
    return {
        "regions": ["eu-west", "us-east"],
        "sites": [
            {"name": "ams1", "region": "eu-west", "role": "edge", "costs": {"lon1": 10}},
            {"name": "lon1", "region": "eu-west", "role": "edge", "costs": {}},
            {"name": "org1", "region": "eu-west", "role": "origin", "costs": {}},
        ],
        "appliances": [
            {
                "name": n,
                "site": s,
                "state": "up",
                "base_url": "http://127.0.0.1:1",
                "weight": 1.0,
                "capacity_bytes": capacity if s != "org1" else 0,
                "free_bytes": 0,
            }
            for n, s in [
                ("ams1-a", "ams1"),
                ("ams1-b", "ams1"),
                ("lon1-a", "lon1"),
                ("org1-a", "org1"),
            ]
        ],
        "inventories": {"ams1-a": ["t0000001.mp4", "gone.mp4"]},
    }


def test_plan_from_files_writes_manifests_and_report(tmp_path: Path) -> None:
    world, catalog, popularity = inputs(tmp_path)
    capacity = int(world.sizes.sum() * 0.2)
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps(fleet_doc(capacity)))
    out = tmp_path / "out"
    done = fill_plan(
        "--catalog",
        str(catalog),
        "--popularity",
        str(popularity),
        "--fleet",
        str(fleet),
        "--out",
        str(out),
        "--generation",
        "42",
        "--fill-rate-bps",
        "8e9",
        "--fill-window-hours",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert "ams1" in done.stdout and "offload" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["generation"] == 42
    assert [s["site"] for s in report["sites"]] == ["ams1", "lon1"]
    budget = int(8e9 / 8 * 3600)
    names = sorted(p.stem for p in (out / "manifests").glob("*.json"))
    assert names == ["ams1-a", "ams1-b", "lon1-a"]  # origins are not planned
    for name in names:
        m = parse_manifest(json.loads((out / "manifests" / f"{name}.json").read_text()))
        assert m.generation == 42 and m.files
        assert m.total_bytes <= capacity
        assert all(f.sources and f.sources[-1] == "org1-a" for f in m.files)
    for row in report["sites"]:
        assert row["add_bytes"] <= budget * row["appliances"]
        assert 0 < row["predicted_offload"] <= row["offload_upper_bound"] + 1e-9


def test_bad_inputs_exit_2_naming_the_problem(tmp_path: Path) -> None:
    _, catalog, popularity = inputs(tmp_path, files=20)
    doc = fleet_doc(10 * GB)
    doc["appliances"][1]["capacity_bytes"] = "lots"
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps(doc))
    done = fill_plan(
        "--catalog", str(catalog), "--popularity", str(popularity), "--fleet", str(fleet)
    )
    assert done.returncode == 2
    assert (
        "appliances[1].capacity_bytes" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    )

    bad = tmp_path / "bad.csv"
    bad.write_text("content_id,size,checksum\na.mp4,12,nothex\n")
    done = fill_plan("--catalog", str(bad), "--popularity", str(popularity), "--fleet", str(fleet))
    assert done.returncode == 2 and f"{bad}:2" in done.stderr

    done = fill_plan("--catalog", str(catalog), "--fleet", str(fleet))
    assert done.returncode == 2 and "--popularity" in done.stderr


def test_plan_from_a_config_file_with_overrides(tmp_path: Path) -> None:
    """`fill plan --config`: relative paths from the file's directory, options override keys."""
    world, catalog, popularity = inputs(tmp_path)
    capacity = int(world.sizes.sum() * 0.2)
    (tmp_path / "fleet.json").write_text(json.dumps(fleet_doc(capacity)))
    config = tmp_path / "planner.toml"
    config.write_text(
        f'[inputs]\ncatalog = "{catalog.name}"\npopularity = ["{popularity.name}"]\n'
        '[fleet]\ndocument = "fleet.json"\n'
        '[output]\nout_dir = "plans"\ngeneration = 5\n'
        "[model]\nfill_rate_bps = 8e9\nfill_window_hours = 24.0\nmax_sources = 1\n"
    )
    # Run from elsewhere: the file's relative paths must not depend on the working directory.
    cmd = [sys.executable, "-m", "edgefleet.cli", "fill", "plan", "--config", str(config)]
    done = subprocess.run(
        [*cmd, "--generation", "42", "--fill-window-hours", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "plans"
    report = json.loads((out / "report.json").read_text())
    assert report["generation"] == 42
    budget = int(8e9 / 8 * 3600)  # the option's 1 h window, not the file's 24 h
    assert any(row["add_bytes"] > 0 for row in report["sites"])
    for row in report["sites"]:
        assert row["add_bytes"] <= budget * row["appliances"]
    names = sorted(p.stem for p in (out / "manifests").glob("*.json"))
    assert names == ["ams1-a", "ams1-b", "lon1-a"]
    for name in names:
        m = parse_manifest(json.loads((out / "manifests" / f"{name}.json").read_text()))
        assert m.generation == 42 and m.files
        # The file's max_sources = 1 (8 by default lists peers first): the origin alone.
        assert all(f.sources == ("org1-a",) for f in m.files), name


def test_a_bad_config_exits_2_naming_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "planner.toml"
    config.write_text('[inputs]\ncatalog = "c.csv"\n\n[model]\nhysterisis = 1.2\n')
    done = fill_plan("--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"edgefleet fill plan: {config}:5: unknown key 'model.hysterisis'"
    )
    done = fill_plan("--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "missing.toml: no such file" in done.stderr


def check_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "fill", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_planner(tmp_path: Path) -> None:
    """`fill check-config --planner FILE`: ok with a summary, or the key (and line) at fault."""
    config = tmp_path / "planner.toml"
    config.write_text(
        '[inputs]\ncatalog_index = "/srv/origin/index"\npopularity_from_control = true\n'
        '[fleet]\ncontrol_url = "http://127.0.0.1:7070"\nsecret_file = "fleet.secret"\n'
        "[output]\npublish = true\n"
    )
    good = check_config("--planner", str(config))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == (
        f"{config}: ok (catalog /srv/origin/index, fleet http://127.0.0.1:7070, output publish)"
    )
    config.write_text("[model]\n\nmin_copies = 2.5\n")
    bad = check_config("--planner", str(config))
    assert bad.returncode == 2
    assert f"{config}:3: 'model.min_copies' must be int" in bad.stderr
    # Keys that are each fine but make no run: named by option and key.
    config.write_text('[fleet]\ndocument = "fleet.json"\n')
    bad = check_config("--planner", str(config))
    assert bad.returncode == 2 and "inputs.catalog, inputs.catalog_index" in bad.stderr
    # Without --planner the file is read as an agent config: the planner's tables are unknown.
    bad = check_config(str(EXAMPLE_PLANNER))
    assert bad.returncode == 2 and "unknown key 'fleet'" in bad.stderr
    assert check_config("--planner", str(EXAMPLE_PLANNER)).returncode == 2  # no catalog


def test_plan_against_real_control_publishes(tmp_path: Path) -> None:
    world, catalog, popularity = inputs(tmp_path)
    capacity = int(world.sizes.sum() * 0.2)
    files = ControlFiles(tmp_path / "control")
    text = topology_text().replace(
        'base_url = "http://127.0.0.1:900',
        f'capacity_bytes = {capacity}\nbase_url = "http://127.0.0.1:900',
    )
    text += (
        '\n[[sites]]\nname = "org1"\nregion = "eu-west"\nrole = "origin"\nlat = 50.1\nlon = 8.7\n'
        '\n[[appliances]]\nname = "org1-a"\nsite = "org1"\nbase_url = "http://127.0.0.1:9005"\n'
    )
    files.topology_path.write_text(text)
    control = ControlProcess(files).start()
    try:
        done = fill_plan(
            "--catalog",
            str(catalog),
            "--popularity",
            str(popularity),
            "--control",
            f"http://127.0.0.1:{control.port}",
            "--secret-file",
            str(files.secret_path),
            "--publish",
            "--generation",
            "5",
            "--out",
            str(tmp_path / "out"),
        )
        assert done.returncode == 0, done.stderr
        assert "published generation 5: 4 appliances" in done.stdout
        for name in ("ams1-a", "ams1-b", "lon1-a", "nyc1-a"):
            status, _, doc = control.call("GET", f"/v1/appliances/{name}/manifest", "admin")
            assert status == 200
            m = parse_manifest(doc)
            assert m.generation == 5 and m.files and m.total_bytes <= capacity
            assert "org1-a" in m.source_urls
            # Control serves what the planner wrote, plus the live source fields.
            written = json.loads((tmp_path / "out" / "manifests" / f"{name}.json").read_text())
            assert {k: v for k, v in doc.items() if not k.startswith("source_")} == written
        # A second plan with the same generation is stale: control refuses it, we say so.
        again = fill_plan(
            "--catalog",
            str(catalog),
            "--popularity",
            str(popularity),
            "--control",
            f"http://127.0.0.1:{control.port}",
            "--secret-file",
            str(files.secret_path),
            "--publish",
            "--generation",
            "5",
        )
        assert again.returncode == 2 and "409" in again.stderr
        assert "NOT published to 4: ams1-a" in again.stderr
    finally:
        control.stop()


class Flaky(http.server.BaseHTTPRequestHandler):
    """Answers each PUT with the next status of `statuses` (then 200), counting the bodies."""

    statuses: ClassVar[list[int]] = []
    bodies: ClassVar[list[bytes]] = []

    def do_PUT(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.statuses.pop(0) if self.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_a_put_is_retried_on_5xx_but_not_on_a_refusal() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/appliances/a/manifest"
    waits: list[float] = []
    try:
        Flaky.statuses[:] = [503, 502]
        put_with_retries(url, "t", b"{1}", attempts=3, retry_s=0.5, sleep=waits.append)
        assert Flaky.bodies == [b"{1}"] * 3 and waits == [0.5, 1.0]
        Flaky.statuses[:] = [503, 503, 503]
        with pytest.raises(PlanInputError, match="HTTP 503"):
            put_with_retries(url, "t", b"{2}", attempts=3, sleep=waits.append)
        Flaky.bodies.clear()
        Flaky.statuses[:] = [409]
        with pytest.raises(PlanInputError, match="HTTP 409"):
            put_with_retries(url, "t", b"{3}", attempts=3, sleep=waits.append)
        assert Flaky.bodies == [b"{3}"]  # a refusal is final
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_publication_reports_the_appliances_left_out() -> None:
    texts = [(f"a{i}", b"{}" * i) for i in range(10)]
    put_urls: list[str] = []
    lock = threading.Lock()

    def put(url: str, token: str, body: bytes) -> None:
        with lock:
            put_urls.append(url)
        if url.endswith("/a3/manifest") or url.endswith("/a7/manifest"):
            raise PlanInputError(f"PUT {url}: HTTP 503 down")

    lines: list[str] = []
    summary = publish_manifests("http://c", "t", iter(texts), 10, lines.append, put=put)
    assert sorted(summary.published) == [f"a{i}" for i in range(10) if i not in (3, 7)]
    assert summary.failed == {"a3": "HTTP 503 down", "a7": "HTTP 503 down"}
    assert summary.bytes == sum(2 * i for i in range(10) if i not in (3, 7))
    assert len(put_urls) == 10
    line = summary.failure_line(9)
    assert "published to 8 appliances; NOT published to 2: a3 (HTTP 503 down)" in line
    assert "published 8/10 appliances" in "\n".join(lines)

    # Control refuses everything: after 2 x in_flight failures the rest are not tried.
    # (Up to in_flight more may already be on their way when the fourth failure is seen.)
    summary = publish_manifests(
        "http://c", "t", iter(texts), 10, lines.append, in_flight=2, put=refuse
    )
    assert not summary.published and 4 <= len(summary.failed) <= 6
    assert len(summary.failed) + len(summary.not_attempted) == 10
    assert "and 5 more" in summary.failure_line(9, shown=5)


def refuse(url: str, token: str, body: bytes) -> None:
    raise PlanInputError(f"PUT {url}: HTTP 409 stale")
