"""``agentpersistence-sidecar --socket PATH --config FILE [--provision]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from agentpersistence.client.protocol.errors import SidecarError

from . import eventloop, logs
from .peers import PeerPolicy
from .server import ServerSettings
from .service import serve
from .settings import ConfigError, load_config

log = logging.getLogger("agentpersistence.sidecar")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentpersistence-sidecar",
        description="Serve LangGraph persistence to agents over a unix socket.",
    )
    p.add_argument("--socket", required=True, type=Path, help="unix socket path to serve on")
    p.add_argument("--config", required=True, type=Path, help="YAML or JSON config file")
    p.add_argument(
        "--provision",
        action="store_true",
        help="create missing tables, buckets and indexes first (local development)",
    )
    p.add_argument("--max-body-bytes", type=int, default=ServerSettings.max_body_bytes)
    p.add_argument(
        "--max-response-bytes",
        type=int,
        default=ServerSettings.max_response_bytes,
        help="largest reply sent; a larger one is answered with payload_too_large",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=ServerSettings.shutdown_grace_seconds,
        help="seconds SIGTERM waits for in-flight requests",
    )
    p.add_argument("--probe-port", type=int, default=None, help="TCP port for health and metrics")
    p.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        metavar="UID",
        help="admit only connections from this uid (repeatable; with --allow-gid, either "
        "admits); default: whoever the socket's mode admits",
    )
    p.add_argument(
        "--allow-gid", type=int, action="append", metavar="GID", help="admit this gid too"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("invalid configuration", extra={"error": str(exc)})
        return 2
    settings = ServerSettings(
        socket_path=args.socket,
        max_body_bytes=args.max_body_bytes,
        max_response_bytes=args.max_response_bytes,
        shutdown_grace_seconds=args.shutdown_grace,
        probe_port=args.probe_port,
        peers=PeerPolicy.of(args.allow_uid, args.allow_gid),
    )
    try:
        with asyncio.Runner(loop_factory=eventloop.new_event_loop) as runner:
            runner.run(serve(config, settings, provision=args.provision))
    except SidecarError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
