"""`edgefleet steering …`: serve, check-config."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from edgefleet import logs
from edgefleet.config import ConfigError
from edgefleet.fleet import AuthError, load_secret
from edgefleet.sdnotify import notify, ping_watchdog
from edgefleet.tasks import spawn
from edgefleet.tokens import Keyring, KeyringError
from steering import config as steering_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgefleet steering", description="The steering API: ranked signed URLs."
    )
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer steering requests from control's snapshot")
    serve.add_argument("--config", "-c", required=True, help="steering TOML file")
    serve.add_argument("--port", type=int, help="override listen.port (0 picks a free port)")
    serve.add_argument("--host", help="override listen.host")

    check = sub.add_parser("check-config", help="validate a config file (and its keys) and exit")
    check.add_argument("config")
    return p


def main(argv: list[str]) -> int:
    """Run one `edgefleet steering` command."""
    args = _parser().parse_args(argv)
    logs.configure()
    overrides: dict[str, object] = {}
    if args.command == "serve":
        for key, value in (("listen.port", args.port), ("listen.host", args.host)):
            if value is not None:
                overrides[key] = value
    try:
        conf = steering_config.load(args.config, overrides)
        keyring = Keyring.load(conf.keyring)
        secret = load_secret(conf.secret_file)
    except (ConfigError, KeyringError, AuthError) as exc:
        print(f"edgefleet steering: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    run = asyncio.run
    if conf.uvloop:
        import uvloop

        run = uvloop.run
    try:
        code: int = run(_serve(conf, keyring, secret))
        return code
    except OSError as exc:
        print(f"edgefleet steering: cannot start: {exc}", file=sys.stderr)
        return 1


async def _serve(conf: steering_config.SteeringConfig, keyring: Keyring, secret: bytes) -> int:
    from aiohttp import web

    from steering.app import make_app, reload_keyring

    runner = web.AppRunner(make_app(conf, keyring, secret), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, conf.listen.host, conf.listen.port, backlog=conf.listen.backlog)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"edgefleet steering: serving on http://{shown}:{port}", flush=True)
        notify("READY=1")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_keyring, runner.app)
        pinger = spawn(ping_watchdog(), name="steering-watchdog")
        await stop.wait()
        pinger.cancel()
        notify("STOPPING=1")
    finally:
        await runner.cleanup()
    return 0
