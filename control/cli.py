"""`edgefleet control …`: serve, drain, check-config, secret, token, export-popularity."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import logging
import os
import secrets
import signal
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from control import config as control_config
from control.config import ControlConfig
from control.popularity import parse_day
from control.store import Store, StoreError
from control.topology import Topology, TopologyError, load_topology
from edgefleet import logs
from edgefleet.config import ConfigError
from edgefleet.errors import parse_error_body
from edgefleet.fleet import MIN_SECRET_BYTES, AuthError, load_secret, role_token
from edgefleet.records import DailyRecord, RecordError, record_format, write_records_file

# Keys that only a topology file has: `check-config` tells the two kinds of file apart by them.
_TOPOLOGY_KEYS = frozenset({"fleet", "regions", "sites", "appliances"})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet control", description="The fleet control plane.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the control plane")
    serve.add_argument("--config", "-c", required=True, help="control TOML file")
    serve.add_argument("--port", type=int, help="override listen.port (0 picks a free port)")
    serve.add_argument("--host", help="override listen.host")

    drain = sub.add_parser("drain", help="ask the running control to drain an appliance")
    drain.add_argument("appliance")
    drain.add_argument("--undo", action="store_true", help="put it back in service")
    drain.add_argument("--config", "-c", required=True)
    drain.add_argument("--url", help="control's base URL (default: from listen.host/port)")

    check = sub.add_parser("check-config", help="validate a control config or topology file")
    check.add_argument("file")

    secret = sub.add_parser("secret", help="write a new random fleet secret file (mode 0600)")
    secret.add_argument("path")

    token = sub.add_parser("token", help="print the bearer token of a role (for curl, configs)")
    token.add_argument("role", help='"admin", "steering" or "appliance:<name>"')
    token.add_argument("--config", "-c", required=True)

    export = sub.add_parser(
        "export-popularity",
        help="write the fleet's daily popularity records (CSV or JSONL) for `fill plan`",
        description="From a running control (--control, --secret-file) or, when control is "
        "down, straight from its SQLite store (--store; safe while control runs: WAL).",
    )
    export.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    export.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD")
    export.add_argument("--out", required=True, help="FILE.csv or FILE.jsonl (optionally .gz)")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--control", help="control's base URL, e.g. http://127.0.0.1:7070")
    source.add_argument("--store", help="control's SQLite file (reads it directly)")
    export.add_argument("--secret-file", help="the fleet secret (with --control)")
    return p


def main(argv: list[str]) -> int:
    """Run one `edgefleet control` command."""
    args = _parser().parse_args(argv)
    logs.configure()
    try:
        if args.command == "secret":
            return _secret(Path(args.path))
        if args.command == "check-config":
            return _check(args.file)
        if args.command == "export-popularity":
            return _export_popularity(args)
        overrides = {}
        if args.command == "serve":
            for key, value in (("listen.port", args.port), ("listen.host", args.host)):
                if value is not None:
                    overrides[key] = value
        conf = control_config.load(args.config, overrides)
        if args.command == "serve":
            return _serve(conf)
        if args.command == "drain":
            return _drain(conf, args.appliance, not args.undo, args.url)
        if args.command == "token":
            print(role_token(load_secret(conf.secret_file), args.role))
            return 0
    except (ConfigError, TopologyError, AuthError) as exc:
        print(f"edgefleet control: config error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)  # pragma: no cover


def _serve(conf: ControlConfig) -> int:
    topology = load_topology(conf.topology)
    secret = load_secret(conf.secret_file)
    try:
        store = Store(conf.store)
    except StoreError as exc:
        print(f"edgefleet control: cannot open the store: {exc}", file=sys.stderr)
        return 1
    loop_factory = None
    if conf.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_run(conf, topology, secret, store))
    except OSError as exc:  # the listen address is taken or not ours
        print(f"edgefleet control: cannot listen: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


async def _run(conf: ControlConfig, topology: Topology, secret: bytes, store: Store) -> int:
    from aiohttp import web

    from control.app import make_app
    from control.service import Control
    from edgefleet import sdnotify
    from edgefleet.tasks import spawn

    control = Control(conf, topology, secret, store)
    runner = web.AppRunner(make_app(control), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, conf.listen.host, conf.listen.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        logging.getLogger("edgefleet.control").info(
            "fleet: %s; snapshot version %d", topology.summary(), control.registry.version
        )
        print(f"edgefleet control: serving on http://{shown}:{port}", flush=True)
        sdnotify.notify(f"READY=1\nSTATUS=serving on port {port}\nMAINPID={os.getpid()}")
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: spawn(control.reload(), name="control-reload")
        )
        pinger = spawn(sdnotify.ping_watchdog(), name="control-watchdog")
        await stopping.wait()
        pinger.cancel()
        sdnotify.notify("STOPPING=1")
    finally:
        await runner.cleanup()
    return 0


def _drain(conf: ControlConfig, appliance: str, drain: bool, url: str | None) -> int:
    secret = load_secret(conf.secret_file)
    if url is None:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            conf.listen.host, conf.listen.host
        )
        url = f"http://{f'[{host}]' if ':' in host else host}:{conf.listen.port}"
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/appliances/{urllib.parse.quote(appliance, safe='')}/drain",
        data=json.dumps({"drain": drain}).encode(),
        headers={
            "Authorization": f"Bearer {role_token(secret, 'admin')}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace").strip()
        refused = parse_error_body(detail.encode())
        if refused is not None:
            detail = refused.error
        print(f"edgefleet control drain: {exc.code}: {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"edgefleet control drain: cannot reach control at {url}: {exc}", file=sys.stderr)
        return 1
    state = "draining" if answer.get("drain") else "back in service"
    print(f"{answer.get('name', appliance)}: {state}")
    return 0


def _export_popularity(args: argparse.Namespace) -> int:
    """Write the popularity records of days --from..--to to --out, all or nothing."""
    try:
        first, last = parse_day(args.first, "--from"), parse_day(args.last, "--to")
        fmt = record_format(args.out)
    except (ValueError, RecordError) as exc:
        print(f"edgefleet control export-popularity: {exc}", file=sys.stderr)
        return 2
    if first > last:
        print("edgefleet control export-popularity: --to is before --from", file=sys.stderr)
        return 2
    out = Path(args.out)
    # Written beside the target and renamed: a failed export never leaves a torn file that
    # a planner would read as a (short) truth.
    tmp = out.with_name(f".partial.{out.name}")  # same suffixes: same format
    try:
        if args.control:
            if not args.secret_file:
                print(
                    "edgefleet control export-popularity: --control needs --secret-file",
                    file=sys.stderr,
                )
                return 2
            count = _export_from_control(
                args.control, load_secret(args.secret_file), first, last, fmt, tmp
            )
        else:
            count = _export_from_store(Path(args.store), first, last, tmp)
        os.replace(tmp, out)
    except (ExportError, RecordError, StoreError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        print(f"edgefleet control export-popularity: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: {count} popularity records, {first}..{last}")
    return 0


class ExportError(RuntimeError):
    """Control refused or broke off the export."""


def _export_from_control(
    url: str, secret: bytes, first: str, last: str, fmt: str, tmp: Path
) -> int:
    query = urllib.parse.urlencode({"from": first, "to": last, "format": fmt})
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/popularity?{query}",
        headers={"Authorization": f"Bearer {role_token(secret, 'admin')}"},
    )
    count = 0
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            opener = gzip.open if tmp.name.lower().endswith(".gz") else open
            with opener(tmp, "wb") as fh:
                first_line = True
                for line in response:  # streamed: constant memory for any export
                    fh.write(line)
                    if line.strip() and not (first_line and fmt == "csv"):
                        count += 1
                    first_line = False
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace").strip()
        raise ExportError(f"control answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, http.client.HTTPException) as exc:
        raise ExportError(f"cannot export from control at {url}: {exc}") from None
    return count


def _export_from_store(path: Path, first: str, last: str, tmp: Path) -> int:
    if not path.exists():  # Store would create an empty database there
        raise ExportError(f"{path}: no such store")

    def records(store: Store) -> Iterator[DailyRecord]:
        after = None
        while True:
            rows = store.popularity_page(first, last, after)
            for day, region, cid, n in rows:
                yield DailyRecord(date.fromisoformat(day), region, cid, n)
            if not rows:
                return
            after = rows[-1][:3]

    with Store(path) as store:
        return write_records_file(tmp, "popularity", records(store))


def _check(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if _TOPOLOGY_KEYS & set(data):
        topology = load_topology(path)
        print(f"{path}: ok (topology: {topology.summary()})")
        return 0
    conf = control_config.load(path)
    topology = load_topology(conf.topology)
    load_secret(conf.secret_file)
    print(f"{path}: ok (control config; topology {conf.topology}: {topology.summary()})")
    return 0


def _secret(path: Path) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"edgefleet control secret: {path} exists; not overwriting it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"edgefleet control secret: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(MIN_SECRET_BYTES) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    print(f"{path}: new fleet secret written (mode 0600); share it with steering and appliances")
    return 0
