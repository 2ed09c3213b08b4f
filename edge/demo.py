"""`make demo`: an edge appliance serving sample files on this machine, until Ctrl-C.

Creates `demo-data/` (sample files, a keyring, a config), imports the files, starts
`edgefleet edge serve`, prints what runs where and curl commands with valid signed URLs, and
drains cleanly on Ctrl-C. `--check` fetches the URLs itself and stops (used by the tests).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from edge import config as edge_config
from edge.disks import open_disk
from edge.importer import import_directory
from edge.index import ContentIndex
from edgefleet.tokens import Keyring, new_key, signed_query

READY = re.compile(r"serving on (http://\S+) \(supervisor pid (\d+), \d+ workers: ([\d, ]+)\)")
MiB = 1 << 20


def make_samples(src: Path) -> None:
    """Sample content: random files of video-segment sizes and, with ffmpeg, a real MP4."""
    src.mkdir(parents=True, exist_ok=True)
    for name, size in (("sample-1m.bin", MiB), ("sample-64m.bin", 64 * MiB)):
        path = src / name
        if not path.exists():
            with open(path, "wb") as fh:
                for _ in range(max(1, size // MiB)):
                    fh.write(os.urandom(min(size, MiB)))
    movie = src / "testcard.mp4"
    if not movie.exists() and shutil.which("ffmpeg"):
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=duration=20:size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=20",
                "-c:v",
                "mpeg4",
                "-q:v",
                "5",
                "-c:a",
                "aac",
                "-shortest",
                str(movie),
            ],
            check=False,
        )


def port_free(host: str, port: int) -> bool:
    """True when *port* can be bound on *host* right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def prepare(data: Path, port: int) -> Path:
    """Create the demo appliance under *data*; returns its config path."""
    make_samples(data / "samples")
    keys = data / "keys.toml"
    if not keys.exists():
        keys.write_text(Keyring(keys={"demo1": bytes.fromhex(new_key())}, current="demo1").dumps())
        keys.chmod(0o600)
    conf = data / "edge.toml"
    conf.write_text(
        "# The demo appliance: two disk directories, tokens on, 2 workers.\n"
        'index = "index"\n'
        'disks = ["disk0", "disk1"]\n'
        "workers = 2\n"
        'runtime_dir = "run"\n'
        'access_log = "access.log"\n'
        "drain_timeout_s = 10.0\n"
        f'[listen]\nhost = "127.0.0.1"\nport = {port}\n'
        '[tokens]\nrequired = true\nkeyring = "keys.toml"\n'
    )
    cfg = edge_config.load(conf)
    disks = [open_disk(root, create=True) for root in cfg.disks]
    index = ContentIndex(cfg.index)
    try:
        have = {r.content_id for r in index.records()}
        samples = data / "samples"
        if any(p.name not in have for p in samples.iterdir() if p.is_file()):
            print("importing sample files into the index:")
            import_directory(samples, index, disks)
    finally:
        index.close()
    return conf


def main(argv: list[str] | None = None) -> int:
    """Run the demo."""
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--data-dir", default="demo-data")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--check", action="store_true", help="fetch the URLs, then stop")
    args = parser.parse_args(argv)
    data = Path(args.data_dir).resolve()
    port = args.port if args.port == 0 or port_free("127.0.0.1", args.port) else 0
    conf_path = prepare(data, port)
    cfg = edge_config.load(conf_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(conf_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=args.check,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = READY.search(line)
    if not match:
        proc.wait(10)
        print(f"the edge did not start (exit code {proc.returncode}); see the messages above")
        return 1
    base, sup_pid, workers = match.group(1), match.group(2), match.group(3)
    ring = Keyring.load(cfg.tokens.keyring)
    expiry = int(time.time()) + 3600
    contents = sorted(p.name for p in (data / "samples").iterdir())

    def url(cid: str, suffix: str = "") -> str:
        return f"{base}/c/{cid}{suffix}?{signed_query(ring, cid, expiry)}"

    big = "sample-64m.bin"
    print(
        f"""
edgefleet demo: one edge appliance is running
  server      {base}   (supervisor pid {sup_pid}, workers {workers})
  index       {cfg.index}   (LMDB)
  disks       {", ".join(cfg.disks)}
  content     {", ".join(contents)}
  access log  {cfg.access_log}
  metrics     {base}/metrics      health {base}/healthz
  config      {conf_path}

Try it (signed URLs valid for one hour):
  curl -sS -o /dev/null -w '%{{http_code}} %{{size_download}} bytes\\n' '{url(big)}'
  curl -sS -D - -o /dev/null -r 1000000-1999999 '{url(big)}'
  curl -sS -D - -o /dev/null -r 0-99,5000000-5000099 '{url(big)}'
  curl -sS -D - -o /dev/null '{url(big, "/range/0-65535")}'
  curl -sS -o /dev/null -w '%{{http_code}}\\n' '{base}/c/{big}'        # no token: 403
  curl -s {base}/metrics | grep ^edgefleet_edge_requests"""
    )
    if "testcard.mp4" in contents:
        print(f"  ffprobe -v error -show_format '{url('testcard.mp4')}'")
    print("\nCtrl-C stops the server (it drains in-flight downloads first).\n", flush=True)
    if args.check:
        return _check(proc, url(big))
    try:
        for out in proc.stdout:
            print(out, end="", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to the server too: it is draining. Wait for it.
        try:
            return proc.wait(cfg.drain_timeout_s + 10)
        except KeyboardInterrupt:
            proc.kill()
            return 1
        finally:
            rest = proc.stdout.read()
            if rest:
                print(rest, end="")


def _check(proc: subprocess.Popen[str], big_url: str) -> int:
    req = urllib.request.Request(big_url, headers={"Range": "bytes=1000-1999"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
        print(f"check: GET range -> {resp.status}, {len(body)} bytes")
        ok = resp.status == 206 and len(body) == 1000
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    print(out, end="")
    return 0 if ok and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
