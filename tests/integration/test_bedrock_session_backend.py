"""The ``bedrock-session`` checkpoint backend against the emulator's Bedrock sessions.

What LangGraph's conformance suite cannot see: pending writes of concurrent tasks, the
calls a latest-checkpoint read costs on short and long threads, that a deleted thread's
session is gone, the seed's way (a session the caller created, its id as thread id), the
KMS key given at CreateSession, and the typed errors for bad input and AWS failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from botocore.exceptions import ClientError
from langgraph.checkpoint.base.id import uuid6

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable, RequestRejected
from agentpersistence.sidecar.settings import ConfigError, parse_config
from rig.bedrock_session import BedrockSessionBackend, bedrock_session_checkpointer, open_backend
from rig.emulator import AGENT_RUNTIME, EmulatorProcess
from rig.valkey import LOOPBACK

pytestmark = pytest.mark.asyncio

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"


def checkpoint(thread: str, cid: str, parent: str | None = None) -> m.CheckpointRecord:
    return m.CheckpointRecord(
        thread_id=thread,
        checkpoint_ns="",
        checkpoint_id=cid,
        parent_checkpoint_id=parent,
        type="bytes",
        checkpoint=cid.encode(),
        metadata=b'{"step": 1}',
    )


async def put_thread(backend: Any, thread: str, count: int) -> list[str]:
    """``count`` checkpoints with LangGraph's time-based ids, each with one write."""
    ids: list[str] = []
    for _ in range(count):
        cid = str(uuid6(clock_seq=-1))
        await backend.put(m.PutRequest(checkpoint(thread, cid, ids[-1] if ids else None)))
        write = m.PendingWrite("task", 0, "ch", "bytes", cid.encode())
        await backend.put_writes(m.PutWritesRequest(thread, "", cid, [write]))
        ids.append(cid)
    return ids


async def test_concurrent_put_writes_of_many_tasks_lose_no_write(
    bedrock_session_backend: BedrockSessionBackend,
) -> None:
    backend = bedrock_session_backend.backend
    [cid] = await put_thread(backend, "concurrent", 1)

    def writes_of(task: int) -> m.PutWritesRequest:
        writes = [
            m.PendingWrite(f"t{task}", i, f"c{i}", "bytes", b"%d.%d" % (task, i)) for i in range(3)
        ]
        return m.PutWritesRequest("concurrent", "", cid, writes)

    requests = [writes_of(task) for task in range(12)]
    await asyncio.gather(*(backend.put_writes(r) for r in requests + requests[:4]))  # + retries
    found = await backend.get_tuple(m.GetTupleRequest("concurrent"))
    assert found is not None
    got = {(w.task_id, w.idx, w.value) for w in found.writes}
    assert got == {(f"t{t}", i, b"%d.%d" % (t, i)) for t in range(12) for i in range(3)} | {
        ("task", 0, cid.encode())
    }
    assert len(found.writes) == len(got)


async def test_latest_checkpoint_costs_the_same_calls_on_a_short_and_a_long_thread(
    bedrock_session_backend: BedrockSessionBackend,
) -> None:
    backend, counter = bedrock_session_backend.backend, bedrock_session_backend.counter
    short = await put_thread(backend, "short", 2)
    long = await put_thread(backend, "long", 60)
    costs = []
    for thread, ids in (("short", short), ("long", long)):
        counter.reset()
        found = await backend.get_tuple(m.GetTupleRequest(thread))
        costs.append(counter.reset())
        assert found is not None
        assert (found.checkpoint_id, found.parent_checkpoint_id) == (ids[-1], ids[-2])
        assert [w.value for w in found.writes] == [ids[-1].encode()]
    assert costs[0] == costs[1] == {"ListInvocationSteps": 2, "GetInvocationStep": 2}


async def test_put_and_put_writes_are_one_call_each_once_warm(
    bedrock_session_backend: BedrockSessionBackend,
) -> None:
    backend, counter = bedrock_session_backend.backend, bedrock_session_backend.counter
    await put_thread(backend, "warm", 1)
    counter.reset()
    await put_thread(backend, "warm", 1)
    assert counter.reset() == {"PutInvocationStep": 2, "CreateInvocation": 1}  # the writes'


async def test_parent_links_are_kept(bedrock_session_backend: BedrockSessionBackend) -> None:
    backend = bedrock_session_backend.backend
    ids = await put_thread(backend, "parents", 3)
    listed = await backend.list(m.ListRequest(thread_id="parents"))
    assert [(r.checkpoint_id, r.parent_checkpoint_id) for r in listed.records] == [
        (ids[2], ids[1]),
        (ids[1], ids[0]),
        (ids[0], None),
    ]


async def test_delete_thread_deletes_its_session(
    bedrock_session_backend: BedrockSessionBackend,
) -> None:
    backend = bedrock_session_backend.backend
    await put_thread(backend, "doomed", 2)
    await put_thread(backend, "kept", 1)
    session = await backend.directory.session_of("doomed", create=False)
    assert session is not None
    await backend.delete_thread("doomed")
    assert await backend.get_tuple(m.GetTupleRequest("doomed")) is None
    assert (await backend.list(m.ListRequest(thread_id="doomed"))).records == []
    assert await backend.get_tuple(m.GetTupleRequest("kept")) is not None
    runtime = bedrock_session_backend.emulator.client(AGENT_RUNTIME)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        runtime.get_session(sessionIdentifier=session)
    ids = await put_thread(backend, "doomed", 1)  # the thread id can be used again
    found = await backend.get_tuple(m.GetTupleRequest("doomed"))
    assert found is not None
    assert found.checkpoint_id == ids[0]


