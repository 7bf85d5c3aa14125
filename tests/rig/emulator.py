"""The project's AgentCore Memory emulator for tests: ``agentpersistence-emulator`` on loopback.

What it is: the console script this repository ships (``emulator/``), started as users start
it, ``agentpersistence-emulator --host 127.0.0.1 --port 0``, its log (stderr) in a temp
directory. The rig reads the one line it prints once listening for the URL: no polling, no
sleeps. It serves the AgentCore data plane (``bedrock-agentcore``) and control plane
(``bedrock-agentcore-control``) on that URL, checked against botocore's models.
It serves the Bedrock Agent Runtime session operations (``AGENT_RUNTIME``) there too.

What it is not: AWS. See ``emulator/README.md`` for the stand-ins (retrieval, extraction,
activation) and what it does not emulate.

Fixtures: ``agentcore_emulator`` (session) yields an :class:`EmulatorProcess`:
``endpoint_url``; ``env()`` (the standard variables pointing boto3/aiobotocore at it, with
dummy credentials); ``client(service)`` (a boto3 client on it that checks every success
response against the operation's output shape with the emulator's own validator, and
records which operations it saw in ``checked``); ``create_active_memory(name)``.
:func:`start_emulator` starts another one with other arguments.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import OperationModel

from agentpersistence.emulator import wire
from agentpersistence.emulator.model import validate
from rig.aws import local_env
from rig.processes import stop_process
from rig.valkey import LOOPBACK

__all__ = [
    "AGENT_RUNTIME",
    "CONTROL",
    "DATA",
    "EmulatorProcess",
    "agentcore_emulator",
    "conversational",
    "error_of",
    "error_reason",
    "start_emulator",
    "unique_name",
]

DATA = "bedrock-agentcore"
CONTROL = "bedrock-agentcore-control"
AGENT_RUNTIME = "bedrock-agent-runtime"
REGION = "us-east-1"
READY_PREFIX = "agentpersistence-emulator listening on "
START_TIMEOUT_S = 30.0  # loading botocore's models takes ~0.5 s; leave room for a busy machine
STOP_TIMEOUT_S = 10.0
ACTIVATION_CALLS = 20  # GetMemory calls create_active_memory makes before it gives up
LOG_TAIL_LINES = 40


def unique_name(prefix: str = "m") -> str:
    """A memory name no other test uses (the model's Name: letters, digits, ``_``)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def conversational(text: str, role: str = "USER") -> dict[str, Any]:
    """A CreateEvent payload item: one message."""
    return {"conversational": {"content": {"text": text}, "role": role}}


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    """The HTTP status, error code and message of a boto3 ClientError."""
    response: Any = raised.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def error_reason(raised: pytest.ExceptionInfo[ClientError]) -> str | None:
    """A ValidationException's ``reason`` member."""
    response: Any = raised.value.response
    reason: str | None = response.get("reason")
    return reason


def _command() -> list[str]:
    """The console script beside this interpreter (as installed by ``make install``)."""
    script = Path(sys.executable).parent / "agentpersistence-emulator"
    found = str(script) if script.exists() else shutil.which("agentpersistence-emulator")
    if found is None:
        return [sys.executable, "-m", "agentpersistence.emulator"]
    return [found]


@dataclass
class EmulatorProcess:
    workdir: Path
    args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    endpoint_url: str = ""
    checked: Counter[str] = field(default_factory=Counter)
    """How many success responses of each operation the clients checked against its shape."""
    checked_by_service: Counter[tuple[str, str]] = field(default_factory=Counter)
    """The same, by (service, operation): operation names repeat across services."""
    _copier: threading.Thread | None = field(default=None, init=False, repr=False)
    _clients: dict[tuple[str, bool], Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "emulator.log"

    def start(self) -> EmulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [*_command(), "--host", LOOPBACK, "--port", "0", *self.args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        line, rest = _ready_line(self.proc, self.proc.stdout)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(
                f"agentpersistence-emulator did not start (said {line!r}):\n{self.log_tail()}"
            )
        self.endpoint_url = line.removeprefix(READY_PREFIX).strip()
        self._copier = _copy_in_background(rest, self.proc.stdout, self.log_path)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc, STOP_TIMEOUT_S)
        copier, self._copier = self._copier, None
        if copier is not None:
            copier.join(STOP_TIMEOUT_S)  # it closes stdout at the end of file
        elif proc.stdout is not None:
            proc.stdout.close()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return f"({self.log_path} does not exist)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def env(self) -> dict[str, str]:
        """Variables pointing the standard AWS chain (boto3, aiobotocore) at the emulator."""
        return local_env(
            {
                "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": self.endpoint_url,
                "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL": self.endpoint_url,
                "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME": self.endpoint_url,
            }
        )

    def client(self, service: str, *, parameter_validation: bool = True) -> Any:
        """A boto3 client on the emulator, without retries (one per service and setting, made
        once: clients are slow to make). Every success response is read back and validated
        against its output shape; a response that breaks it fails the call with an
        AssertionError. ``parameter_validation=False`` lets a request the model forbids
        reach the server."""
        key = (service, parameter_validation)
        if key not in self._clients:
            self._clients[key] = self._new_client(service, parameter_validation)
        return self._clients[key]

    def _new_client(self, service: str, parameter_validation: bool) -> Any:
        import boto3  # type: ignore[import-untyped]  # untyped (no boto3-stubs); imported late: heavy

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        config = Config(
            parameter_validation=parameter_validation,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        client = session.client(service, endpoint_url=self.endpoint_url, config=config)
        client.meta.events.register("before-parse", self._check_response)
        return client

    def _check_response(
        self, operation_model: OperationModel, response_dict: Mapping[str, Any], **_: object
    ) -> None:
        if response_dict["status_code"] >= 300 or operation_model.output_shape is None:
            return
        output = wire.parse_output(operation_model, response_dict["headers"], response_dict["body"])
        problems = validate(operation_model.output_shape, output)
        if problems:
            raise AssertionError(
                f"{operation_model.name} answered outside its output shape: "
                + "; ".join(map(str, problems))
            )
        self.checked[operation_model.name] += 1
        service = operation_model.service_model.service_name
        self.checked_by_service[(service, operation_model.name)] += 1

    def create_active_memory(
        self, name: str | None = None, strategies: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """A new memory's id, once GetMemory reports it ACTIVE."""
        control = self.client(CONTROL)
        created = control.create_memory(
            name=name or unique_name(),
            eventExpiryDuration=7,
            memoryStrategies=list(strategies or []),
        )
        memory_id: str = created["memory"]["id"]
        for _ in range(ACTIVATION_CALLS):
            if control.get_memory(memoryId=memory_id)["memory"]["status"] == "ACTIVE":
                return memory_id
        raise AssertionError(f"{memory_id} not ACTIVE after {ACTIVATION_CALLS} GetMemory calls")


def _ready_line(proc: subprocess.Popen[bytes], stdout: IO[bytes]) -> tuple[str, bytes]:
    """The first line the process prints (and what followed it), or what it said before it
    exited or the deadline passed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while b"\n" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:  # the process closed stdout: it exited
                proc.wait(STOP_TIMEOUT_S)
                break
            seen += chunk
    line, _, rest = seen.partition(b"\n")
    return line.decode(errors="replace"), rest


def _copy_in_background(first: bytes, stdout: IO[bytes], log_path: Path) -> threading.Thread:
    """Anything else on stdout goes to the log (so the pipe never fills up) until the
    process exits; then the thread closes stdout."""

    def copy() -> None:
        with stdout, log_path.open("ab") as log:
            log.write(first)
            for chunk in iter(lambda: os.read(stdout.fileno(), 4096), b""):
                log.write(chunk)

    thread = threading.Thread(target=copy, name="emulator-stdout", daemon=True)
    thread.start()
    return thread


def start_emulator(workdir: Path, *args: str) -> EmulatorProcess:
    """A new emulator process (stop it yourself)."""
    return EmulatorProcess(workdir, args).start()


@pytest.fixture(scope="session")
def agentcore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the session; tests keep apart by creating their own memories."""
    emulator = start_emulator(tmp_path_factory.mktemp("agentcore-emulator"))
    try:
        yield emulator
    finally:
        emulator.stop()
