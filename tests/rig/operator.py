"""The operator on the real control plane, against DynamoDB Local, moto, the AgentCore
emulator and Valkey+RediSearch.

``operator`` (module) runs ``agentpersistence-operator --no-webhook`` as a subprocess,
exactly as in production but for its environment: the admin kubeconfig, one namespace
(:data:`OPERATOR_NAMESPACE` per module), AWS endpoints at the local servers (moto serves S3,
the project's emulator AgentCore Memory), dummy credentials, and a drift check every
:data:`DRIFT_INTERVAL_S` seconds. ``crd`` (session) applies the committed CRD. Tests poll for
conditions and events (:class:`Cluster`), never sleep blindly. :func:`aws_clients` opens
typed aiobotocore clients on the same endpoints, and :func:`ft_info` reads a search index, for
checking what the operator provisioned.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import valkey
from aiobotocore.session import get_session

from agentpersistence.operator import naming
from rig import operator_hold, waiting
from rig.aws import local_env
from rig.dynamodb import DynamoDBLocal, MotoServer
from rig.emulator import EmulatorProcess
from rig.kube import KubeControlPlane, free_port
from rig.valkey import ValkeyProcess

if TYPE_CHECKING:
    from types_aiobotocore_bedrock_agentcore_control import BedrockAgentCoreControlClient
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "AwsClients",
    "Backends",
    "Cluster",
    "OperatorLogReporter",
    "OperatorProcess",
    "aws_clients",
    "backends",
    "cluster",
    "crd",
    "eventually",
    "ft_info",
    "namespace",
    "operator",
    "start_operator",
    "unique",
]

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "agentpersistence.io_agentpersistences.yaml"
POD_CREATION = {
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
    "operations": ["CREATE"],
    "scope": "Namespaced",
}
"""The rule of the pod webhook the chart registers: pod creation, in every namespace."""
HOLD_SCRIPT = Path(operator_hold.__file__).resolve()
DRIFT_INTERVAL_S = 2.0
POLL_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
REGION = "us-east-1"

T = TypeVar("T")
JsonObject = dict[str, Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eventually(probe: Callable[[], T | None], what: str, timeout: float = POLL_TIMEOUT_S) -> T:
    """Poll ``probe`` until it returns something truthy; that value."""
    return waiting.eventually(probe, what, timeout)


@dataclass
class Cluster:
    """kubectl helpers for ``AgentPersistence`` objects in one namespace."""

    kube: KubeControlPlane
    namespace: str

    def apply(self, manifest: Mapping[str, Any]) -> JsonObject:
        return self.kube.apply(manifest)

    def get(self, name: str) -> JsonObject | None:
        found = self.kube.kubectl(
            "get", naming.CRD_NAME, name, "-n", self.namespace, "-o", "json", check=False
        )
        return json.loads(found.stdout) if found.returncode == 0 else None

    def must_get(self, name: str) -> JsonObject:
        found = self.get(name)
        assert found is not None, f"{name} does not exist"
        return found

    def condition(self, name: str, kind: str) -> JsonObject | None:
        found = self.get(name) or {}
        conditions = found.get("status", {}).get("conditions", [])
        return next((c for c in conditions if c.get("type") == kind), None)

    def status_of(self, name: str, kind: str) -> str | None:
        """The status (True, False, Unknown) of one condition, None if it is not there."""
        found = self.condition(name, kind)
        return None if found is None else str(found["status"])

    def configmap_version(self, name: str) -> str | None:
        found = self.configmap(name)
        return None if found is None else str(found["metadata"]["resourceVersion"])

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None
    ) -> JsonObject:
        def probe() -> JsonObject | None:
            found = self.condition(name, kind)
            if found and found["status"] == status and reason in (None, found["reason"]):
                return found
            return None

        return eventually(probe, f"{name}: {kind}={status} ({reason or 'any reason'})")

    def events(self, name: str) -> list[JsonObject]:
        selector = f"involvedObject.name={name},involvedObject.kind={naming.KIND}"
        found = self.kube.kubectl_json(
            "get", "events", "-n", self.namespace, "--field-selector", selector
        )
        items: list[JsonObject] = found.get("items", [])
        return items

    def reasons(self, name: str) -> list[str]:
        return [str(event.get("reason")) for event in self.events(name)]

    def delete(self, name: str) -> None:
        self.kube.kubectl("delete", naming.CRD_NAME, name, "-n", self.namespace, "--wait=false")

    def wait_gone(self, name: str) -> None:
        eventually(lambda: self.get(name) is None, f"{name} to be deleted")

    def configmap(self, name: str) -> JsonObject | None:
        found = self.kube.kubectl(
            "get", "configmap", name, "-n", self.namespace, "-o", "json", check=False
        )
        return json.loads(found.stdout) if found.returncode == 0 else None


@dataclass(frozen=True)
class Backends:
    """Where the operator's (and the tests') clients find AWS and Valkey."""

    aws_url: str
    """moto: S3."""
    dynamodb_url: str
    valkey_url: str
    agentcore_url: str
    """The emulator: AgentCore's control and data plane, Bedrock Agent Runtime sessions."""

    def env(self) -> dict[str, str]:
        return local_env(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
                "AWS_ENDPOINT_URL_S3": self.aws_url,
                "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL": self.agentcore_url,
                "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": self.agentcore_url,
                "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME": self.agentcore_url,
            }
        )


@dataclass(frozen=True)
class AwsClients:
    dynamodb: DynamoDBClient
    s3: S3Client
    agentcore: BedrockAgentCoreControlClient


