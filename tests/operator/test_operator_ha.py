"""Two operator replicas on the real control plane: every replica answers admission requests,
one at a time reconciles, and the other takes over when it stops.

Each replica is ``agentpersistence-operator --peering NAME`` (reconciler and webhook in one
process, as the chart runs it) watching this module's namespace, with kopf's identity set
as the chart sets it (``POD_ID``) and the priority the entry point gives it (older: higher).
The API server calls the webhook through :class:`ServiceStandIn`, a TCP forwarder that does
what the chart's Service does with ready endpoints: it passes each connection, TLS and all,
to a replica that accepts it (the first listed that is up). No kube-proxy routes Services
here; the e2e tier shows the same through a real Service. The tests synchronise on the
peering object's content, the resources' conditions and the replicas' log lines.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentpersistence.operator import __main__ as entrypoint
from agentpersistence.operator import naming
from agentpersistence.operator.webhook import handlers, selftest
from agentpersistence.operator.webhook.inject import INJECT_LABEL, NAME_ANNOTATION
from rig.aws import local_env
from rig.kube import KubeControlPlane, free_port, mutating_webhook_configuration
from rig.operator import POD_CREATION, Cluster, OperatorProcess, eventually, unique

pytestmark = pytest.mark.controlplane

IMAGE = "registry.invalid/agentpersistence-sidecar:ha"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 2.0
# kopf's own log lines (kopf._core.engines.peering, kopf._cogs.clients.watching).
RESUMED = "Resuming operations after the pause"
WATCH_PAUSED = "Pausing the watch-stream for agentpersistences"

JsonObject = dict[str, Any]


# --------------------------------------------------------------------------- the entry point


def test_peered_replicas_get_a_priority_that_favours_the_oldest() -> None:
    older = entrypoint.start_priority(1_000)
    newer = entrypoint.start_priority(2_000)
    assert older > newer
    assert newer < 0, "a hand-run kopf operator (priority 0) must outrank the replicas"
    command = entrypoint.command(["--peering=ap", "-A"], environ={})
    priorities = [arg for arg in command if arg.startswith("--priority=")]
    assert len(priorities) == 1
    assert int(priorities[0].split("=", 1)[1]) < 0


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--standalone", "-A"], {}),
        (["--peering", "ap", "--priority=5"], {}),
        (["--peering=ap", "--dev"], {}),
        (["-P", "ap", "-p", "7"], {}),
    ],
)
def test_no_priority_is_added_unless_peered_without_one(
    argv: list[str], environ: dict[str, str]
) -> None:
    command = entrypoint.command(argv, environ=environ)
    assert command[-len(argv) :] == argv
    assert not [arg for arg in command if arg.startswith("--priority=-")]


def test_kopfs_peering_variable_counts_as_peering() -> None:
    command = entrypoint.command(["-A"], environ={entrypoint.PEERING_ENV: "ap"})
    assert [arg for arg in command if arg.startswith("--priority=")]


# --------------------------------------------------------------------------- the Service


@dataclass
class ServiceStandIn:
    """A TCP listener on the loopback that forwards each connection to the first of
    ``ports`` that accepts one, as a Service forwards to a ready endpoint."""

    ports: list[int]
    listener: socket.socket = field(init=False)
    sockets: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, name="service-stand-in", daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        with self.lock:
            self.sockets += [client, upstream]
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def _connect(self) -> socket.socket | None:
        for port in self.ports:
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S)
        return None


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copies bytes until ``source`` ends, then ends ``sink``'s writing side."""
    source.settimeout(None)
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------- replicas


@dataclass
class Replica:
    name: str
    """kopf's identity (``POD_ID``), the key of its entry in the peering object."""
    process: OperatorProcess
    webhook_port: int

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def says(self, text: str) -> bool:
        self.process.healthy()  # fails the test, with the log, if the process died
        return text in self.log()


