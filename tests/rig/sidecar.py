"""Sidecar processes for tests: the real ``agentpersistence-sidecar`` on a temp socket.

``SidecarProcess`` starts the sidecar as a subprocess of this interpreter, waits for its
socket to appear (which the sidecar promises happens only once it is ready), and can be
stopped with SIGTERM, or killed with SIGKILL (:meth:`SidecarProcess.kill`), and started again
on the same socket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

START_TIMEOUT = 20.0


@dataclass
class SidecarProcess:
    config: dict[str, Any]
    workdir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.workdir / "sidecar.sock")

    @property
    def log_path(self) -> Path:
        return self.workdir / "sidecar.log"

    def start(self) -> SidecarProcess:
        stale = _socket_identity(self.socket)  # what a killed sidecar left, if anything
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        cmd = [
            sys.executable,
            "-m",
            "agentpersistence.sidecar",
            "--socket",
            self.socket,
            "--config",
            str(config_path),
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, **self.env})
        log.close()
        self._wait_for_socket(stale)
        return self

    def _wait_for_socket(self, stale: tuple[int, int] | None) -> None:
        """Wait for a socket file other than ``stale`` (the sidecar replaces the path
        atomically once it listens, so a killed sidecar's file never counts as ready)."""
        deadline = time.monotonic() + START_TIMEOUT
        while _socket_identity(self.socket) in (None, stale):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sidecar not ready in {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> int | None:
        """SIGKILL the sidecar and wait for its exit: no shutdown path runs, and its socket
        file stays behind, as on a pod's volume; :meth:`start` serves the same path again."""
        return self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def _socket_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, None if there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def valkey_checkpointer(url: str, **settings: Any) -> dict[str, Any]:
    return {"checkpointer": {"backend": "valkey", "valkey": {"url": url, **settings}}}


MEMORY_CONFIG: dict[str, Any] = {"checkpointer": {"backend": "memory"}}


@pytest.fixture
def sidecar_factory() -> Iterator[Any]:
    """Start sidecars with a given config; all are stopped at the end of the test."""
    started: list[SidecarProcess] = []

    def start(
        config: dict[str, Any], *extra_args: str, env: dict[str, str] | None = None
    ) -> SidecarProcess:
        workdir = Path(tempfile.mkdtemp(prefix="ap-sidecar-"))
        sidecar = SidecarProcess(config, workdir, list(extra_args), env or {})
        started.append(sidecar)
        return sidecar.start()

    yield start
    for sidecar in started:
        sidecar.stop()


@pytest.fixture(scope="session")
def memory_sidecar() -> Iterator[SidecarProcess]:
    sidecar = SidecarProcess(MEMORY_CONFIG, Path(tempfile.mkdtemp(prefix="ap-sidecar-")))
    yield sidecar.start()
    sidecar.stop()


@pytest.fixture(scope="session")
def valkey_sidecar(valkey_server: Any) -> Iterator[SidecarProcess]:
    sidecar = SidecarProcess(
        valkey_checkpointer(valkey_server.url), Path(tempfile.mkdtemp(prefix="ap-sidecar-"))
    )
    yield sidecar.start()
    sidecar.stop()


SIDECAR_FIXTURES = {
    "memory": "memory_sidecar",
    "valkey": "valkey_sidecar",
    "dynamodb": "dynamodb_sidecar",  # tests/rig/dynamodb.py
    "agentcore-memory": "agentcore_sidecar",  # tests/rig/agentcore.py
    "agentcore-valkey": "agentcore_valkey_sidecar",  # tests/rig/agentcore_valkey.py
    "bedrock-session": "bedrock_session_sidecar",  # tests/rig/bedrock_session.py
}


@pytest.fixture(params=list(SIDECAR_FIXTURES))
def any_sidecar(request: pytest.FixtureRequest) -> SidecarProcess:
    """The same test against each checkpoint backend, over a real socket."""
    sidecar: SidecarProcess = request.getfixturevalue(SIDECAR_FIXTURES[request.param])
    return sidecar
