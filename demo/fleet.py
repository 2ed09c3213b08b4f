"""`make demo`: a small fleet on this machine, filled overnight in a few seconds.

Everything runs on 127.0.0.1 from `demo-data/`: the fleet secret, the URL-signing keyring, the
topology, one config per service. An origin appliance holds the whole sample catalog (imported
with `edgefleet edge import`); three edge appliances in two sites start empty. The demo then
does what a night does: `edgefleet fill plan` forecasts tomorrow's popularity from a week of
synthetic viewing records, places the files on the edges (copies by popularity, consistent
hashing, each edge's capacity) and publishes one manifest per edge to control; `edgefleet fill
run --now` on each edge downloads its files (site peers first, then the other site, then the
origin), checks every checksum and installs them. Steering then sends players to the filled
files. The demo prints what runs where, the plan, the fills and a steering call whose URLs
play, and stops everything cleanly on Ctrl-C.

Each service is started with the same `edgefleet …` command an operator would use; the demo
only orchestrates processes and files and imports no service internals. A second `make demo`
keeps the data: its plan finds nothing to change (hysteresis) and the fills have nothing to do.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MiB = 1 << 20
READY = re.compile(r"serving on (http://\S+)")
CLIENT_IP = "127.0.0.1"


@dataclass(frozen=True)
class EdgeSpec:
    """One demo appliance."""

    name: str
    site: str
    port: int
    capacity_mib: int  # what the planner may place on it (0: an origin, never planned)


@dataclass
class Service:
    """A started service process and where it listens."""

    name: str
    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)


# The catalog: an 8 MiB file for range requests, a real MP4 (with ffmpeg) and 30 "episodes" of
# 1-6 MiB. Sizes are fixed so that every demo plans the same way.
SAMPLES = {"sample-8m.bin": 8 * MiB} | {
    f"episode-{i:02d}.bin": (1 + (i * 7) % 6) * MiB for i in range(1, 31)
}
ORIGIN = EdgeSpec("origin-1", "origin", 8080, 0)
EDGES = (
    EdgeSpec("ams1-a", "ams1", 8081, 32),
    EdgeSpec("ams1-b", "ams1", 8082, 32),
    EdgeSpec("lon1-a", "lon1", 8083, 40),
)
APPLIANCES = (ORIGIN, *EDGES)
CONTROL_PORT, STEERING_PORT = 7070, 7080
REGION = "eu-west"
HISTORY_DAYS = 7


def port_free(port: int) -> bool:
    """True when 127.0.0.1:*port* can be bound now (the demo's fixed ports are a nicety)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def edgefleet(*args: str, out: int | IO[Any] | None = None) -> subprocess.CompletedProcess[str]:
    """Run an `edgefleet` command to completion (set-up steps)."""
    return subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", *args],
        check=True,
        text=True,
        stdout=out if out is not None else subprocess.PIPE,
    )


def make_samples(src: Path) -> list[str]:
    """Sample content: random files of video-segment sizes and, with ffmpeg, a real MP4."""
    src.mkdir(parents=True, exist_ok=True)
    for name, size in SAMPLES.items():
        path = src / name
        if not path.exists():
            with open(path, "wb") as fh:
                for _ in range(size // MiB):
                    fh.write(os.urandom(MiB))
    movie = src / "testcard.mp4"
    if not movie.exists() and shutil.which("ffmpeg"):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             "testsrc2=duration=20:size=640x360:rate=25", "-f", "lavfi", "-i",
             "sine=frequency=440:duration=20", "-c:v", "mpeg4", "-q:v", "5", "-c:a", "aac",
             "-shortest", str(movie)],
            check=False,
        )  # fmt: skip
    return sorted(p.name for p in src.iterdir() if p.is_file())