@dataclass
class Replicas:
    kube: KubeControlPlane
    namespace: str
    peering: str
    certs: Path
    workdir: Path
    started: list[Replica] = field(default_factory=list)

    def start(self, name: str, webhook_port: int) -> Replica:
        health = free_port()
        argv = [
            sys.executable, "-m", "agentpersistence.operator",
            f"--peering={self.peering}", "--namespace", self.namespace, "--verbose",
            "--liveness", f"http://127.0.0.1:{health}/healthz",
        ]  # fmt: skip
        env = (
            self.kube.env()
            | local_env({})
            | {
                "PYTHONUNBUFFERED": "1",
                "POD_ID": name,
                "AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE,
                "AGENTPERSISTENCE_WEBHOOK_ADDR": "127.0.0.1",
                "AGENTPERSISTENCE_WEBHOOK_PORT": str(webhook_port),
                "AGENTPERSISTENCE_WEBHOOK_CERT_DIR": str(self.certs),
            }
        )
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        replica = Replica(
            name,
            OperatorProcess(popen, log_path, f"http://127.0.0.1:{health}/healthz"),
            webhook_port,
        )
        self.started.append(replica)
        eventually(replica.process.healthy, f"{name}'s liveness endpoint", START_TIMEOUT_S)
        eventually(lambda: _listening(webhook_port), f"{name}'s webhook server", START_TIMEOUT_S)
        return replica

    def stop(self, replica: Replica) -> None:
        replica.process.stop()
        assert replica.process.process.returncode is not None

    def peers(self) -> dict[str, JsonObject]:
        """The peering object's status: kopf's keep-alive entry of each live replica."""
        found = self.kube.kubectl_json("get", "kopfpeering", self.peering, "-n", self.namespace)
        status: dict[str, JsonObject] = found.get("status") or {}
        return status


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def write_certificates(kube: KubeControlPlane, directory: Path) -> Path:
    """The chart's webhook Secret as files (serving pair for 127.0.0.1, and the CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = kube.issue_serving_cert(f"ha-webhook-{unique('cert')}")
    (directory / "tls.crt").write_bytes(pair.cert.read_bytes())
    (directory / "tls.key").write_bytes(pair.key.read_bytes())
    (directory / "ca.crt").write_bytes(kube.ca_cert.read_bytes())
    return directory


@pytest.fixture(scope="module")
def replicas(
    kube_control_plane: KubeControlPlane,
    kopf_peering_crds: None,
    crd: str,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replicas]:
    """kopf's peering CRDs (the chart's), the peering object the chart would create, and a
    place to start replicas; every replica started is stopped at the end."""
    kube = kube_control_plane
    peering = unique("ap-ha")
    kube.apply(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": peering, "namespace": namespace},
        }
    )
    workdir = tmp_path_factory.mktemp("ha")
    group = Replicas(kube, namespace, peering, write_certificates(kube, workdir / "certs"), workdir)
    try:
        yield group
    finally:
        for replica in group.started:
            replica.process.stop()


# --------------------------------------------------------------------------- objects


def agent_persistence(name: str, namespace: str) -> JsonObject:
    return {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"checkpointer": {"backend": "memory"}},
    }


def agent_pod(name: str, resource: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {INJECT_LABEL: "true"},
            "annotations": {NAME_ANNOTATION: resource},
        },
        "spec": {"containers": [{"name": "agent", "image": "registry.invalid/agent:1"}]},
    }


def create_pod(kube: KubeControlPlane, namespace: str, pod: JsonObject) -> JsonObject:
    """Creates ``pod`` through the API server (and so its webhooks); the stored pod."""
    result = kube.kubectl("create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(pod))
    stored: JsonObject = json.loads(result.stdout)
    return stored


def injected(pod: JsonObject) -> bool:
    containers = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    return any(c["image"] == IMAGE for c in containers)


def handled(replica: Replica, namespace: str, name: str) -> bool:
    """Whether ``replica`` ran a reconcile handler for the resource (kopf logs each run with
    the object's ``[namespace/name]``)."""
    return any(
        f"[{namespace}/{name}]" in line and "reconcile_resource" in line
        for line in replica.log().splitlines()
    )


def admitted_by(replica: Replica, namespace: str, pod: str) -> bool:
    return any(
        f"[{namespace}/{pod}]" in line and "injecting the sidecar" in line
        for line in replica.log().splitlines()
    )


# --------------------------------------------------------------------------- the scenario


def test_a_paused_replica_admits_and_a_stopped_one_is_replaced(
    kube_control_plane: KubeControlPlane, replicas: Replicas, namespace: str
) -> None:
    kube = kube_control_plane
    cluster = Cluster(kube, namespace)

    # The first replica finds no peer of higher priority and reconciles.
    first = replicas.start("replica-a", free_port())
    eventually(lambda: first.says(RESUMED), "replica-a to take the lead")
    # The second sees the first's keep-alive (older, higher priority) and stays paused.
    second = replicas.start("replica-b", free_port())
    eventually(lambda: second.says(WATCH_PAUSED), "replica-b to pause its watches")
    eventually(lambda: len(replicas.peers()) == 2, "both replicas' keep-alives")
    peers = replicas.peers()
    assert peers["replica-a"]["priority"] > peers["replica-b"]["priority"]
    assert not second.says(RESUMED)

    # The API server reaches the webhook through the stand-in Service, first replica first.
    service = ServiceStandIn([first.webhook_port, second.webhook_port])
    configuration = unique("ap-ha-webhook")
    kube.apply(
        mutating_webhook_configuration(
            configuration,
            f"{service.url}{handlers.WEBHOOK_PATH}",
            kube.ca.bundle_b64,
            rules=[POD_CREATION],
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            object_selector={"matchLabels": {INJECT_LABEL: "true"}},
        )
    )
    try:
        # Only the leader reconciles.
        kube.apply(agent_persistence("first", namespace))
        cluster.wait_condition("first", "Ready", "True")
        assert handled(first, namespace, "first")
        assert not handled(second, namespace, "first")

        pod = create_pod(kube, namespace, agent_pod("agent-1", "first"))
        assert injected(pod)
        assert admitted_by(first, namespace, "agent-1")

        # The paused replica answers admission requests too (its index is empty while
        # paused: it reads the resource from the API server).
        context = ssl.create_default_context(cafile=str(replicas.certs / "ca.crt"))
        url = f"https://127.0.0.1:{second.webhook_port}{handlers.WEBHOOK_PATH}"
        direct = agent_pod("direct", "first")
        direct["metadata"]["namespace"] = namespace
        review = selftest.review(direct, namespace)
        answer = selftest.post(url, review, context)
        assert answer["allowed"] is True, answer
        assert answer.get("patch"), answer
        assert not second.says(RESUMED)

        # The leader stops: pods are still admitted and injected, by the survivor...
        replicas.stop(first)
        pod = create_pod(kube, namespace, agent_pod("agent-2", "first"))
        assert injected(pod)
        assert admitted_by(second, namespace, "agent-2")

        # ...which takes over reconciling once the leader's keep-alive is gone.
        eventually(lambda: list(replicas.peers()) == ["replica-b"], "replica-a to leave")
        eventually(lambda: second.says(RESUMED), "replica-b to resume")
        kube.apply(agent_persistence("second", namespace))
        cluster.wait_condition("second", "Ready", "True")
        assert handled(second, namespace, "second")
        assert not handled(first, namespace, "second")
    finally:
        kube.kubectl("delete", "mutatingwebhookconfiguration", configuration, check=False)
        service.close()
