"""A mutating call retried after its connection dropped is applied once, not twice.

Between the client and a real sidecar (Valkey store and cache) sits a proxy that forwards
frames and, once, cuts a connection: after the sidecar's reply to a chosen request (the
reply is swallowed) or right after forwarding the request. Once it has cut, the proxy can
hold the client's retry until the test has let another client write a newer value; the
retry carries the same request id and must leave that newer value in place. A sidecar
SIGKILLed in between has forgotten what it answered: that limit is shown too, as
documented in docs/reliability.md. The bounds of that memory are shown in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import valkey

from agentpersistence.client import SidecarCache, SidecarStore
from agentpersistence.client.protocol import errors, framing, routes
from agentpersistence.client.protocol import messages as m
from agentpersistence.sidecar.outcomes import Answer, Outcomes, OutcomeSettings
from rig import unix_http
from rig.sidecar import SidecarProcess
from rig.store import store_cache_config
from rig.valkey import ValkeyProcess, command_calls, writes_paused

TIMEOUT = 30.0
"""Each client call's deadline, and the safety net of every wait (events end them sooner)."""

WAITS_FOR_FIRST = "a retried request waits for its first attempt"


@pytest.fixture(scope="module")
def sidecar(valkey_server: ValkeyProcess) -> Iterator[SidecarProcess]:
    """A sidecar whose store and cache live in Valkey, under a prefix of this module's own."""
    config = store_cache_config(
        valkey_server.url, index=None, key_prefix=f"idem-{uuid.uuid4().hex[:8]}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="ap-idem-"))
    process = SidecarProcess(config, workdir, ["--provision"])
    yield process.start()
    process.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Cut:
    """Which request's connection the proxy cuts, and when."""

    route: str
    before_reply: bool = False
    """True: close the client's side once the request is forwarded (the sidecar still runs
    it); False: once the sidecar's reply to it arrives, which is not passed on."""


class CuttingProxy:
    """Forwards frame connections from ``path`` to the sidecar; cuts one per :attr:`plan`."""

    def __init__(self, path: str, upstream: str) -> None:
        self.path = path
        self.upstream = upstream
        self.plan: Cut | None = None
        self.cut = asyncio.Event()
        self.requests: list[tuple[str, str | None]] = []
        """``(route, request id)`` of every request forwarded, in order."""
        self._open = asyncio.Event()
        self._open.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_unix_server(self._connection, path=self.path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.release()
        for writer in self._writers:
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=TIMEOUT)

    def release(self) -> None:
        """Let connections made since the cut through to the sidecar."""
        self._open.set()

    def ids(self, route: str) -> list[str | None]:
        return [rid for name, rid in self.requests if name == route]

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.append(client_w)
        await self._open.wait()
        up_r, up_w = await asyncio.open_unix_connection(self.upstream)
        self._writers.append(up_w)
        swallow: asyncio.Queue[bool] = asyncio.Queue()
        pumps = [
            asyncio.ensure_future(self._requests(client_r, client_w, up_w, swallow)),
            asyncio.ensure_future(self._replies(up_r, client_w, up_w, swallow)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            client_w.close()
            up_w.close()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_w: asyncio.StreamWriter,
        swallow: asyncio.Queue[bool],
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            up_w.write(await reader.readexactly(len(framing.PREFACE)))
            while True:
                header = await reader.readexactly(framing.HEADER.size)
                payload = await reader.readexactly(framing.HEADER.unpack(header)[0])
                route, _, _, request_id = framing.parse_request(payload)
                self.requests.append((route, request_id))
                plan = self.plan if self.plan is not None and self.plan.route == route else None
                if plan is not None:
                    self.plan = None
                swallow.put_nowait(plan is not None and not plan.before_reply)
                up_w.write(header + payload)
                await up_w.drain()
                if plan is not None and plan.before_reply:
                    client_w.close()
                    self.cut.set()
                    await asyncio.Event().wait()  # the sidecar's side stays open

    async def _replies(
        self,
        reader: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_w: asyncio.StreamWriter,
        swallow: asyncio.Queue[bool],
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(framing.HEADER.size)
                payload = await reader.readexactly(framing.HEADER.unpack(header)[0])
                if swallow.get_nowait():
                    self._open.clear()  # hold the retry until the test releases it
                    client_w.close()
                    self.cut.set()
                    return
                if not client_w.is_closing():
                    client_w.write(header + payload)


@pytest.fixture
def clients() -> Iterator[list[SidecarStore | SidecarCache[str]]]:
    """Clients a test opened, closed after it (their pooled sockets with them)."""
    opened: list[SidecarStore | SidecarCache[str]] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
async def proxy(sidecar: SidecarProcess) -> AsyncIterator[CuttingProxy]:
    workdir = tempfile.mkdtemp(prefix="ap-idem-proxy-")  # short: socket paths are limited
    async with CuttingProxy(os.path.join(workdir, "proxy.sock"), sidecar.socket) as running:
        yield running
    shutil.rmtree(workdir, ignore_errors=True)


def _namespace() -> tuple[str, ...]:
    return ("idem", uuid.uuid4().hex[:12])


async def _cut_and_hold(
    proxy: CuttingProxy, call: Callable[[], Awaitable[Any]], route: str
) -> asyncio.Future[Any]:
    """Start ``call`` through the proxy; return once its reply was cut and its retry is held."""
    proxy.plan = Cut(route)
    task = asyncio.ensure_future(call())
    await asyncio.wait_for(proxy.cut.wait(), TIMEOUT)
    return task


def _same_id_twice(proxy: CuttingProxy, route: str) -> str:
    """The request id of the call that was cut, sent again by its retry."""
    first, retry = proxy.ids(route)
    assert first is not None
    assert retry == first
    return first


async def _value(store: SidecarStore, ns: tuple[str, ...]) -> dict[str, Any] | None:
    item = await store.aget(ns, "k")
    return None if item is None else item.value


async def test_a_retried_store_put_leaves_a_newer_value_in_place(
    sidecar: SidecarProcess, proxy: CuttingProxy, clients: list[Any]
) -> None:
    ns = _namespace()
    flaky = SidecarStore(proxy.path, timeout=TIMEOUT)
    clients.append(flaky)
    direct = SidecarStore(sidecar.socket, timeout=TIMEOUT)
    clients.append(direct)
    call = await _cut_and_hold(
        proxy, lambda: flaky.aput(ns, "k", {"v": "first"}), routes.STORE_BATCH.name
    )
    assert await _value(direct, ns) == {"v": "first"}  # the cut put was applied
    await direct.aput(ns, "k", {"v": "newer"})
    proxy.release()
    await asyncio.wait_for(call, TIMEOUT)
    assert await _value(direct, ns) == {"v": "newer"}
    _same_id_twice(proxy, routes.STORE_BATCH.name)
    assert await _value(flaky, ns) == {"v": "newer"}
    assert proxy.requests[-1] == (routes.STORE_BATCH.name, None)  # reads carry no id


async def test_a_retried_cache_set_leaves_a_newer_value_in_place(
    sidecar: SidecarProcess, proxy: CuttingProxy, clients: list[Any]
) -> None:
    key = (_namespace(), "k")
    flaky: SidecarCache[str] = SidecarCache(proxy.path, timeout=TIMEOUT)
    clients.append(flaky)
    direct: SidecarCache[str] = SidecarCache(sidecar.socket, timeout=TIMEOUT)
    clients.append(direct)
    call = await _cut_and_hold(
        proxy, lambda: flaky.aset({key: ("first", None)}), routes.CACHE_SET.name
    )
    assert await direct.aget([key]) == {key: "first"}
    await direct.aset({key: ("newer", None)})
    proxy.release()
    await asyncio.wait_for(call, TIMEOUT)
    assert await direct.aget([key]) == {key: "newer"}
    _same_id_twice(proxy, routes.CACHE_SET.name)


async def test_a_retried_store_delete_leaves_a_newer_value_in_place(
    sidecar: SidecarProcess, proxy: CuttingProxy, clients: list[Any]
) -> None:
    ns = _namespace()
    flaky = SidecarStore(proxy.path, timeout=TIMEOUT)
    clients.append(flaky)
    direct = SidecarStore(sidecar.socket, timeout=TIMEOUT)
    clients.append(direct)
    await direct.aput(ns, "k", {"v": "old"})
    call = await _cut_and_hold(proxy, lambda: flaky.adelete(ns, "k"), routes.STORE_BATCH.name)
    assert await _value(direct, ns) is None  # the cut delete was applied
    await direct.aput(ns, "k", {"v": "newer"})
    proxy.release()
    await asyncio.wait_for(call, TIMEOUT)
    assert await _value(direct, ns) == {"v": "newer"}
    _same_id_twice(proxy, routes.STORE_BATCH.name)


async def test_a_duplicate_arriving_while_the_first_attempt_runs_waits_for_it(
    sidecar: SidecarProcess,
    proxy: CuttingProxy,
    admin: valkey.Valkey,
    clients: list[Any],
) -> None:
    """Valkey holds the sidecar's writes (CLIENT PAUSE WRITE) while the proxy cuts the
    connection before the reply; the client's retry reaches the sidecar with the first
    attempt still running, waits for it, and the put's scripts run once."""
    ns = _namespace()
    flaky = SidecarStore(proxy.path, timeout=TIMEOUT)
    clients.append(flaky)
    direct = SidecarStore(sidecar.socket, timeout=TIMEOUT)
    clients.append(direct)
    before = command_calls(admin).get("evalsha", 0)
    await direct.aput(ns, "calibration", {"v": 0})
    one_put = command_calls(admin)["evalsha"] - before
    before = command_calls(admin)["evalsha"]
    with writes_paused(admin, TIMEOUT):
        proxy.plan = Cut(routes.STORE_BATCH.name, before_reply=True)
        call = asyncio.ensure_future(flaky.aput(ns, "k", {"v": "once"}))
        await asyncio.wait_for(proxy.cut.wait(), TIMEOUT)
        await _log_line(sidecar, WAITS_FOR_FIRST, lambda: proxy.ids(routes.STORE_BATCH.name))
    await asyncio.wait_for(call, TIMEOUT)
    assert command_calls(admin)["evalsha"] - before == one_put
    assert await _value(direct, ns) == {"v": "once"}
    _same_id_twice(proxy, routes.STORE_BATCH.name)


async def _log_line(
    sidecar: SidecarProcess, message: str, ids: Callable[[], list[str | None]]
) -> None:
    """Wait until the sidecar logs ``message`` for the request id the proxy saw first."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        seen = ids()
        for line in sidecar.log().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") == message and seen and entry.get("request_id") == seen[0]:
                    return
        if asyncio.get_running_loop().time() > deadline:
            tail = "\n".join(sidecar.log().splitlines()[-20:])
            pytest.fail(f"the sidecar never logged {message!r} for {seen}; its log ends:\n{tail}")
        await asyncio.sleep(0.05)


async def test_an_old_clients_frame_and_an_http_retry_are_served(
    sidecar: SidecarProcess, clients: list[Any]
) -> None:
    """Frames without a request id (older clients) are served as before; over HTTP the id
    is the ``Idempotency-Key`` header, and a malformed one is a typed refusal."""
    key = (_namespace(), "k")
    direct: SidecarCache[str] = SidecarCache(sidecar.socket, timeout=TIMEOUT)
    clients.append(direct)
    kind, data = direct.serde.dumps_typed("first")
    entry = {"namespace": list(key[0]), "key": key[1], "type": kind, "value": data}
    body = framing.pack({"entries": [entry]})
    headers = {
        routes.PROTOCOL_HEADER: str(routes.PROTOCOL_VERSION),
        "Idempotency-Key": uuid.uuid4().hex,
    }

    def post(extra: dict[str, str]) -> tuple[int, bytes]:
        path = routes.CACHE_SET.path
        return unix_http.request(sidecar.socket, "POST", path, body, {**headers, **extra})

    assert (await asyncio.to_thread(post, {}))[0] == 200
    await direct.aset({key: ("newer", None)})
    assert (await asyncio.to_thread(post, {}))[0] == 200  # the same key again: a retry
    assert await direct.aget([key]) == {key: "newer"}
    status, refusal = await asyncio.to_thread(post, {"Idempotency-Key": "x" * 200})
    assert status == errors.RequestRejected.status
    assert "request id" in framing.unpack(refusal)["message"]

    old = framing.frame([routes.CACHE_SET.name, 5000, {"entries": [entry]}])
    reader, writer = await asyncio.open_unix_connection(sidecar.socket)
    try:
        writer.write(framing.PREFACE + old)
        header = await asyncio.wait_for(reader.readexactly(framing.HEADER.size), TIMEOUT)
        reply = await reader.readexactly(framing.HEADER.unpack(header)[0])
    finally:
        writer.close()
    assert framing.parse_response(reply)[0] == 200
    assert await direct.aget([key]) == {key: "first"}  # no id: applied as sent


async def test_a_retry_reaching_a_restarted_sidecar_is_applied_again(
    sidecar: SidecarProcess, proxy: CuttingProxy, clients: list[Any]
) -> None:
    """The documented limit: the replies are remembered by the sidecar process, so after a
    SIGKILL and restart between the first attempt and its retry the put is applied again,
    and here overwrites the newer value written in between."""
    ns = _namespace()
    flaky = SidecarStore(proxy.path, timeout=TIMEOUT)
    clients.append(flaky)
    call = await _cut_and_hold(
        proxy, lambda: flaky.aput(ns, "k", {"v": "first"}), routes.STORE_BATCH.name
    )
    await asyncio.to_thread(sidecar.kill)
    await asyncio.to_thread(sidecar.start)
    direct = SidecarStore(sidecar.socket, timeout=TIMEOUT)
    clients.append(direct)
    await direct.aput(ns, "k", {"v": "newer"})
    proxy.release()
    await asyncio.wait_for(call, TIMEOUT)
    assert await _value(direct, ns) == {"v": "first"}
    _same_id_twice(proxy, routes.STORE_BATCH.name)


# --- the bounds of the sidecar's memory, in process --------------------------------------


class Applied:
    """A request body that counts how often it was applied."""

    def __init__(self) -> None:
        self.times = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, answer: str, wait: bool = False) -> Answer:
        self.times += 1
        self.started.set()
        if wait:
            await self.release.wait()
        return 200, answer


async def test_replies_are_forgotten_oldest_first_beyond_the_count_and_at_their_age() -> None:
    outcomes = Outcomes(OutcomeSettings(max_count=2))
    apply = Applied()
    for rid in ("a", "b", "c"):
        assert await outcomes.once((None, "cache.set", rid), apply, rid) == (200, rid)
    assert len(outcomes) == 2
    assert await outcomes.once((None, "cache.set", "c"), apply, "again") == (200, "c")
    assert apply.times == 3
    assert await outcomes.once((None, "cache.set", "a"), apply, "again") == (200, "again")
    assert apply.times == 4  # "a" was the oldest: forgotten, so applied again

    expired = Outcomes(OutcomeSettings(max_age_seconds=0.0))
    await expired.once((None, "cache.set", "a"), apply, "first")
    assert await expired.once((None, "cache.set", "a"), apply, "again") == (200, "again")


async def test_replies_are_kept_per_peer_and_route_and_within_their_bytes() -> None:
    outcomes = Outcomes(OutcomeSettings(max_bytes=1000))
    apply = Applied()
    await outcomes.once(("peer-1", "cache.set", "a"), apply, "first")
    assert await outcomes.once(("peer-2", "cache.set", "a"), apply, "other") == (200, "other")
    assert await outcomes.once(("peer-1", "cache.clear", "a"), apply, "other") == (200, "other")
    assert apply.times == 3
    big = m.StoreItem(["ns"], "k", b"x" * 2000, created_at=0.0, updated_at=0.0)

    async def read_back() -> Answer:
        return 200, m.StoreBatchResponse([m.StoreResult(item=big)])

    await outcomes.once(("peer-1", "store.batch", "b"), read_back)
    assert len(outcomes) == 0  # a reply over the byte bound is not kept, nor are the older


async def test_a_retry_of_a_first_attempt_cut_short_is_told_so_and_may_apply_it() -> None:
    outcomes = Outcomes()
    apply = Applied()
    key = (None, "store.batch", "a")
    first = asyncio.ensure_future(outcomes.once(key, apply, "first", True))
    await apply.started.wait()
    retry = asyncio.ensure_future(outcomes.once(key, apply, "retry"))
    await asyncio.sleep(0)  # one turn of the loop: the retry runs up to its wait
    first.cancel()
    status, body = await retry
    assert status == errors.DeadlineExceeded.status
    assert "whether it was applied is unknown" in body["message"]
    assert await outcomes.once(key, apply, "later") == (200, "later")
    assert apply.times == 2


def test_a_frame_with_a_malformed_request_id_is_refused_saying_so() -> None:
    for bad in (7, "", "x" * (framing.MAX_REQUEST_ID + 1), b"raw"):
        payload = framing.pack([routes.CACHE_SET.name, 1000, {"entries": []}, bad])
        with pytest.raises(errors.RequestRejected, match="request id must be a string"):
            framing.parse_request(payload)
    with pytest.raises(errors.RequestRejected, match="optionally followed by a request id"):
        framing.parse_request(framing.pack([routes.CACHE_SET.name, 1000, {}, "id", "extra"]))
    request = framing.request_frame(routes.CACHE_SET.name, 1000, {}, "id-1")
    assert framing.parse_request(request[framing.HEADER.size :])[3] == "id-1"
