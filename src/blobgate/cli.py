"""The ``blobgate`` command: serve, check-config, explain, version, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blobgate import __version__, explain_client, server
from blobgate.admin import AdminToken
from blobgate.app import check_presign_host, load_keys
from blobgate.auth.keys import TrustedKeys
from blobgate.backends.choice import check_copies
from blobgate.caches.sealing import open_keyring
from blobgate.config import Config, load, tls
from blobgate.errors import ConfigError
from blobgate.ops import logs
from blobgate.ops.db import check_password_files
from blobgate.routing import feeds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blobgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the gateway"),
        ("check-config", "validate a configuration and exit"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, help="YAML file (BLOBGATE_* variables override)")
    explain = commands.add_parser("explain", help="ask a running blobgate what it would "
                                  "answer a blob request, step by step")
    explain_client.add_arguments(explain)
    commands.add_parser("version", help="print the version")
    commands.add_parser("demo", help="run a local demo stack (see blobgate demo --help)")
    return parser


def _checked(cfg: Config) -> TrustedKeys:
    """The token certificates, after every file and setting start-up needs is checked."""
    keys = load_keys(cfg)
    check_presign_host(cfg)
    tls.check_files(cfg)
    check_password_files(cfg)
    check_copies(cfg.storage)
    if cfg.admin.enabled:
        AdminToken.from_config(cfg.admin)  # a token file that holds no token stops start-up
    if cfg.redis.enabled:
        open_keyring(cfg.redis)  # the MAC key files are readable and long enough
    return keys


def _serve(cfg: Config) -> int:
    logs.configure(cfg.log.level)
    return server.serve(cfg, _checked(cfg))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:  # the demo parses its own options
        from blobgate.devstack.demo import main as demo_main

        return demo_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"blobgate {__version__}")
        return 0
    if args.command == "explain":
        return explain_client.run(args)
    try:
        cfg = load(args.config)
        if args.command == "check-config":
            _checked(cfg)
            feeds.check(cfg.routing)  # at start-up, a feed that cannot be read matches nobody
            print("configuration OK")
            return 0
        return _serve(cfg)
    except ConfigError as exc:
        print(f"blobgate: configuration error: {exc}", file=sys.stderr)
        return 2
