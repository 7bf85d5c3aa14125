"""A SIGKILLed sidecar loses nothing it acknowledged and leaves nothing torn.

32 clients (OS threads, a sync ``SidecarSaver`` each) each write one LangGraph thread: a
chain of checkpoints (parent links) with two ``put_writes`` calls between puts, payloads of
1-8 KB, half of them incompressible (on DynamoDB, those over 6 KB go to S3). Once the
clients have had a number of operations acknowledged, the sidecar is SIGKILLed under that
load and a new process is started on the same socket with the same config. Then, for every
thread:

- every acknowledged checkpoint and pending write reads back whole, equal to what was sent
  (payloads carry their own SHA-256, and the checkpoint's digest is in its metadata too);
- nothing is stored that was not acknowledged or in flight at the kill, and a ``put_writes``
  left nothing partial (all of its writes or none, in flight or not);
- the latest checkpoint is the last acknowledged one or the one in flight;
- ``list`` agrees with ``get_tuple``: its first item is ``get_tuple(thread)``, and every
  listed checkpoint reads back by id as listed.

The clients send with :class:`OneAttempt`, a transport that never re-sends a request (the
saver's own transport retries a failed call on a new connection, which would complete a
request in flight at the kill against the new sidecar and hide what the kill left). Every
wait is for an event: the acknowledged count, the sidecar's exit, the new socket, the
clients' exits.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
)
from langgraph.checkpoint.base.id import uuid6

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import framing
from agentpersistence.client.protocol.errors import error_for
from agentpersistence.client.protocol.messages import decode
from agentpersistence.client.protocol.routes import Route
from rig.dynamodb import SIDECAR_BUCKET, SIDECAR_TABLE, AwsEndpoints, dynamodb_checkpointer
from rig.sidecar import SidecarProcess, valkey_checkpointer
from rig.valkey import ValkeyProcess

Req = TypeVar("Req")
Resp = TypeVar("Resp")

CLIENTS = 32
CALLS_PER_STEP = 2
"""``put_writes`` calls after each put (a task each), before the next put."""
WRITES_PER_CALL = 3
PAYLOAD_BYTES = (1024, 8192)
"""Sizes of checkpoint blobs and write values; half random (incompressible), half text."""
OFFLOAD_BYTES = 6144
"""The DynamoDB backend's S3 threshold here: the larger payloads go to S3."""
CALL_TIMEOUT_S = 60.0
"""A safety net only: no call should come near it."""
LOAD_TIMEOUT_S = 120.0
"""A safety net only: how long the clients may take to reach the kill threshold."""


# --- what was sent -------------------------------------------------------------------------


Op = tuple[str, str]
"""``(checkpoint_id, "")`` for a put, ``(checkpoint_id, task_id)`` for a put_writes."""


@dataclass
class SentCheckpoint:
    checkpoint: Checkpoint
    metadata: dict[str, Any]
    parent_id: str | None


