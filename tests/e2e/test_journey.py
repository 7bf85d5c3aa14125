"""The product's journey on a real cluster, step by step, as a platform team and an agent
developer live it: install the chart, describe storage, run an agent that opts in, lose its
pod, lose its sidecar, refuse a mistake, delete the storage, uninstall.

The steps run in order and share one :class:`Journey`; a failed step leaves the later ones
failing too (they need what it should have made). Any provider of :mod:`rig.e2e` runs them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from e2e import manifests
from rig.cluster import chart
from rig.e2e import E2ECluster, eventually

pytestmark = pytest.mark.cluster

JsonObject = dict[str, Any]
SIDECAR = "agentpersistence-sidecar"
STATUS_ANNOTATION = "agentpersistence.io/status"
ROLLOUT_TIMEOUT = "240s"
NAMESPACED_KINDS = (
    "deployments",
    "replicasets",
    "pods",
    "services",
    "serviceaccounts",
    "secrets",
    "configmaps",
    "roles",
    "rolebindings",
    "poddisruptionbudgets",
)
"""What a chart may leave in its namespace: after uninstall none may carry its label."""


@dataclass
class Journey:
    cluster: E2ECluster
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    interrupted_at: str = ""

    @property
    def ns(self) -> str:
        """The agents' namespace: opted in per pod, by label."""
        return f"agents-{self.suffix}"

    @property
    def team_ns(self) -> str:
        """A namespace opted in as a whole: its pods need the annotation only."""
        return f"team-{self.suffix}"

    resource = "support-agent"
    team_resource = "team-agent"
    thread = "refund-1"

    # ---------------------------------------------------------------- reading the cluster

    def pod(self, ns: str, app: str = "example-agent") -> JsonObject:
        """The one running pod of ``app`` in ``ns``."""

        def running() -> JsonObject | None:
            listed = self.cluster.json(
                "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/name={app}"
            )
            alive = [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]
            return alive[0] if len(alive) == 1 else None

        return eventually(running, f"one {app} pod in {ns}")

    def events(self, ns: str, pod: str) -> list[JsonObject]:
        """The agent's JSON log lines."""
        out = self.cluster.kubectl("logs", "-n", ns, pod, "-c", "agent")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def event(self, ns: str, pod: str, name: str) -> JsonObject:
        def found() -> JsonObject | None:
            return next((e for e in self.events(ns, pod) if e["event"] == name), None)

        return eventually(found, f"the agent's {name!r} log line in {pod}")

    def history(self, ns: str) -> list[JsonObject]:
        out = self.cluster.kubectl(
            "exec", "-n", ns, "deploy/example-agent", "-c", "agent", "--",
            "python", "/app/agent.py", "history", self.thread, "--json",
        )  # fmt: skip
        rows: list[JsonObject] = json.loads(out)
        return rows

    def valkey(self, *command: str) -> str:
        """A command run on the cluster's Valkey, from inside its pod."""
        script = (
            "import sys, valkey; "
            f"client = valkey.Valkey(port=6379, password={manifests.VALKEY_PASSWORD!r}, "
            "decode_responses=True); print(client.execute_command(*sys.argv[1:]))"
        )
        return self.cluster.kubectl(
            "exec", "-n", self.ns, "deploy/valkey", "--", "python", "-c", script, *command
        )

    def peers(self) -> dict[str, JsonObject]:
        """The operator replicas' keep-alives (pod name → priority, ...): the oldest leads."""
        found = self.cluster.json("get", "clusterkopfpeering", chart.RELEASE)
        status: dict[str, JsonObject] = found.get("status") or {}
        return status

    def rollout(self, ns: str, deployment: str) -> None:
        self.cluster.kubectl(
            "rollout",
            "status",
            "-n",
            ns,
            f"deployment/{deployment}",
            f"--timeout={ROLLOUT_TIMEOUT}",
        )


def sidecar_status(pod: JsonObject) -> JsonObject:
    statuses = pod["status"].get("initContainerStatuses", [])
    found: JsonObject = next(s for s in statuses if s["name"] == SIDECAR)
    return found


