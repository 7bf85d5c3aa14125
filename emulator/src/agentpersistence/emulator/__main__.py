"""``agentpersistence-emulator --host 127.0.0.1 --port PORT``: AgentCore Memory (data and control
plane) and Bedrock Agent Runtime sessions on one port.

Once listening, it prints exactly one line to stdout,
``agentpersistence-emulator listening on http://HOST:PORT``, and logs (JSON lines) go to
stderr. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from aiohttp import web

from .model import RouteClash
from .server import Emulator, make_app
from .state import Settings, State

log = logging.getLogger("agentpersistence.emulator")

READY_LINE = "agentpersistence-emulator listening on {url}"
# LogRecord attributes that are not extras passed by the caller.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            **{k: v for k, v in vars(record).items() if k not in _STANDARD},
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentpersistence-emulator",
        description=(
            "Serve Amazon Bedrock AgentCore Memory (data and control plane) and Bedrock Agent "
            "Runtime sessions locally."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    p.add_argument("--region", default="us-east-1", help="region in the ARNs it answers")
    p.add_argument("--account", default="123456789012", help="account in the ARNs it answers")
    p.add_argument(
        "--activation-reads",
        type=int,
        default=1,
        metavar="N",
        help="GetMemory calls a new memory answers CREATING to before it is ACTIVE",
    )
    p.add_argument(
        "--session-expiry-seconds",
        type=float,
        default=Settings.session_expiry_seconds,
        metavar="S",
        help="seconds a Bedrock session may go unmodified before it is EXPIRED",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    settings = Settings(
        args.region, args.account, args.activation_reads, args.session_expiry_seconds
    )
    try:
        emulator = Emulator(State(settings))
    except RouteClash as error:
        log.error("the served operations' routes clash", extra={"error": str(error)})
        return 1
    try:
        asyncio.run(_serve(emulator, args.host, args.port))
    except OSError as error:
        log.error("cannot listen", extra={"error": str(error)})
        return 1
    return 0


async def _serve(emulator: Emulator, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(emulator), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        print(READY_LINE.format(url=f"http://{shown}:{bound}"), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