def write_configs(data: Path, ports: dict[str, int]) -> None:
    """Secret, keyring, topology and one config per service."""
    if not (data / "fleet.secret").exists():
        edgefleet("control", "secret", str(data / "fleet.secret"))
    if not (data / "keys.toml").exists():
        edgefleet("edge", "keygen", str(data / "keys.toml"), "--key-id", "demo1")
    sites = {
        "ams1": ("edge", 52.37, 4.90, ["127.0.0.0/25", "2001:db8:1::/48"], {"lon1": 10}),
        "lon1": ("edge", 51.51, -0.13, ["127.0.0.128/25"], {"ams1": 10}),
        # The origin holds the whole catalog; it is every fill's last source, never a player's.
        "origin": ("origin", 50.11, 8.68, [], {"ams1": 50, "lon1": 50}),
    }
    # The demo appliances share this machine's CPU: a busy laptop must not make them all
    # "saturated" (steering would then rank every URL as a last resort).
    topo = ["[fleet]", "heartbeat_interval_s = 1.0", "down_after_missed = 3",
            "saturation_threshold = 1.5", "",
            f'[[regions]]\nname = "{REGION}"', ""]  # fmt: skip
    for name, (role, lat, lon, prefixes, costs) in sites.items():
        topo += [
            "[[sites]]", f'name = "{name}"', f'region = "{REGION}"', f'role = "{role}"',
            f"lat = {lat}", f"lon = {lon}", f"prefixes = {json.dumps(prefixes)}",
            "[sites.costs]", *(f"{k} = {v}" for k, v in costs.items()), "",
        ]  # fmt: skip
    for e in APPLIANCES:
        topo += ["[[appliances]]", f'name = "{e.name}"', f'site = "{e.site}"']
        if ports[e.name]:  # else the appliance tells control where it serves when it registers
            topo.append(f'base_url = "http://127.0.0.1:{ports[e.name]}"')
        if e.capacity_mib:
            topo.append(f"capacity_bytes = {e.capacity_mib * MiB}")
        topo.append("")
    (data / "topology.toml").write_text("\n".join(topo))
    (data / "control.toml").write_text(
        'topology = "topology.toml"\nsecret_file = "fleet.secret"\nstore = "control.sqlite3"\n'
        f'[listen]\nhost = "127.0.0.1"\nport = {ports["control"]}\n'
    )
    (data / "steering.toml").write_text(
        f'control_url = "http://127.0.0.1:{ports["control"]}"\n'
        'secret_file = "fleet.secret"\nkeyring = "keys.toml"\nurl_ttl_s = 3600\n'
        f'[listen]\nhost = "127.0.0.1"\nport = {ports["steering"]}\n'
    )
    for e in APPLIANCES:
        d = data / e.name
        d.mkdir(exist_ok=True)
        (d / "edge.toml").write_text(
            'index = "index"\ndisks = ["disk0"]\nworkers = 1\nruntime_dir = "run"\n'
            'access_log = "access.log"\ndrain_timeout_s = 5.0\n'
            f'[listen]\nhost = "127.0.0.1"\nport = {ports[e.name]}\n'
            '[tokens]\nrequired = true\nkeyring = "../keys.toml"\n'
            f'[control]\nurl = "http://127.0.0.1:{ports["control"]}"\n'
            f'appliance = "{e.name}"\nsecret_file = "../fleet.secret"\n'
        )
        (d / "fill.toml").write_text(
            'edge_config = "edge.toml"\n'
            "# 100 MB/s for every download of this appliance together; 4 at a time.\n"
            "rate_cap_bytes_per_s = 100000000\nparallel_downloads = 4\n"
            "# A dropped file stays on disk this long for players already sent to it.\n"
            "delete_grace_s = 60\n"
        )


def write_popularity(path: Path, src: Path) -> None:
    """A week of daily viewing records for the region (the format of `edgefleet control
    export-popularity`): Zipf-like demand over the catalog, the two files the demo shows most
    watched, a little day-to-day drift."""
    if path.exists():
        return
    samples = sorted(p.name for p in src.iterdir() if p.is_file())
    ranked = ["sample-8m.bin", "testcard.mp4", *(s for s in samples if s.startswith("ep"))]
    ranked = [c for c in ranked if c in samples]
    sizes = {c: (src / c).stat().st_size for c in ranked}
    rng = random.Random(7)
    today = datetime.date.today()
    with open(path, "w") as fh:
        fh.write("day,region,content_id,bytes_streamed\n")
        for back in range(HISTORY_DAYS, 0, -1):
            day = (today - datetime.timedelta(days=back)).isoformat()
            for rank, cid in enumerate(ranked, start=1):
                views = 5000 / rank**0.9 * rng.uniform(0.8, 1.25)
                fh.write(f"{day},{REGION},{cid},{int(views * sizes[cid])}\n")