@pytest.fixture(scope="module")
def journey(e2e_cluster: E2ECluster) -> Iterator[Journey]:
    made = Journey(e2e_cluster)
    yield made
    for ns in (made.ns, made.team_ns):
        e2e_cluster.run("kubectl", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")


def test_1_the_chart_installs_and_its_test_passes(journey: Journey) -> None:
    c = journey.cluster
    installed = chart.install(c.bin_dir, c.kubeconfig, c.home)
    assert installed.returncode == 0, installed.stderr
    operator = c.json("get", "deployment", chart.RELEASE, "-n", chart.NAMESPACE)
    assert operator["status"].get("readyReplicas") == 2
    eventually(lambda: len(journey.peers()) == 2, "both operator replicas in the peering object")
    # No --logs: the chart deletes a test pod that succeeded (hook-delete-policy).
    tested = c.run("helm", "test", chart.RELEASE, f"--namespace={chart.NAMESPACE}")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Phase:          Succeeded" in tested.stdout


def test_2_an_agent_persistence_reaches_ready(journey: Journey) -> None:
    c, ns = journey.cluster, journey.ns
    c.apply(manifests.namespace(ns), *manifests.valkey(ns))
    journey.rollout(ns, "valkey")
    c.apply(*manifests.valkey_credentials(ns, chart.NAMESPACE))
    c.apply(manifests.agent_persistence(journey.resource, ns, ns))
    c.kubectl(
        "wait", "-n", ns, f"agentpersistence/{journey.resource}",
        "--for=condition=Ready", f"--timeout={ROLLOUT_TIMEOUT}",
    )  # fmt: skip
    status = c.json("get", "-n", ns, f"agentpersistence/{journey.resource}")["status"]
    outputs = status["outputs"]
    assert outputs["configMapName"] == f"{journey.resource}-sidecar-config"
    assert outputs["indexName"] in journey.valkey("FT._LIST")
    said = c.kubectl("get", "configmaps,events,agentpersistences", "-n", ns, "-o", "yaml")
    assert manifests.VALKEY_PASSWORD not in said


def test_3_the_agent_runs_beside_its_injected_sidecar(journey: Journey) -> None:
    c, ns = journey.cluster, journey.ns
    c.apply(manifests.agent(ns, journey.resource, journey.thread))
    journey.rollout(ns, "example-agent")
    pod = journey.pod(ns)
    spec = pod["spec"]
    (sidecar,) = [x for x in spec["initContainers"] if x["name"] == SIDECAR]
    (agent,) = spec["containers"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar
    assert sidecar_status(pod)["ready"] is True
    assert agent["name"] == "agent"
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    user_of = {"agent": 10001, SIDECAR: 65532}
    for container in (sidecar, agent):
        context = container.get("securityContext", {})
        assert context.get("readOnlyRootFilesystem") is True, container["name"]
        uid = context.get("runAsUser", spec["securityContext"].get("runAsUser"))
        assert uid == user_of[container["name"]]
    interrupted = journey.event(ns, pod["metadata"]["name"], "interrupted")
    journey.interrupted_at = interrupted["checkpoint"]
    assert interrupted["waiting_for"] == "send_email"
    assert journey.history(ns)[-1]["next"] == ["approval"]


def test_4_a_replacement_pod_resumes_the_thread_and_finishes(journey: Journey) -> None:
    c, ns = journey.cluster, journey.ns
    old = journey.pod(ns)["metadata"]["name"]
    c.kubectl("delete", "pod", "-n", ns, old, "--wait=true")
    journey.rollout(ns, "example-agent")
    new = journey.pod(ns)["metadata"]["name"]
    assert new != old
    resumed = journey.event(ns, new, "resuming")
    assert resumed["checkpoint"] == journey.interrupted_at
    finished = journey.event(ns, new, "finished")
    assert finished["last"].startswith("ai: Done: email")
    history = journey.history(ns)
    assert history[-1]["next"] == []
    assert [row["next"] for row in history].count(["approval"]) == 1


def test_5_a_killed_sidecar_is_restarted_and_the_agent_never_sees_an_error(
    journey: Journey,
) -> None:
    c, ns = journey.cluster, journey.ns
    pod = journey.pod(ns)
    name = pod["metadata"]["name"]
    before = sidecar_status(pod)
    checks_before = [e["n"] for e in journey.events(ns, name) if e["event"] == "checked"]
    c.kill_container(pod, before["containerID"])

    def restarted() -> JsonObject | None:
        status = sidecar_status(c.json("get", "pod", "-n", ns, name))
        return (
            status if status["restartCount"] > before["restartCount"] and status["ready"] else None
        )

    eventually(restarted, "the sidecar restarted by the kubelet and ready again")
    last = max(checks_before, default=-1)

    def later_checks() -> list[JsonObject] | None:
        later = [e for e in journey.events(ns, name) if e["event"] == "checked" and e["n"] > last]
        return later if len(later) >= 3 else None

    later = eventually(later_checks, "the agent's checks going on after the restart")
    events = journey.events(ns, name)
    assert [e for e in events if e["event"] == "check failed"] == []
    assert all(e["checkpoint"] for e in later)
    print(f"slowest check across the sidecar's restart: {max(e['ms'] for e in later)} ms")


def test_6_in_an_opted_in_namespace_the_annotation_alone_injects(journey: Journey) -> None:
    c, ns = journey.cluster, journey.team_ns
    c.apply(manifests.namespace(ns, opt_in=True))
    c.apply(
        *manifests.valkey_credentials(ns, chart.NAMESPACE),
        manifests.agent_persistence(journey.team_resource, ns, journey.ns),
    )
    c.kubectl(
        "wait", "-n", ns, f"agentpersistence/{journey.team_resource}",
        "--for=condition=Ready", f"--timeout={ROLLOUT_TIMEOUT}",
    )  # fmt: skip
    deployment = manifests.agent(ns, journey.team_resource, journey.thread, label_route=False)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert manifests.INJECT_LABEL not in labels
    c.apply(deployment)
    journey.rollout(ns, "example-agent")
    pod = journey.pod(ns)
    assert sidecar_status(pod)["ready"] is True
    journey.event(ns, pod["metadata"]["name"], "interrupted")


def test_7_a_pod_naming_a_missing_resource_is_refused(journey: Journey) -> None:
    c, ns = journey.cluster, journey.ns
    pod = manifests.opted_in_pod(ns, "orphan", "does-not-exist")
    refused = c.run("kubectl", "apply", "-f", "-", input=json.dumps(pod))
    assert refused.returncode != 0
    assert "names AgentPersistence 'does-not-exist'" in refused.stderr
    assert f"which does not exist in namespace '{ns}'" in refused.stderr


def test_7b_losing_the_leading_operator_pod_neither_blocks_pods_nor_reconciling(
    journey: Journey,
) -> None:
    """The other replica answers the webhook at once and takes over reconciling (step 8
    needs it: the deletions are the new leader's)."""
    c, ns = journey.cluster, journey.ns
    before = journey.peers()
    leader = leader_of(before)
    c.kubectl("delete", "pod", "-n", chart.NAMESPACE, leader, "--wait=true")
    pod = manifests.opted_in_pod(ns, "while-one-is-gone", journey.resource)
    created = c.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod)
    )
    admitted = json.loads(created)
    assert admitted["metadata"]["annotations"][STATUS_ANNOTATION] == "injected"
    assert SIDECAR in [x["name"] for x in admitted["spec"]["initContainers"]]

    def replaced() -> dict[str, JsonObject] | None:
        peers = journey.peers()
        return peers if leader not in peers and len(peers) == 2 else None

    journey.rollout(chart.NAMESPACE, chart.RELEASE)
    peers = eventually(replaced, "the replacement replica beside the survivor")
    survivor = leader_of(peers)
    assert survivor != leader
    assert survivor in before, "the older replica leads, not its new peer"


