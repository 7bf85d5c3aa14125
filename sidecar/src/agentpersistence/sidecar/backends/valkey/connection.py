"""The connection to Valkey: batches of commands sent in one round trip, scripts called by
SHA (reloaded when the server lost them), and every valkey-py error translated.

Two clients, one per kind of use:

- The hot path, :meth:`Connection.run` (every backend call), goes through :class:`.resp.Link`
  on a standalone server: one multiplexed connection speaking RESP2 directly, about a
  third of valkey-py's cost per round trip. Its replies are raw RESP2 (see :mod:`.resp` for
  the audit of what valkey-py would have converted; no caller reads those).
- valkey-py's client serves the rest: detecting cluster mode (``INFO cluster``),
  ``SCRIPT LOAD``, :meth:`Connection.ask` (``FT.*`` and other commands whose error replies
  the caller interprets) and :meth:`Connection.call` (code shared with the operator). A
  server with cluster mode enabled is spoken to entirely with valkey-py's cluster client:
  each batch then goes to every node it concerns in parallel (all keys of one thread live in
  one slot, so each thread's script still runs on one node). While a slot moves, commands
  on it are refused and sent again until it has moved (:func:`fence`).

Both clients authenticate each new connection with a login from the same :mod:`.credentials`
source (the settings' ``passwordFile`` or ``iamAuth``, else the URL's password, or what the
caller passes as ``credentials=``): the user and password of the URL never reach valkey-py.

Nothing outside this module touches either client, so the error mapping of :mod:`.errors`
applies to every call the backend makes (a credentials source that cannot give a login
raises its own :class:`.credentials.CredentialsUnavailable`). The checkpoint, store and cache
backends each open their own ``Connection`` with their own settings and scripts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from valkey import exceptions as vx
from valkey.asyncio import BlockingConnectionPool, Valkey
from valkey.asyncio.cluster import ValkeyCluster
from valkey.asyncio.connection import SSLConnection, parse_url

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import SidecarError

from ...settings import ValkeyConnectionSettings
from . import credentials as cr
from . import errors, resp, scripts

Arg = resp.Arg
Command = resp.Command
Client = Valkey | ValkeyCluster
T = TypeVar("T")

_FAILURES = (vx.ValkeyError, vx.ValkeyClusterException, OSError, asyncio.TimeoutError)
RESHARD_PAUSE_S, RESHARD_PAUSE_MAX_S = 0.005, 0.1
"""The first and the longest pause before sending again commands refused by a moving slot."""
_UNSENT = object()
"""The reply of a command not sent yet."""


def _moving(reply: object) -> bool:
    """Whether ``reply`` refuses a command because a slot it touches is being moved:
    ``TRYAGAIN``, ``ASK``/``MOVED`` left over, or valkey-py's ``TTL exhausted`` after
    following redirections (its only plain ``ClusterError``)."""
    moving = isinstance(reply, vx.TryAgainError | vx.AskError) or type(reply) is vx.ClusterError
    return moving or reply is _UNSENT


log = logging.getLogger("agentpersistence.sidecar.valkey")


def evalsha(script: scripts.Script, keys: Sequence[str], args: Sequence[Arg]) -> Command:
    """The command that runs ``script`` (loaded by :meth:`Connection.open`).

    The keys declared are ``keys`` and then a :func:`fence` of the first one (scripts read
    only ``KEYS[1..#keys]``): on a cluster, it keeps the script off a slot being moved.
    """
    fenced = [*keys, *fence(keys[0])] if keys else []
    return ("EVALSHA", script.sha, len(fenced), *fenced, *args)


FENCE = ":slot-fence"
"""The end of fence keys' names (after a key's hash tag); nothing writes such a key."""


def fence(key: str) -> list[str]:
    """A key in ``key``'s cluster slot that never exists: ``key`` up to its hash tag, then
    :data:`FENCE` (so it stays under the key prefix an ACL user is given); none if ``key``
    has no hash tag (no such key's script spans a thread, a store or a namespace).

    A script reaches more keys than it declares (a thread's checkpoints, a store's items),
    and a slot moves one ``MIGRATE`` at a time: run on either node mid-move, a script would
    see half of its keys and write beside the other half. Declaring a second key that never
    exists stops that: while the slot is ``MIGRATING`` its source answers ``ASK`` (every
    declared key missing) and its target ``TRYAGAIN`` (several declared keys, some missing),
    so the script waits until the slot has moved whole (:meth:`Connection.run` sends it
    again). On a stable slot, and on a standalone server, the extra key changes nothing.
    """
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return [key[: end + 1] + FENCE] if end > start + 1 else []


ConnectionSettings = ValkeyConnectionSettings
"""What a connection needs of a backend's settings (every Valkey settings block is one)."""


def translate(exc: BaseException, where: str) -> SidecarError:
    """:func:`.errors.translate`, except that a credentials error is raised as it is."""
    return cr.unwrap(exc) or errors.translate(exc, where)


@dataclass(frozen=True)
class Refusal:
    """An error reply of the server (``-ERR ...``), returned by :meth:`Connection.ask`."""

    message: str


async def execute(client: Client, command: Command, *, route: str | None = None) -> Any:
    """Run one command; on a cluster, a command without keys runs where ``route`` lives."""
    run: Callable[..., Awaitable[Any]] = client.execute_command  # untyped upstream
    if route is not None and isinstance(client, ValkeyCluster):
        return await run(*command, target_nodes=client.get_node_from_key(route))
    return await run(*command)


class Connection:
    """The clients of the server (or cluster) in ``settings.url``: on a standalone server,
    the lean link for batches and valkey-py's pool for the rest; on a cluster, valkey-py's
    cluster client for everything. ``credentials`` replaces what the settings name (the
    operator passes a password it read from a Kubernetes Secret as ``credentials.Static``)."""

    def __init__(
        self,
        settings: ConnectionSettings,
        script_set: Sequence[scripts.Script] = scripts.CHECKPOINT,
        *,
        credentials: cr.Credentials | None = None,
    ) -> None:
        self.settings = settings
        self.where = errors.describe_url(settings.url)
        """How messages name the server: host, port and database, never the password."""
        self.credentials = credentials if credentials is not None else cr.for_settings(settings)
        """Asked for a login by every new connection of both clients; None sends no ``AUTH``."""
        self._scripts = tuple(script_set)
        self._client: Client | None = None
        self._link: resp.Link | None = None
        """The hot path's client, on a standalone server (None on a cluster)."""

    async def open(self) -> None:
        """Connect and load the scripts; raise ``BackendUnavailable`` if the server is not there."""
        try:
            self._client = await self._connect()
            await self._load_scripts()
        except _FAILURES as exc:
            await self.close()
            raise translate(exc, self.where) from None
        except BaseException:
            await self.close()
            raise
        cluster = isinstance(self._client, ValkeyCluster)
        if cluster and self.settings.wait_replicas:
            await self.close()
            raise errors.wait_on_cluster(self.where)
        log.info("connected to Valkey", extra={"valkey": self.where, "cluster": cluster})

    async def _connect(self) -> Client:
        timeout = self.settings.socket_timeout_seconds
        client = Valkey(
            connection_pool=BlockingConnectionPool(
                **self._url_options(),
                max_connections=self.settings.max_connections,
                # seconds waiting for a free connection (valkey-py annotates int, takes float)
                timeout=timeout,  # type: ignore[arg-type]
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                credential_provider=cr.provider(self.credentials),
            )
        )
        self._client = client  # closed by open() if what follows fails
        info: dict[str, Any] = await client.info("cluster")
        if info.get("cluster_enabled"):
            await client.aclose(close_connection_pool=True)
            return await self._connect_cluster()
        address = resp.Address.from_url(self.settings.url)
        self._link = resp.Link(address, timeout, self.credentials)
        await self._link.open()
        return client

    async def _connect_cluster(self) -> ValkeyCluster:
        timeout = self.settings.socket_timeout_seconds
        options = self._url_options()
        if options.pop("connection_class", None) is SSLConnection:
            options["ssl"] = True  # as ValkeyCluster.from_url reads valkeys://
        cluster = ValkeyCluster(
            **options,
            max_connections=self.settings.max_connections,  # per node
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            credential_provider=cr.provider(self.credentials),
            # A MOVED reply updates the slot it names, never the whole map: valkey-py's
            # periodic full reset on MOVED closes every node's connections under the other
            # callers and fails pipelines in flight (no default node) while slots move.
            reinitialize_steps=0,
        )
        self._client = cluster
        await cluster.initialize()
        return cluster

    def _url_options(self) -> dict[str, Any]:
        """valkey-py's reading of the URL (as ``from_url`` would pass it), without the user
        and password: those come from :attr:`credentials`, for every new connection."""
        options: dict[str, Any] = dict(parse_url(self.settings.url))
        options.pop("username", None)
        options.pop("password", None)
        return options

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        client, self._client = self._client, None
        if isinstance(client, ValkeyCluster):
            await client.aclose()
        elif client is not None:
            await client.aclose(close_connection_pool=True)

    async def run(self, *commands: Command) -> list[Any]:
        """Send ``commands`` in one round trip (a non-transactional pipeline); their replies.

        If the server lost the scripts (restart, ``SCRIPT FLUSH``), they are loaded again and
        the whole batch is sent again: every command the backend batches is idempotent.
        """
        try:
            replies = await self._send(commands)
            for reply in replies:
                if isinstance(reply, Exception):
                    return await self._after_refusal(commands, replies)
        except _FAILURES as exc:
            raise translate(exc, self.where) from None
        return replies

    async def write(self, *commands: Command) -> list[Any]:
        """:meth:`run` for commands that change data. With ``waitReplicas`` set, a ``WAIT``
        ends the same round trip: the replies come once that many replicas hold everything
        this connection wrote, or the call fails (``BackendUnavailable``) when fewer did."""
        wanted = self.settings.wait_replicas
        if not wanted:
            return await self.run(*commands)
        timeout_ms = self.settings.wait_timeout_ms
        *replies, acknowledged = await self.run(*commands, ("WAIT", wanted, timeout_ms))
        if acknowledged < wanted:
            raise errors.too_few_replicas(self.where, acknowledged, wanted, timeout_ms)
        return replies

    async def _after_refusal(self, commands: Sequence[Command], replies: list[Any]) -> list[Any]:
        """Replies of which one is an error: send again if scripts were lost, else raise."""
        if any(isinstance(reply, vx.NoScriptError) for reply in replies):
            log.warning("Valkey lost the scripts; loading them again", extra={"valkey": self.where})
            await self._load_scripts()
            replies = await self._send(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise translate(reply, self.where)
        return replies

    async def health(self, block: str, backend: str = "valkey") -> m.BackendHealth:
        """A PING, as the readiness of ``backend`` serving ``block``."""
        try:
            await self.run_one(("PING",))
        except SidecarError as exc:
            return m.BackendHealth(block, backend, False, exc.message)
        return m.BackendHealth(block, backend, True)

    @property
    def cluster(self) -> bool:
        """Whether the server is a cluster (known once opened)."""
        return isinstance(self._client, ValkeyCluster)

    async def run_one(self, command: Command) -> Any:
        """Send one command; its reply."""
        return (await self.run(command))[0]

    async def ask(self, command: Command, *, route: str | None = None) -> Any:
        """Send one command; its reply, or a :class:`Refusal` if the server answered an error.

        For commands whose error replies the caller interprets (an unknown command tells a
        module is missing, an unknown index that it was never created). A command without
        keys goes, on a cluster, to the node owning the key ``route``.
        """
        client = self._connected()
        try:
            return await execute(client, command, route=route)
        except (vx.NoScriptError, vx.NoPermissionError) as exc:  # not the command's answer
            raise translate(exc, self.where) from None
        except vx.ResponseError as exc:
            return Refusal(str(exc))
        except _FAILURES as exc:
            raise translate(exc, self.where) from None

    async def call(self, use: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``use`` on valkey-py's client (for code shared with the operator)."""
        try:
            return await use(self._connected())
        except _FAILURES as exc:
            raise translate(exc, self.where) from None

    def _send(self, commands: Sequence[Command]) -> Awaitable[list[Any]]:
        """The replies of ``commands``, error replies as exception instances in their place."""
        if self._link is not None:
            return self._link.execute(commands)
        return self._send_by_valkey_py(commands)

    async def _send_by_valkey_py(self, commands: Sequence[Command]) -> list[Any]:
        """:meth:`_pipeline`, sending again the commands refused because a slot they touch
        is being moved (``TRYAGAIN``, or redirections past valkey-py's own retries), after a
        pause, until ``socket_timeout_seconds`` have passed: the slot's move is finished by
        then, or it is reported (``BackendUnavailable``). Only the refused commands are sent
        again: none of them ran (a script's fence refuses it whole, before it starts)."""
        replies: list[Any] = [_UNSENT] * len(commands)
        loop = asyncio.get_running_loop()
        give_up, pause = loop.time() + self.settings.socket_timeout_seconds, RESHARD_PAUSE_S
        while True:
            waiting = [i for i, reply in enumerate(replies) if _moving(reply)]
            try:
                answered = await self._pipeline([commands[i] for i in waiting])
            except vx.ClusterError as exc:  # valkey-py's redirections ran out on one command
                if not _moving(exc) or loop.time() >= give_up:
                    raise
                answered = [exc] * len(waiting)
            for i, reply in zip(waiting, answered, strict=True):
                replies[i] = reply
            if not any(map(_moving, replies)) or loop.time() >= give_up:
                return replies
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESHARD_PAUSE_MAX_S)

    async def _pipeline(self, commands: Sequence[Command]) -> list[Any]:
        client = self._connected()
        if len(commands) == 1:
            execute: Callable[..., Awaitable[Any]] = client.execute_command  # untyped upstream
            try:
                return [await execute(*commands[0])]
            except vx.ResponseError as exc:
                return [exc]
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

    async def _load_scripts(self) -> None:
        """``SCRIPT LOAD`` every script (on every primary of a cluster)."""
        client = self._connected()
        loaded = await asyncio.gather(*(client.script_load(s.source) for s in self._scripts))
        if list(loaded) != [script.sha for script in self._scripts]:
            raise SidecarError("Valkey computed other SHA1s for the backend's scripts")

    def _connected(self) -> Client:
        if self._client is None:
            raise SidecarError("the Valkey backend is used before start() or after close()")
        return self._client
