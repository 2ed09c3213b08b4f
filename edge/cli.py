"""`edgefleet edge …`: serve, init, import, sign, keygen, check-config."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge import config as edge_config
from edgefleet import logs
from edgefleet.config import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet edge", description="The edge appliance server.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve indexed files over HTTP")
    serve.add_argument("--config", "-c", required=True, help="edge TOML file")
    serve.add_argument("--port", type=int, help="override listen.port (0 picks a free port)")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--workers", type=int, help="override workers (0: one per core)")

    init = sub.add_parser(
        "init", help="prepare a new appliance: an empty index and every disk marked as ours"
    )
    init.add_argument("--config", "-c", required=True)

    imp = sub.add_parser("import", help="copy a directory of files onto the disks and index them")
    imp.add_argument("directory")
    imp.add_argument("--config", "-c", required=True)
    imp.add_argument("--reserve-bytes", type=int, default=0, help="keep this much free per disk")

    sign = sub.add_parser("sign", help="print a signed URL for a content id")
    sign.add_argument("content_id")
    sign.add_argument("--config", "-c", required=True)
    sign.add_argument("--base-url", default=None, help="default: http://<listen.host>:<port>")
    sign.add_argument("--ttl", type=int, default=3600, help="seconds the URL stays valid")
    sign.add_argument("--client-ip", help="bind the token to this client address")
    sign.add_argument("--prefix-len", type=int, help="bind to the client's network of this length")
    sign.add_argument("--range", metavar="FIRST-LAST", help="use the /range/FIRST-LAST path form")

    keygen = sub.add_parser("keygen", help="write a new keyring file with one random key")
    keygen.add_argument("path")
    keygen.add_argument("--key-id", default=None, help="default: k<unix time>")
    keygen.add_argument(
        "--add",
        action="store_true",
        help="add a key to an existing keyring and make it current (key rotation)",
    )

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    return p


def main(argv: list[str]) -> int:
    """Run one `edgefleet edge` command."""
    args = _parser().parse_args(argv)
    logs.configure()
    try:
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "check-config":
            edge_config.load(args.config)
            print(f"{args.config}: ok")
            return 0
        overrides = {}
        if args.command == "serve":
            for key, value in (
                ("listen.port", args.port),
                ("listen.host", args.host),
                ("workers", args.workers),
            ):
                if value is not None:
                    overrides[key] = value
        conf = edge_config.load(args.config, overrides)
        if args.command == "serve":
            return _serve(conf)
        if args.command == "import":
            return _import(conf, args)
        if args.command == "init":
            return _init(conf)
        if args.command == "sign":
            return _sign(conf, args)
    except ConfigError as exc:
        print(f"edgefleet edge: config error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)  # pragma: no cover


def _serve(conf: edge_config.EdgeConfig) -> int:
    from edge.supervisor import StartupError, Supervisor

    try:
        return Supervisor(conf).run()
    except StartupError as exc:
        print(f"edgefleet edge: cannot start: {exc}", file=sys.stderr)
        return 1


def _init(conf: edge_config.EdgeConfig) -> int:
    """An appliance that starts empty (and is filled by `edgefleet fill run`): create its index
    and give each disk its id file. Idempotent: what exists is kept as it is."""
    from edge.disks import DiskError, open_disk
    from edge.index import ContentIndex, IndexUnavailable

    try:
        disks = [open_disk(root, create=True) for root in conf.disks]
        index = ContentIndex(conf.index)
        try:
            files, total = index.stats()
        finally:
            index.close()
    except (IndexUnavailable, DiskError) as exc:
        print(f"edgefleet edge init: {exc}", file=sys.stderr)
        return 1
    print(
        f"index {conf.index}: {files} files ({total:,} bytes); disks: "
        + ", ".join(f"{d.root} ({d.disk_id})" for d in disks)
    )
    return 0


def _import(conf: edge_config.EdgeConfig, args: argparse.Namespace) -> int:
    from edge.disks import DiskError, open_disk
    from edge.importer import ImportFailed, import_directory
    from edge.index import ContentIndex

    try:
        disks = [open_disk(root, create=True) for root in conf.disks]
        index = ContentIndex(conf.index)
        try:
            records = import_directory(
                args.directory, index, disks, reserve_bytes=args.reserve_bytes
            )
            files, total = index.stats()
        finally:
            index.close()
    except (ImportFailed, DiskError) as exc:
        print(f"edgefleet edge import: {exc}", file=sys.stderr)
        return 1
    size = sum(r.size for r in records)
    print(
        f"imported {len(records)} files ({size:,} bytes); index now holds {files} files "
        f"({total:,} bytes)"
    )
    return 0


def _sign(conf: edge_config.EdgeConfig, args: argparse.Namespace) -> int:
    from edgefleet.models import is_content_id
    from edgefleet.tokens import Keyring, KeyringError, signed_query

    if not is_content_id(args.content_id):
        print(f"edgefleet edge sign: invalid content id {args.content_id!r}", file=sys.stderr)
        return 2
    try:
        keyring = Keyring.load(conf.tokens.keyring)
    except KeyringError as exc:
        print(f"edgefleet edge sign: {exc}", file=sys.stderr)
        return 1
    base = args.base_url or f"http://{conf.listen.host}:{conf.listen.port}"
    path = f"/c/{args.content_id}" + (f"/range/{args.range}" if args.range else "")
    query = signed_query(
        keyring, args.content_id, int(time.time()) + args.ttl, args.client_ip, args.prefix_len
    )
    print(f"{base.rstrip('/')}{path}?{query}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from edgefleet.tokens import Keyring, KeyringError, new_key

    path = Path(args.path)
    key_id = args.key_id or f"k{int(time.time())}"
    keys: dict[str, bytes] = {}
    if args.add:
        try:
            keys = dict(Keyring.load(path).keys)
        except KeyringError as exc:
            print(f"edgefleet edge keygen: {exc}", file=sys.stderr)
            return 1
    elif path.exists():
        print(f"edgefleet edge keygen: {path} exists (use --add to rotate)", file=sys.stderr)
        return 1
    keys[key_id] = bytes.fromhex(new_key())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(Keyring(keys=keys, current=key_id).dumps())
    tmp.chmod(0o600)
    tmp.replace(path)
    print(f"{path}: current key is now '{key_id}' ({len(keys)} key(s))")
    return 0