@contextlib.asynccontextmanager
async def aws_clients(backends: Backends) -> AsyncIterator[AwsClients]:
    """Clients on the test endpoints (dummy credentials), for checking the storage."""
    session = get_session()
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    kwargs: dict[str, Any] = {"region_name": REGION, **keys}
    async with (
        session.create_client("dynamodb", endpoint_url=backends.dynamodb_url, **kwargs) as ddb,
        session.create_client("s3", endpoint_url=backends.aws_url, **kwargs) as s3,
        session.create_client(
            "bedrock-agentcore-control", endpoint_url=backends.agentcore_url, **kwargs
        ) as agentcore,
    ):
        yield AwsClients(ddb, s3, agentcore)


def ft_info(url: str, index: str) -> dict[str, Any] | None:
    """``FT.INFO index`` as a dict of its top-level pairs, or None if there is no such index."""
    client = valkey.Valkey.from_url(url, decode_responses=True)
    try:
        reply = client.execute_command("FT.INFO", index)
    except valkey.ResponseError as exc:
        if "unknown index" in str(exc).lower() or "no such index" in str(exc).lower():
            return None
        raise
    finally:
        client.close()
    return dict(zip(reply[::2], reply[1::2], strict=True))


@pytest.fixture(scope="session")
def backends(
    dynamodb_local: DynamoDBLocal,
    moto_s3: MotoServer,
    valkey_search_server: ValkeyProcess,
    agentcore_emulator: EmulatorProcess,
) -> Backends:
    return Backends(
        moto_s3.endpoint_url,
        dynamodb_local.endpoint_url,
        valkey_search_server.url,
        agentcore_emulator.endpoint_url,
    )


@pytest.fixture(scope="session")
def crd(kube_control_plane: KubeControlPlane) -> str:
    """The committed CRD, applied and established; its name."""
    kube = kube_control_plane
    kube.kubectl("apply", "--server-side", "--field-manager=tests", "-f", str(CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", f"crd/{naming.CRD_NAME}", "--timeout=30s")
    eventually(
        lambda: kube.kubectl("get", naming.CRD_NAME, "-A", check=False).returncode == 0,
        "the AgentPersistence resource to be served",
    )
    return naming.CRD_NAME


@pytest.fixture(scope="module")
def namespace(kube_control_plane: KubeControlPlane) -> Iterator[str]:
    name = unique("ap-operator")
    kube_control_plane.kubectl("create", "namespace", name)
    yield name
    kube_control_plane.kubectl("delete", "namespace", name, "--wait=false")


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    health_url: str

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: the operator stops wherever it is, as on a node's failure."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_operator(
    kube: KubeControlPlane,
    namespace: str,
    backends: Backends,
    workdir: Path,
    kubeconfig: Path | None = None,
    holds: Sequence[Mapping[str, str]] = (),
) -> OperatorProcess:
    """``agentpersistence-operator --no-webhook`` watching ``namespace``, as the admin or as
    the user of ``kubeconfig`` (e.g. the Helm chart's ServiceAccount, to test its RBAC).
    ``holds``: AWS calls at which it stops for good (see :mod:`rig.operator_hold`; the
    markers are written in ``workdir``)."""
    port = free_port()
    entry = [str(HOLD_SCRIPT)] if holds else ["-m", "agentpersistence.operator"]
    argv = [
        sys.executable, *entry, "--no-webhook",
        "--standalone", "--namespace", namespace,
        "--liveness", f"http://127.0.0.1:{port}/healthz",
    ]  # fmt: skip
    env = kube.env() | backends.env()
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    env["AGENTPERSISTENCE_DRIFT_INTERVAL_SECONDS"] = str(DRIFT_INTERVAL_S)
    env["AGENTPERSISTENCE_MEMORY_WAIT_SECONDS"] = "5"
    if holds:
        env[operator_hold.HOLDS_ENV] = json.dumps(list(map(dict, holds)))
        env[operator_hold.HOLD_DIR_ENV] = str(workdir)
    log_path = workdir / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    operator = OperatorProcess(process, log_path, f"http://127.0.0.1:{port}/healthz")
    try:
        eventually(operator.healthy, "the operator's liveness endpoint", START_TIMEOUT_S)
    except BaseException:
        operator.stop()
        raise
    return operator


class OperatorLogReporter:
    """Adds the operator's log tail to the report of a failed test that used it."""

    def __init__(self, operator: OperatorProcess, fixture: str = "operator") -> None:
        self.operator = operator
        self.fixture = fixture

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed and self.fixture in getattr(item, "fixturenames", ()):
            report.sections.append(("operator log (tail)", self.operator.log_tail()))
        return report


@pytest.fixture(scope="module")
def operator(
    kube_control_plane: KubeControlPlane,
    crd: str,
    namespace: str,
    backends: Backends,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[OperatorProcess]:
    """The operator watching ``namespace`` (started after the CRD is established)."""
    workdir = tmp_path_factory.mktemp("operator")
    process = start_operator(kube_control_plane, namespace, backends, workdir)
    reporter = OperatorLogReporter(process)
    pytestconfig.pluginmanager.register(reporter, f"operator-log-{namespace}")
    try:
        yield process
    finally:
        pytestconfig.pluginmanager.unregister(reporter)
        process.stop()


@pytest.fixture(scope="module")
def cluster(kube_control_plane: KubeControlPlane, namespace: str) -> Cluster:
    return Cluster(kube_control_plane, namespace)