def import_content(data: Path) -> None:
    """The origin holds the whole catalog (imported once); the edges start empty (`edge init`:
    an empty index and marked disks) and are filled by the night's plan."""
    d = data / ORIGIN.name
    if not (d / "index" / "data.mdb").exists():
        print(f"importing the sample catalog into {ORIGIN.name}")
        edgefleet("edge", "import", str(data / "samples"), "-c", str(d / "edge.toml"),
                  out=subprocess.DEVNULL)  # fmt: skip
    for e in EDGES:
        if not (data / e.name / "index" / "data.mdb").exists():
            edgefleet(
                "edge", "init", "-c", str(data / e.name / "edge.toml"), out=subprocess.DEVNULL
            )


def start(name: str, args: list[str], log: Path) -> Service:
    """Start one service and wait for its "serving on" line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefleet.cli", *args],
        stdout=subprocess.PIPE,
        stderr=open(log, "a"),  # noqa: SIM115 - the child owns it
        text=True,
    )
    service = Service(name, proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        service.lines.append(line.rstrip())
        match = READY.search(line)
        if match:
            service.url = match.group(1)
            return service
    raise RuntimeError(f"{name} did not start; see {log}")


MAX_URLS = 3


def steer(url: str, content_ids: list[str]) -> dict[str, Any]:
    """One POST /v1/steer."""
    body = json.dumps({"client_ip": CLIENT_IP, "content_ids": content_ids, "max_urls": MAX_URLS})
    req = urllib.request.Request(
        f"{url}/v1/steer", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        answer: dict[str, Any] = json.load(resp)
    return answer


def planned_holders(plan: Path, content_ids: list[str]) -> dict[str, set[str]]:
    """Which appliances tonight's manifests (plan/manifests/<name>.json) put each id on."""
    holders: dict[str, set[str]] = {cid: set() for cid in content_ids}
    for path in sorted((plan / "manifests").glob("*.json")):
        doc = json.loads(path.read_text())
        for entry in doc["files"]:
            if entry["id"] in holders:
                holders[entry["id"]].add(doc["appliance"])
    return holders


def converged(answer: dict[str, Any], holders: dict[str, set[str]]) -> bool:
    """Steering lists every appliance the plan filled with each id (or as many as it may)."""
    for result in answer["results"]:
        listed = {u["appliance"] for u in result["urls"]}
        want = holders.get(result["content_id"], set())
        if not listed or not (want <= listed or len(listed) >= MAX_URLS):
            return False
    return True


def wait_for_fleet(
    steering: str, content_ids: list[str], holders: dict[str, set[str]], timeout: float = 30
) -> dict[str, Any]:
    """Poll steering until every filled edge's inventory has reached it: each id is offered
    by every appliance the plan put it on. (Edges report their inventory with their next
    heartbeat after the fill, one by one: a first answer can still miss the slowest edge.)"""
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            answer = steer(steering, content_ids)
            if converged(answer, holders):
                return answer
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    if answer and all(r["urls"] for r in answer["results"]):
        print(f"note: after {timeout:.0f} s steering still does not list every filled edge")
        return answer
    raise RuntimeError(f"steering gave no URLs within {timeout:.0f} s: {answer}")