@dataclass
class Ledger:
    """One client's thread: everything sent, what was acknowledged, what was in flight."""

    thread_id: str
    checkpoints: dict[str, SentCheckpoint] = field(default_factory=dict)
    writes: dict[Op, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    acknowledged: list[Op] = field(default_factory=list)
    in_flight: Op | None = None
    failure: BaseException | None = None
    """An error before the kill (a defect: nothing should fail under load)."""

    @property
    def acknowledged_puts(self) -> list[str]:
        return [cid for cid, task in self.acknowledged if not task]


@dataclass
class Acknowledgements:
    """The clients' shared count; ``reached`` is set once it passes ``threshold``, or
    once every client has stopped (an error under load) without it."""

    threshold: int
    clients: int
    count: int = 0
    stopped: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.threshold:
                self.reached.set()

    def stop(self) -> None:
        with self.lock:
            self.stopped += 1
            if self.stopped == self.clients:
                self.reached.set()


def _payload(rng: random.Random) -> dict[str, Any]:
    size = rng.randint(*PAYLOAD_BYTES)
    if rng.random() < 0.5:
        blob = rng.randbytes(size)
    else:
        blob = (f"{rng.random()} tokens of a conversation " * (size // 32 + 1)).encode()[:size]
    return {"blob": blob, "sha256": hashlib.sha256(blob).hexdigest()}


def _config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


# --- the clients ---------------------------------------------------------------------------


class OneAttempt:
    """A transport that sends each request once, on the client's own connection, and
    raises on any failure instead of retrying: a call cut by the kill fails at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None

    def call(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        frame = framing.request_frame(route.name, int(timeout * 1000), request)
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(self.path)
            frame = framing.PREFACE + frame
        self.sock.sendall(frame)
        status, body = framing.parse_response(self._receive(self.sock))
        if status != 200:
            raise error_for(status, body)
        return decode(route.response, body)

    @staticmethod
    def _receive(sock: socket.socket) -> bytes:
        header = _receive_exactly(sock, framing.HEADER.size)
        (length,) = framing.HEADER.unpack(header)
        return _receive_exactly(sock, length)

    async def acall(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        raise NotImplementedError("the clients of this test are sync")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the sidecar closed the connection")
        data += chunk
    return bytes(data)


class Client:
    """Writes a chain of checkpoints with pending writes until a call fails."""

    def __init__(self, index: int, sidecar: SidecarProcess, killed: threading.Event) -> None:
        self.index = index
        self.ledger = Ledger(f"crash-{uuid.uuid4()}")
        self.killed = killed
        self.rng = random.Random(self.ledger.thread_id)
        self.saver = SidecarSaver(timeout=CALL_TIMEOUT_S, transport=OneAttempt(sidecar.socket))

    def run(self, acks: Acknowledgements) -> None:
        parent: str | None = None
        step = 0
        try:
            while True:
                checkpoint_id = self._put(parent, step)
                if checkpoint_id is None:
                    return
                acks.add()
                for call in range(CALLS_PER_STEP):
                    if not self._put_writes(checkpoint_id, f"task-{step}-{call}"):
                        return
                    acks.add()
                parent, step = checkpoint_id, step + 1
        finally:
            self.saver.close()
            acks.stop()

    def _put(self, parent: str | None, step: int) -> str | None:
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=step))
        payload = _payload(self.rng)
        checkpoint["channel_values"] = {"payload": payload}
        checkpoint["channel_versions"] = {"payload": step + 1}
        metadata = {"source": "loop", "step": step, "parents": {}, "sha256": payload["sha256"]}
        typed = cast(CheckpointMetadata, metadata)  # with a key of its own: the digest
        cid = checkpoint["id"]
        self.ledger.checkpoints[cid] = SentCheckpoint(checkpoint, metadata, parent)
        config = _config(self.ledger.thread_id, parent)
        sent = self._attempt((cid, ""), lambda: self.saver.put(config, checkpoint, typed, {}))
        return cid if sent else None

    def _put_writes(self, checkpoint_id: str, task_id: str) -> bool:
        writes = [(f"channel-{i}", _payload(self.rng)) for i in range(WRITES_PER_CALL)]
        self.ledger.writes[(checkpoint_id, task_id)] = writes
        config = _config(self.ledger.thread_id, checkpoint_id)
        return self._attempt(
            (checkpoint_id, task_id), lambda: self.saver.put_writes(config, writes, task_id)
        )

    def _attempt(self, op: Op, send: Callable[[], object]) -> bool:
        """Send one operation; whether it was acknowledged. Any error ends the client: after
        the kill the operation counts as in flight, before it as a failure of the test."""
        if self.killed.is_set():
            return False
        self.ledger.in_flight = op
        try:
            send()
        except Exception as exc:
            if not self.killed.is_set():
                self.ledger.failure = exc
            return False
        self.ledger.in_flight = None
        self.ledger.acknowledged.append(op)
        return True


# --- the backends --------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    config: dict[str, Any]
    kill_after: int
    """Acknowledged operations before the kill: a few seconds of load on 2 cores."""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(params=["valkey", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "valkey":
        valkey: ValkeyProcess = request.getfixturevalue("valkey_server")
        return Backend(valkey_checkpointer(valkey.url), kill_after=4500)
    aws: AwsEndpoints = request.getfixturevalue("aws_endpoints")
    offload = {"bucketName": SIDECAR_BUCKET, "thresholdBytes": OFFLOAD_BYTES}
    config = dynamodb_checkpointer(SIDECAR_TABLE, s3Offload=offload)
    return Backend(config, kill_after=320, args=("--provision",), env=aws.env())


# --- the test ------------------------------------------------------------------------------


def test_a_killed_sidecar_keeps_what_it_acknowledged_and_tears_nothing(
    backend: Backend, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(backend.config, *backend.args, env=backend.env)
    killed = threading.Event()
    acks = Acknowledgements(backend.kill_after, CLIENTS)
    clients = [Client(i, sidecar, killed) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, args=(acks,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()

    assert acks.reached.wait(LOAD_TIMEOUT_S), "the load stalled"
    assert not _failures(clients), _failures(clients)
    killed.set()
    acknowledged_at_kill = acks.count
    sidecar.kill()
    for thread in threads:
        thread.join(LOAD_TIMEOUT_S)
        assert not thread.is_alive(), "a client did not stop after the kill"
    assert not _failures(clients), _failures(clients)

    sidecar.start()  # a new process, the same socket and config
    ledgers = [c.ledger for c in clients]
    with ThreadPoolExecutor(8) as pool:
        verified = list(pool.map(_verify, [sidecar.socket] * CLIENTS, ledgers))
    problems = [problem for verifier in verified for problem in verifier.found]
    in_flight = sum(1 for ledger in ledgers if ledger.in_flight is not None)
    print(
        f"{CLIENTS} clients, {acknowledged_at_kill} operations acknowledged at the kill, "
        f"{sum(len(ledger.acknowledged) for ledger in ledgers)} in all, {in_flight} in flight, "
        f"{sum(verifier.landed for verifier in verified)} of them stored"
    )
    assert not problems, "\n".join(problems[:40])


def _failures(clients: list[Client]) -> str:
    return "\n".join(
        f"client {c.index}: {c.ledger.failure!r}" for c in clients if c.ledger.failure is not None
    )


# --- verification --------------------------------------------------------------------------


def _verify(socket_path: str, ledger: Ledger) -> Verifier:
    with SidecarSaver(socket_path, timeout=CALL_TIMEOUT_S) as saver:
        verifier = Verifier(saver, ledger)
        try:
            verifier.check()
        except Exception as exc:  # e.g. a checkpoint whose payload object is missing
            verifier.problem(f"reading it back failed: {exc!r}")
        return verifier


class Verifier:
    def __init__(self, saver: SidecarSaver, ledger: Ledger) -> None:
        self.saver = saver
        self.ledger = ledger
        self.found: list[str] = []
        """The problems found."""
        self.landed = False
        """Whether the operation in flight at the kill was stored."""

    def problem(self, message: str) -> None:
        self.found.append(f"thread {self.ledger.thread_id}: {message}")

    def check(self) -> None:
        ledger = self.ledger
        listed = list(self.saver.list(_config(ledger.thread_id)))
        ids = [_id(t) for t in listed]
        if ids != sorted(ids, reverse=True) or len(set(ids)) != len(ids):
            self.problem(f"list is not newest first without repeats: {ids}")
        acknowledged = ledger.acknowledged_puts
        in_flight = ledger.in_flight[0] if ledger.in_flight and not ledger.in_flight[1] else None
        for cid in sorted(set(acknowledged) - set(ids)):
            self.problem(f"acknowledged checkpoint {cid} is gone")
        self.landed = in_flight in ids
        for cid in sorted(set(ids) - set(acknowledged) - {in_flight}):
            self.problem(f"checkpoint {cid} was neither acknowledged nor in flight")
        self._check_latest(listed, acknowledged, in_flight)
        for item in listed:
            self._check_record(item)
            self._check_reads_back(item)

    def _check_latest(
        self, listed: list[CheckpointTuple], acknowledged: list[str], in_flight: str | None
    ) -> None:
        latest = self.saver.get_tuple(_config(self.ledger.thread_id))
        allowed = set(acknowledged[-1:]) | ({in_flight} if in_flight is not None else set())
        if latest is None:
            if acknowledged:
                self.problem("get_tuple finds no checkpoint")
            return
        if _id(latest) not in allowed:
            self.problem(f"the latest is {_id(latest)}, expected one of {sorted(allowed)}")
        if not listed or listed[0] != latest:
            self.problem("list's first item is not get_tuple's latest")

    def _check_reads_back(self, item: CheckpointTuple) -> None:
        again = self.saver.get_tuple(item.config)
        if again != item:
            self.problem(f"checkpoint {_id(item)} reads back differently from its listing")

    def _check_record(self, item: CheckpointTuple) -> None:
        cid = _id(item)
        sent = self.ledger.checkpoints.get(cid)
        if sent is None:
            return  # reported: neither acknowledged nor in flight
        if item.checkpoint != sent.checkpoint:
            self.problem(f"checkpoint {cid} differs from what was sent")
        payload = item.checkpoint["channel_values"].get("payload", {})
        if not _whole(payload) or item.metadata.get("sha256") != payload.get("sha256"):
            self.problem(f"checkpoint {cid} and its metadata do not match")
        if {k: item.metadata.get(k) for k in sent.metadata} != sent.metadata:
            self.problem(f"checkpoint {cid}'s metadata differs from what was sent")
        parent = item.parent_config["configurable"]["checkpoint_id"] if item.parent_config else None
        if parent != sent.parent_id:
            self.problem(f"checkpoint {cid}'s parent is {parent}, sent {sent.parent_id}")
        self._check_writes(cid, item.pending_writes or [])

    def _check_writes(self, cid: str, pending: list[tuple[str, str, Any]]) -> None:
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task_id, channel, value in pending:
            by_task.setdefault(task_id, []).append((channel, value))
        ledger = self.ledger
        acknowledged = {op for op in ledger.acknowledged if op[0] == cid and op[1]}
        for _, task_id in sorted(acknowledged - {(cid, t) for t in by_task}):
            self.problem(f"acknowledged writes of {task_id} on {cid} are gone")
        for task_id, stored in sorted(by_task.items()):
            op = (cid, task_id)
            self.landed |= op == ledger.in_flight
            if op not in acknowledged and op != ledger.in_flight:
                self.problem(
                    f"writes of {task_id} on {cid} were neither acknowledged nor in flight"
                )
            elif stored != ledger.writes[op]:
                whole = all(_whole(value) for _, value in stored)
                self.problem(
                    f"writes of {task_id} on {cid} differ from what was sent: {len(stored)} "
                    f"of {len(ledger.writes[op])} stored, {'whole' if whole else 'torn'} values"
                )


def _id(item: CheckpointTuple) -> str:
    checkpoint_id: str = item.config["configurable"]["checkpoint_id"]
    return checkpoint_id


def _whole(value: Any) -> bool:
    """Whether a payload's bytes match the SHA-256 it carries."""
    if not isinstance(value, dict) or not isinstance(value.get("blob"), bytes):
        return False
    return hashlib.sha256(value["blob"]).hexdigest() == value.get("sha256")