async def test_a_session_the_caller_created_is_the_thread(
    bedrock_session_backend: BedrockSessionBackend,
) -> None:
    backend = bedrock_session_backend.backend
    runtime = bedrock_session_backend.emulator.client(AGENT_RUNTIME)
    session = runtime.create_session()["sessionId"]
    ids = await put_thread(backend, session, 2)
    found = await backend.get_tuple(m.GetTupleRequest(session))
    assert found is not None
    assert found.checkpoint_id == ids[-1]
    steps = runtime.list_invocation_steps(sessionIdentifier=session)["invocationStepSummaries"]
    assert len(steps) >= 4  # 2 checkpoints, 2 writes steps (and the namespace registration)
    assert await backend.directory.session_of(session, create=False) == session


async def test_sessions_the_sidecar_creates_carry_the_kms_key(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = await open_backend(agentcore_emulator, monkeypatch, kms_key_arn=KEY_ARN)
    try:
        await put_thread(opened.backend, "encrypted", 1)
        session = await opened.backend.directory.session_of("encrypted", create=False)
    finally:
        await opened.backend.close()
    assert session is not None
    got = agentcore_emulator.client(AGENT_RUNTIME).get_session(sessionIdentifier=session)
    assert got["encryptionKeyArn"] == KEY_ARN


async def test_the_directory_is_found_again_by_name(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"dir-{uuid6(clock_seq=-1)}"
    first = await open_backend(
        agentcore_emulator, monkeypatch, directory_session_id=None, directory_name=name
    )
    try:
        ids = await put_thread(first.backend, "found-again", 1)
    finally:
        await first.backend.close()
    second = await open_backend(
        agentcore_emulator, monkeypatch, directory_session_id=None, directory_name=name
    )
    try:
        found = await second.backend.get_tuple(m.GetTupleRequest("found-again"))
    finally:
        await second.backend.close()
    assert found is not None
    assert found.checkpoint_id == ids[0]


async def test_bad_settings_are_refused_saying_what_to_use() -> None:
    with pytest.raises(ConfigError, match="kmsKeyArn"):
        parse_config(bedrock_session_checkpointer(kmsKeyArn="my-key"))
    with pytest.raises(ConfigError, match="directorySessionId"):
        parse_config(bedrock_session_checkpointer(directorySessionId="not-a-session"))
    assert parse_config({"checkpointer": {"backend": "bedrock-session"}}).checkpointer is not None


async def test_an_ended_session_is_read_only_with_a_typed_error(
    bedrock_session_backend: BedrockSessionBackend,
) -> None:
    backend = bedrock_session_backend.backend
    runtime = bedrock_session_backend.emulator.client(AGENT_RUNTIME)
    session = runtime.create_session()["sessionId"]
    ids = await put_thread(backend, session, 1)
    runtime.end_session(sessionIdentifier=session)
    with pytest.raises(RequestRejected, match="no longer ACTIVE"):
        await put_thread(backend, session, 1)
    found = await backend.get_tuple(m.GetTupleRequest(session))  # still readable
    assert found is not None
    assert found.checkpoint_id == ids[0]


# --- AWS errors, through a proxy that answers some requests itself ---------------------


class FaultyProxy:
    """Forwards to the emulator, except that it answers the next requests with the errors
    queued in ``faults`` (HTTP status, AWS error code)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[tuple[int, str]] = []
        self.answered = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, 0).start()
        self.url = f"http://{LOOPBACK}:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.faults:
            status, code = self.faults.pop(0)
            self.answered += 1
            return web.json_response(
                {"message": f"{code} from the proxy"},
                status=status,
                headers={"x-amzn-ErrorType": code},
            )
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        url = self.upstream + request.rel_url.raw_path_qs
        async with self._session.request(request.method, url, data=body, headers=headers) as up:
            answer = await up.read()
            response = web.Response(status=up.status, body=answer)
            for name in ("Content-Type", "x-amzn-ErrorType"):
                if name in up.headers:
                    response.headers[name] = up.headers[name]
        return response


@pytest_asyncio.fixture
async def faulty(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FaultyProxy, BedrockSessionBackend]]:
    proxy = FaultyProxy(agentcore_emulator.endpoint_url)
    await proxy.start()
    opened = await open_backend(agentcore_emulator, monkeypatch, max_attempts=3)
    await opened.backend.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", proxy.url)
    await opened.backend.start()  # the same backend, now through the proxy
    opened.backend.calls.client.meta.events.register(
        "before-call.bedrock-agent-runtime", opened.counter
    )
    try:
        yield proxy, opened
    finally:
        await opened.backend.close()
        await proxy.stop()


async def test_throttling_is_retried(faulty: tuple[FaultyProxy, BedrockSessionBackend]) -> None:
    proxy, opened = faulty
    proxy.faults = [(429, "ThrottlingException"), (429, "ThrottlingException")]
    ids = await put_thread(opened.backend, "throttled", 1)
    assert proxy.answered == 2
    assert not proxy.faults
    found = await opened.backend.get_tuple(m.GetTupleRequest("throttled"))
    assert found is not None
    assert found.checkpoint_id == ids[0]


async def test_throttling_beyond_the_retries_and_access_denied_are_typed(
    faulty: tuple[FaultyProxy, BedrockSessionBackend],
) -> None:
    proxy, opened = faulty
    proxy.faults = [(429, "ThrottlingException")] * 3
    with pytest.raises(BackendUnavailable, match="throttling"):
        await opened.backend.get_tuple(m.GetTupleRequest("anything"))
    proxy.faults = [(403, "AccessDeniedException")]
    with pytest.raises(BackendUnavailable, match="refused the credentials"):
        await opened.backend.get_tuple(m.GetTupleRequest("anything-else"))
    proxy.faults = [(403, "AccessDeniedException")]
    health = await opened.backend.health()
    assert not health.ok
    assert "AccessDeniedException" in health.message
