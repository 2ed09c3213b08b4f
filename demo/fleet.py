"""`make demo`: a small fleet on this machine — control, steering and three edges in two sites.

Everything runs on 127.0.0.1 from `demo-data/`: the fleet secret, the URL-signing keyring, the
topology, one config per service, sample content imported into each edge (not every edge holds
every file, so steering's content misses show). The demo starts each service with the same
`edgefleet … serve` command an operator would use, waits until steering answers, prints what
runs where and a steering call whose URLs play, and stops everything cleanly on Ctrl-C.

The demo only orchestrates processes and files; it imports no service internals.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
    files: tuple[str, ...]


@dataclass
class Service:
    """A started service process and where it listens."""

    name: str
    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)


SAMPLES = {"sample-1m.bin": MiB, "sample-64m.bin": 64 * MiB}
EDGES = (
    EdgeSpec("ams1-a", "ams1", 8081, ("sample-1m.bin", "sample-64m.bin", "testcard.mp4")),
    EdgeSpec("ams1-b", "ams1", 8082, ("sample-1m.bin", "testcard.mp4")),
    EdgeSpec("lon1-a", "lon1", 8083, ("sample-1m.bin", "sample-64m.bin", "testcard.mp4")),
)
CONTROL_PORT, STEERING_PORT = 7070, 7080


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
        "ams1": ("eu-west", 52.37, 4.90, ["127.0.0.0/25", "2001:db8:1::/48"], {"lon1": 10}),
        "lon1": ("eu-west", 51.51, -0.13, ["127.0.0.128/25"], {"ams1": 10}),
    }
    # The three demo appliances share this machine's CPU: a busy laptop must not make them all
    # "saturated" (steering would then rank every URL as a last resort).
    topo = ["[fleet]", "heartbeat_interval_s = 1.0", "down_after_missed = 3",
            "saturation_threshold = 1.5", "",
            '[[regions]]\nname = "eu-west"', ""]  # fmt: skip
    for name, (region, lat, lon, prefixes, costs) in sites.items():
        topo += [
            "[[sites]]", f'name = "{name}"', f'region = "{region}"', f"lat = {lat}",
            f"lon = {lon}", f"prefixes = {json.dumps(prefixes)}", "[sites.costs]",
            *(f"{k} = {v}" for k, v in costs.items()), "",
        ]  # fmt: skip
    for e in EDGES:
        topo += ["[[appliances]]", f'name = "{e.name}"', f'site = "{e.site}"']
        if ports[e.name]:  # else the appliance tells control where it serves when it registers
            topo.append(f'base_url = "http://127.0.0.1:{ports[e.name]}"')
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
    for e in EDGES:
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


def import_content(data: Path, samples: list[str]) -> None:
    """Give each edge its share of the samples (once)."""
    for e in EDGES:
        d = data / e.name
        if (d / "index" / "data.mdb").exists():
            continue
        share = d / "import"
        share.mkdir(exist_ok=True)
        for name in e.files:
            if name in samples and not (share / name).exists():
                os.link(data / "samples" / name, share / name)
        print(f"importing {', '.join(sorted(os.listdir(share)))} into {e.name}")
        edgefleet("edge", "import", str(share), "-c", str(d / "edge.toml"), out=subprocess.DEVNULL)
        shutil.rmtree(share)


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


def steer(url: str, content_ids: list[str]) -> dict[str, Any]:
    """One POST /v1/steer."""
    body = json.dumps({"client_ip": CLIENT_IP, "content_ids": content_ids, "max_urls": 3})
    req = urllib.request.Request(
        f"{url}/v1/steer", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        answer: dict[str, Any] = json.load(resp)
    return answer


def wait_for_fleet(steering: str, content_ids: list[str], timeout: float = 30) -> dict[str, Any]:
    """Poll steering until every edge has reported in and each content id has a URL."""
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            answer = steer(steering, content_ids)
            if all(r["urls"] for r in answer["results"]):
                return answer
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"steering gave no URLs within {timeout:.0f} s: {answer}")


def fetch_range(url: str) -> tuple[int, int]:
    """GET bytes 0-65535 of a signed URL: (status, bytes)."""
    req = urllib.request.Request(url, headers={"Range": "bytes=0-65535"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, len(resp.read())


def main(argv: list[str] | None = None) -> int:
    """Run the demo fleet."""
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--data-dir", default="demo-data")
    parser.add_argument(
        "--ports",
        choices=("fixed", "any"),
        default="fixed",
        help="fixed: 7070, 7080, 8081-8083; any: free ports (tests)",
    )
    parser.add_argument("--check", action="store_true", help="steer, fetch, then stop")
    args = parser.parse_args(argv)
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    samples = make_samples(data / "samples")
    fixed = args.ports == "fixed"
    wanted = [CONTROL_PORT, STEERING_PORT, *(e.port for e in EDGES)]
    busy = [p for p in wanted if fixed and not port_free(p)]
    if busy:
        print(f"ports {', '.join(map(str, busy))} are in use: the demo takes free ports instead")
        fixed = False
    ports = {e.name: e.port if fixed else 0 for e in EDGES}
    ports.update(control=CONTROL_PORT if fixed else 0, steering=STEERING_PORT if fixed else 0)
    write_configs(data, ports)
    import_content(data, samples)
    services: list[Service] = []
    try:
        control = start("control", ["control", "serve", "-c", str(data / "control.toml")],
                        data / "control.log")  # fmt: skip
        services.append(control)
        if not fixed:  # the edges need control's real port in their configs
            ports["control"] = int(control.url.rsplit(":", 1)[1])
            write_configs(data, ports)
        for e in EDGES:
            services.append(start(e.name, ["edge", "serve", "-c", str(data / e.name / "edge.toml")],
                                  data / f"{e.name}.log"))  # fmt: skip
        steering = start("steering", ["steering", "serve", "-c", str(data / "steering.toml")],
                         data / "steering.log")  # fmt: skip
        services.append(steering)
        contents = [c for c in samples if c in {f for e in EDGES for f in e.files}]
        wait_for_fleet(steering.url, contents)
        shown: list[str] = [c for c in ("sample-64m.bin", "testcard.mp4") if c in contents]
        answer = steer(steering.url, shown)
        _show(data, services, steering.url, shown, answer)
        if args.check:
            first = answer["results"][0]["urls"][0]["url"]
            status, n = fetch_range(first)
            print(f"check: first URL -> {status}, {n} bytes")
            return 0 if status == 206 and n == 65536 else 1
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


def _show(
    data: Path, services: list[Service], steering: str, shown: list[str], answer: dict[str, Any]
) -> None:
    print("\nedgefleet demo: a fleet of 3 edges in 2 sites is running\n")
    for s in services:
        print(f"  {s.name:<9} {s.url:<24} pid {s.proc.pid:<7} log {data / (s.name + '.log')}")
    print(f"\n  topology  {data / 'topology.toml'}")
    print("            ams1 serves 127.0.0.0/25 (ams1-a, ams1-b); lon1 127.0.0.128/25 (lon1-a)")
    print("\nAsk steering where a player at 127.0.0.1 should fetch files:")
    body = json.dumps({"client_ip": CLIENT_IP, "content_ids": shown, "max_urls": 3})
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
    print("\nFleet state (control's view of every appliance):")
    print(f'  curl -s -H "Authorization: Bearer {token}" {services[0].url}/v1/appliances')


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