def fetch_range(url: str) -> tuple[int, int]:
    """GET bytes 0-65535 of a signed URL: (status, bytes)."""
    req = urllib.request.Request(url, headers={"Range": "bytes=0-65535"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, len(resp.read())


def admin_get(control: str, data: Path, path: str) -> Any:
    """GET a control endpoint with the admin token (as an operator's curl would)."""
    token = edgefleet("control", "token", "admin", "-c", str(data / "control.toml")).stdout.strip()
    req = urllib.request.Request(control + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


def wait_until_up(control: str, data: Path, names: list[str], timeout: float = 30) -> None:
    """Poll control until every appliance heartbeats and is up."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError, KeyError):
            doc = admin_get(control, data, "/v1/appliances")
            states = {a["name"]: a["state"] for a in doc["appliances"]}
            if all(states.get(n) == "up" for n in names):
                return
        time.sleep(0.3)
    raise RuntimeError(f"appliances not up within {timeout:.0f} s: {states}")


def plan_night(data: Path, control: str) -> str:
    """`edgefleet fill plan` over the week of records, published to control; its report."""
    return edgefleet(
        "fill", "plan", "--catalog-index", str(data / ORIGIN.name / "index"),
        "--popularity", str(data / "popularity.csv"), "--control", control,
        "--secret-file", str(data / "fleet.secret"), "--publish", "--out", str(data / "plan"),
        # A copy per 4,000 daily views: the hit gets one on each appliance of a site.
        "--popularity-per-copy", "4000",
    ).stdout  # fmt: skip


def fill_edges(data: Path) -> dict[str, str]:
    """`edgefleet fill run --now` on every edge at once; each one's summary line."""
    cli = [sys.executable, "-m", "edgefleet.cli", "fill", "run", "--now", "-c"]
    runs = {
        e.name: subprocess.Popen(
            [*cli, str(data / e.name / "fill.toml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for e in EDGES
    }
    summaries: dict[str, str] = {}
    for name, proc in runs.items():
        out, _ = proc.communicate(timeout=300)
        lines = [line for line in out.splitlines() if line.startswith("fill: ")]
        if proc.returncode != 0:
            raise RuntimeError(f"fill on {name} failed (exit {proc.returncode}):\n{out}")
        summaries[name] = lines[-1] if lines else out.strip()
    return summaries


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a script, a service manager) stops the fleet like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Run the demo fleet."""
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--data-dir", default="demo-data")
    parser.add_argument(
        "--ports",
        choices=("fixed", "any"),
        default="fixed",
        help="fixed: 7070, 7080, 8080-8083; any: free ports (tests)",
    )
    parser.add_argument("--check", action="store_true", help="steer, fetch, then stop")
    parser.add_argument(
        "--scrape", metavar="DIR", help="with --check: save every service's /metrics in DIR"
    )
    args = parser.parse_args(argv)
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    samples = make_samples(data / "samples")
    fixed = args.ports == "fixed"
    wanted = [CONTROL_PORT, STEERING_PORT, *(e.port for e in APPLIANCES)]
    busy = [p for p in wanted if fixed and not port_free(p)]
    if busy:
        print(f"ports {', '.join(map(str, busy))} are in use: the demo takes free ports instead")
        fixed = False
    ports = {e.name: e.port if fixed else 0 for e in APPLIANCES}
    ports.update(control=CONTROL_PORT if fixed else 0, steering=STEERING_PORT if fixed else 0)
    write_configs(data, ports)
    import_content(data)
    write_popularity(data / "popularity.csv", data / "samples")
    services: list[Service] = []
    try:
        control = start("control", ["control", "serve", "-c", str(data / "control.toml")],
                        data / "control.log")  # fmt: skip
        services.append(control)
        if not fixed:  # the appliances need control's real port in their configs
            ports["control"] = int(control.url.rsplit(":", 1)[1])
            write_configs(data, ports)
        for e in APPLIANCES:
            services.append(start(e.name, ["edge", "serve", "-c", str(data / e.name / "edge.toml")],
                                  data / f"{e.name}.log"))  # fmt: skip
        steering = start("steering", ["steering", "serve", "-c", str(data / "steering.toml")],
                         data / "steering.log")  # fmt: skip
        services.append(steering)
        wait_until_up(control.url, data, [e.name for e in APPLIANCES])

        print(f"\nThe night: plan tomorrow's files from {HISTORY_DAYS} days of viewing records")
        print(f"  edgefleet fill plan --catalog-index {data / ORIGIN.name / 'index'} \\")
        print(f"      --popularity {data / 'popularity.csv'} --control {control.url} \\")
        print("      --popularity-per-copy 4000 --publish\n")
        for line in plan_night(data, control.url).splitlines():
            print(f"  {line}")
        print(
            "\n...and fill every edge from its manifest (peers, then the other site, then origin)"
        )
        print(
            f"  edgefleet fill run --now -c {data / EDGES[0].name / 'fill.toml'}   # on each edge\n"
        )
        for name, summary in fill_edges(data).items():
            print(f"  {name:<7} {summary}")

        shown: list[str] = [c for c in ("sample-8m.bin", "testcard.mp4") if c in samples]
        answer = wait_for_fleet(steering.url, shown, planned_holders(data / "plan", shown))
        _show(data, services, steering.url, shown, answer)
        if args.check:
            first = answer["results"][0]["urls"][0]["url"]
            status, n = fetch_range(first)
            print(f"check: first URL -> {status}, {n} bytes")
            classes = [r["class"] for r in answer["results"]]
            print(f"check: answer classes {', '.join(classes)}")
            if args.scrape:
                scrape_all(services, Path(args.scrape))
            return 0 if status == 206 and n == 65536 and set(classes) == {"local"} else 1
        print("\nCtrl-C stops the fleet (each edge drains first).\n", flush=True)
        while all(s.proc.poll() is None for s in services):
            time.sleep(0.5)
        dead = [s.name for s in services if s.proc.poll() is not None]
        print(f"stopped unexpectedly: {', '.join(dead)} (logs in {data})")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(services)


def scrape_all(services: list[Service], out: Path) -> None:
    """Save each service's /metrics as DIR/<name>.prom (the dashboard test reads them)."""
    out.mkdir(parents=True, exist_ok=True)
    for s in services:
        with urllib.request.urlopen(f"{s.url}/metrics", timeout=5) as resp:
            (out / f"{s.name}.prom").write_bytes(resp.read())


def _show(
    data: Path, services: list[Service], steering: str, shown: list[str], answer: dict[str, Any]
) -> None:
    print(f"\nedgefleet demo: a fleet of {len(EDGES)} edges in 2 sites and an origin is running\n")
    for s in services:
        print(f"  {s.name:<9} {s.url:<24} pid {s.proc.pid:<7} log {data / (s.name + '.log')}")
    print(f"\n  topology  {data / 'topology.toml'}")
    print("            ams1 serves 127.0.0.0/25 (ams1-a, ams1-b); lon1 127.0.0.128/25 (lon1-a);")
    print("            origin-1 holds the catalog and feeds the fills, never players")
    print(f"  plan      {data / 'plan' / 'report.json'} and manifests/")
    print("\nAsk steering where a player at 127.0.0.1 should fetch files:")
    body = json.dumps({"client_ip": CLIENT_IP, "content_ids": shown, "max_urls": MAX_URLS})
    print(f"  curl -s {steering}/v1/steer -H 'Content-Type: application/json' -d '{body}'")
    print("\nIt answered (ranked failover order, signed URLs bound to 127.0.0.1):")
    for r in answer["results"]:
        print(f"  {r['content_id']}  [{r['class']}]")
        for u in r["urls"]:
            print(f"    {u['appliance']:<7} ({u['site']})  {u['url']}")
    first = answer["results"][0]["urls"][0]["url"]
    print("\nFetch a range from the first URL:")
    print(f"  curl -sS -D - -o /dev/null -r 0-65535 '{first}'")
    cli = Path(sys.executable).parent / "edgefleet"
    with contextlib.suppress(ValueError):
        cli = cli.relative_to(Path.cwd())
    token = f"$({cli} control token admin -c {data / 'control.toml'})"
    print("\nFleet state (control's view of every appliance) and an appliance's manifest:")
    print(f'  curl -s -H "Authorization: Bearer {token}" {services[0].url}/v1/appliances')
    print(
        f'  curl -s -H "Authorization: Bearer {token}" '
        f"{services[0].url}/v1/appliances/{EDGES[0].name}/manifest"
    )


def _stop(services: list[Service]) -> None:
    for s in reversed(services):
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    for s in reversed(services):
        try:
            s.proc.wait(20)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
        if s.proc.stdout is not None:
            s.proc.stdout.close()
    print("edgefleet demo: stopped")


if __name__ == "__main__":
    sys.exit(main())