def leader_of(peers: dict[str, JsonObject]) -> str:
    """The replica kopf lets reconcile: the one of highest priority (the oldest)."""
    return max(peers, key=lambda pod: int(peers[pod]["priority"]))


def test_8_deleting_the_resource_removes_its_storage(journey: Journey) -> None:
    c, ns = journey.cluster, journey.ns
    stored = c.json("get", "-n", ns, f"agentpersistence/{journey.resource}")
    index = stored["status"]["outputs"]["indexName"]
    for namespace, name in ((ns, journey.resource), (journey.team_ns, journey.team_resource)):
        c.kubectl(
            "delete", "-n", namespace, f"agentpersistence/{name}",
            "--wait=true", f"--timeout={ROLLOUT_TIMEOUT}",
        )  # fmt: skip
    assert index not in journey.valkey("FT._LIST")
    configmaps = c.json("get", "configmaps", "-n", ns)["items"]
    assert f"{journey.resource}-sidecar-config" not in [m["metadata"]["name"] for m in configmaps]


def test_9_helm_uninstall_leaves_nothing_of_the_operator(journey: Journey) -> None:
    c = journey.cluster
    removed = c.run("helm", "uninstall", chart.RELEASE, f"--namespace={chart.NAMESPACE}", "--wait")
    assert removed.returncode == 0, removed.stderr
    selector = f"app.kubernetes.io/instance={chart.RELEASE}"
    namespaced = ",".join(NAMESPACED_KINDS)
    cluster_wide = (
        "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,clusterkopfpeerings"
    )

    def nothing_left() -> bool:
        # The operator's pod goes through its graceful stop after the uninstall returns.
        left = c.json("get", namespaced, "-n", chart.NAMESPACE, "-l", selector)["items"]
        left += c.json("get", cluster_wide, "-l", selector)["items"]
        return not left

    eventually(nothing_left, "every object of the release to be gone")
    # Helm never deletes what it installed from crds/: the CRD (and any resources) stay.
    assert c.json("get", "crd", "agentpersistences.agentpersistence.io")["metadata"]["name"]
