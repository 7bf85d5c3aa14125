"""Sidecar injection through the real API server: kopf serves the webhook, pods are stored.

The webhook runs as production runs it, but on the host: ``kopf run --standalone`` loading
``agentpersistence.operator.webhook.handlers``, on certificates from the control plane's CA,
under the identity and RBAC the Helm chart grants (``operator_kubeconfig_from_chart_rbac``).
The chart's own ``MutatingWebhookConfiguration`` is registered, both entries (label route and
namespace route), each with its Service reference swapped for the host URL at the entry's own
path (no kube-proxy routes Services here) and its namespace selector narrowed to this
module's two namespaces: ``namespace`` (not labelled for injection) and ``enabled_namespace``
(labelled ``agentpersistence.io/inject: enabled``). Pods are created with kubectl and read
back.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentpersistence.operator import naming
from agentpersistence.operator.webhook import handlers
from agentpersistence.operator.webhook.inject import (
    INJECT_LABEL,
    NAME_ANNOTATION,
    NAMESPACE_INJECT_ENABLED,
    NAMESPACE_INJECT_LABEL,
    SIDECAR_NAME,
    STATUS_ANNOTATION,
    Injection,
    inject,
)
from agentpersistence.operator.webhook.patching import applied, pointer
from agentpersistence.operator.webhook.settings import InjectionSettings
from rig.kube import (
    AdmissionDecision,
    KubeControlPlane,
    KubectlError,
    child_env,
    free_port,
    host_webhook_server,
    mutating_webhook_configuration,
)
from rig.operator import POD_CREATION, OperatorProcess, eventually, unique

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "agentpersistence"
IMAGE = "registry.invalid/agentpersistence-sidecar:test"
SETTINGS = InjectionSettings(image=IMAGE)
"""What the webhook process is configured with (only the image is set in its environment)."""
RESOURCE = "notes"
RESOURCE_ACCOUNT = "notes-aws"
SPY_ANNOTATION = "spy.agentpersistence.test/seen"
SERVER_METADATA = ("uid", "creationTimestamp", "resourceVersion", "managedFields", "generation")
START_TIMEOUT_S = 60.0

JsonObject = dict[str, Any]


# --------------------------------------------------------------------------- the webhook


@dataclass
class Injector:
    process: OperatorProcess
    base_url: str
    """``https://127.0.0.1:<port>``: kopf serves each handler at ``/<handler id>`` under it."""
    ca_file: Path
    namespace: str
    """Not labelled for injection: only the label route reaches its pods."""
    enabled_namespace: str
    """Labelled ``agentpersistence.io/inject: enabled``: both routes reach its pods."""

    @property
    def url(self) -> str:
        """The label route's URL."""
        return f"{self.base_url}{handlers.WEBHOOK_PATH}"

    @property
    def namespace_url(self) -> str:
        return f"{self.base_url}{handlers.NAMESPACE_WEBHOOK_PATH}"

    @property
    def namespaces(self) -> list[str]:
        return [self.namespace, self.enabled_namespace]

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


def write_certificates(kube: KubeControlPlane, directory: Path) -> Path:
    """tls.crt, tls.key and ca.crt, as the chart's Secret holds them, from the cluster CA."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = kube.issue_serving_cert(f"injector-{uuid.uuid4().hex[:6]}")
    (directory / "tls.crt").write_bytes(pair.cert.read_bytes())
    (directory / "tls.key").write_bytes(pair.key.read_bytes())
    (directory / "ca.crt").write_bytes(kube.ca_cert.read_bytes())
    return directory


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def start_injector(
    kubeconfig: Path, namespaces: Sequence[str], workdir: Path, certs: Path
) -> tuple[OperatorProcess, str]:
    """The webhook process, serving (and indexing) ``namespaces``; it and its base URL."""
    port, health = free_port(), free_port()
    argv = [
        sys.executable, "-m", "kopf", "run", "--standalone", "--verbose",
        *(arg for namespace in namespaces for arg in ("--namespace", namespace)),
        "--liveness", f"http://127.0.0.1:{health}/healthz",
        "-m", "agentpersistence.operator.webhook.handlers",
    ]  # fmt: skip
    env = child_env() | {
        "KUBECONFIG": str(kubeconfig),
        "PYTHONUNBUFFERED": "1",
        "AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE,
        "AGENTPERSISTENCE_WEBHOOK_ADDR": "127.0.0.1",
        "AGENTPERSISTENCE_WEBHOOK_PORT": str(port),
        "AGENTPERSISTENCE_WEBHOOK_CERT_DIR": str(certs),
    }
    log_path = workdir / "injector.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    process = OperatorProcess(popen, log_path, f"http://127.0.0.1:{health}/healthz")
    try:
        eventually(process.healthy, "kopf's liveness endpoint", START_TIMEOUT_S)
        eventually(lambda: listening(port), "the webhook server", START_TIMEOUT_S)
    except BaseException:
        process.stop()
        raise
    return process, f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def enabled_namespace(kube_control_plane: KubeControlPlane) -> Iterator[str]:
    """A namespace labelled for the namespace route."""
    name = unique("ap-enabled")
    labels = {NAMESPACE_INJECT_LABEL: NAMESPACE_INJECT_ENABLED}
    kube_control_plane.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )
    yield name
    kube_control_plane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def injector(
    kube_control_plane: KubeControlPlane,
    crd: str,
    namespace: str,
    enabled_namespace: str,
    operator_kubeconfig_from_chart_rbac: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Injector]:
    workdir = tmp_path_factory.mktemp("injector")
    certs = write_certificates(kube_control_plane, workdir / "certs")
    namespaces = [namespace, enabled_namespace]
    process, base_url = start_injector(
        operator_kubeconfig_from_chart_rbac, namespaces, workdir, certs
    )
    try:
        yield Injector(process, base_url, certs / "ca.crt", namespace, enabled_namespace)
    finally:
        process.stop()


def chart_webhook_configuration(kube: KubeControlPlane, home: Path) -> JsonObject:
    """The chart's MutatingWebhookConfiguration, as ``helm template`` renders it."""
    homes = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    show = ("--show-only", "templates/webhook.yaml")
    argv = [str(kube.bin_dir / "helm"), "template", "ap", str(CHART), "-n", "ap-system", *show]
    env = child_env() | homes | {"HOME": str(home)}
    rendered = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    found: JsonObject = next(d for d in documents if d["kind"] == "MutatingWebhookConfiguration")
    return found


def pointed_at(configuration: JsonObject, injector: Injector, name: str) -> JsonObject:
    """The chart's configuration, every entry calling the host webhook at the path the chart
    gives it, for this module's namespaces only (selectors otherwise as the chart ships them)."""
    configuration = copy.deepcopy(configuration)
    configuration["metadata"] = {"name": name}
    ca_bundle = base64.b64encode(injector.ca_file.read_bytes()).decode("ascii")
    only_ours = {"key": "kubernetes.io/metadata.name", "operator": "In"}
    for webhook in configuration["webhooks"]:
        path = webhook["clientConfig"]["service"]["path"]
        webhook["clientConfig"] = {"url": f"{injector.base_url}{path}", "caBundle": ca_bundle}
        expressions = webhook["namespaceSelector"]["matchExpressions"]
        expressions.append(only_ours | {"values": injector.namespaces})
    return configuration


@pytest.fixture(scope="module")
def registered(
    kube_control_plane: KubeControlPlane,
    injector: Injector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JsonObject]:
    """The webhook registered, the resource created in both namespaces, and injection
    observed once by each route."""
    kube = kube_control_plane
    name = f"ap-inject-{uuid.uuid4().hex[:6]}"  # sorts before the spy webhook's "zz-" name
    chart = chart_webhook_configuration(kube, tmp_path_factory.mktemp("helm"))
    kube.apply(pointed_at(chart, injector, name))
    stored = kube.apply(agent_persistence(RESOURCE, injector.namespace))
    kube.apply(agent_persistence(RESOURCE, injector.enabled_namespace))
    probes = {
        injector.namespace: agent_pod("probe"),
        injector.enabled_namespace: agent_pod("probe", label=None),
    }
    try:
        for namespace, probe in probes.items():
            eventually(
                functools.partial(injects_dry_run, kube, namespace, probe),
                f"the webhook to inject into a dry-run pod in {namespace}",
            )
        yield stored
    finally:
        kube.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)


# --------------------------------------------------------------------------- objects


def agent_persistence(name: str, namespace: str) -> JsonObject:
    return {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "checkpointer": {"backend": "memory"},
            "sidecar": {"resources": {"requests": {"cpu": "25m", "memory": "32Mi"}}},
            "serviceAccountName": RESOURCE_ACCOUNT,
        },
    }


def agent_pod(
    name: str, *, label: str | None = "true", resource: str | None = RESOURCE
) -> JsonObject:
    """A pod as a user writes it (no namespace: kubectl's -n gives it), with the inject label
    set to ``label`` (None: without it) and naming ``resource`` (None: no name annotation)."""
    metadata: JsonObject = {"name": name, "labels": {"app": "agent"}}
    if label is not None:
        metadata["labels"][INJECT_LABEL] = label
    if resource is not None:
        metadata["annotations"] = {NAME_ANNOTATION: resource}
    container = {
        "name": "agent",
        "image": "registry.invalid/agent:1",
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
    }
    spec = {"containers": [container]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def create(
    kube: KubeControlPlane, namespace: str, pod: JsonObject, *, dry_run: bool = False
) -> tuple[JsonObject, str]:
    """Creates ``pod``; the stored (or dry-run) object and kubectl's stderr (warnings)."""
    args = ["create", "-n", namespace, "-o", "json", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    result = kube.kubectl(*args, input=json.dumps(pod))
    stored: JsonObject = json.loads(result.stdout)
    return stored, result.stderr


def injected(pod: JsonObject) -> bool:
    return bool(pod["metadata"].get("annotations", {}).get(STATUS_ANNOTATION) == "injected")


def injects_dry_run(kube: KubeControlPlane, namespace: str, pod: JsonObject) -> bool:
    return injected(create(kube, namespace, pod, dry_run=True)[0])


def sidecars(pod: JsonObject) -> list[JsonObject]:
    every = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    return [c for c in every if c["name"] == SIDECAR_NAME]


def as_submitted(pod: JsonObject, name: str) -> JsonObject:
    """A stored pod as a client would submit it again under ``name``."""
    again = copy.deepcopy(pod)
    again.pop("status", None)
    for field in SERVER_METADATA:
        again["metadata"].pop(field, None)
    again["metadata"]["name"] = name
    return again


def spied(kube: KubeControlPlane, namespace: str, label: str | None) -> bool:
    probe = agent_pod(f"spy-probe-{uuid.uuid4().hex[:4]}", label=label)
    pod, _ = create(kube, namespace, probe, dry_run=True)
    return SPY_ANNOTATION in pod["metadata"]["annotations"]


def refusal(error: KubectlError) -> str:
    """What the webhook said, without the API server's framing."""
    return error.stderr.split("denied the request: ", 1)[1].strip()


def logged(injector: Injector, *fragments: str) -> list[str]:
    """The webhook's log lines that hold every fragment."""
    lines = injector.log().splitlines()
    return [line for line in lines if all(fragment in line for fragment in fragments)]


def resource_view(stored: JsonObject) -> Any:
    return handlers.view(stored["metadata"]["name"], stored["spec"], stored.get("status", {}))


# --------------------------------------------------------------------------- tests


def test_a_labelled_pod_is_stored_with_the_sidecar(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    pod, warnings = create(kube_control_plane, injector.namespace, agent_pod("agent-1"))
    spec = pod["spec"]
    assert injected(pod)
    [sidecar] = spec["initContainers"]
    assert sidecar["name"] == SIDECAR_NAME
    assert sidecar["image"] == IMAGE
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["resources"] == {"requests": {"cpu": "25m", "memory": "32Mi"}}  # spec.sidecar
    assert sidecar["startupProbe"]["exec"]["command"] == ["test", "-S", SETTINGS.socket_path]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    [agent] = spec["containers"]
    assert {"name": "AGENTPERSISTENCE_SOCKET", "value": SETTINGS.socket_path} in agent["env"]
    mount = {"name": "agentpersistence-socket", "mountPath": SETTINGS.socket_dir, "readOnly": True}
    assert mount in agent["volumeMounts"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    socket_volume = {"medium": "Memory", "sizeLimit": "1Mi"}
    assert volumes["agentpersistence-socket"]["emptyDir"] == socket_volume
    assert volumes["agentpersistence-config"]["configMap"]["name"] == "notes-sidecar-config"
    assert spec["serviceAccountName"] == RESOURCE_ACCOUNT
    assert spec["securityContext"]["supplementalGroups"] == [SETTINGS.run_as_group]
    # The resource has no Ready condition (no reconciler runs here): kubectl shows the warning.
    assert f"AgentPersistence '{RESOURCE}' is not Ready yet" in warnings


def test_the_stored_pod_is_exactly_the_pure_injection(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    """The API server's result equals :func:`inject` applied to the same defaulted pod."""
    kube, namespace = kube_control_plane, injector.namespace
    stored, _ = create(kube, namespace, agent_pod("agent-2"))
    # The pod as the webhook received it: the same pod, defaulted, not yet injected.
    unlabelled = agent_pod("agent-2-twin", label=None)
    received, _ = create(kube, namespace, unlabelled, dry_run=True)
    received = as_submitted(received, "agent-2")
    received["metadata"]["labels"][INJECT_LABEL] = "true"
    result = inject(received, resource_view(registered), SETTINGS)  # type: ignore[arg-type]
    assert isinstance(result, Injection)
    expected = applied(received, result.patch)
    # Stored the same way (the webhook leaves an injected pod alone, checked below).
    resubmitted = as_submitted(expected, "agent-2-expected")
    expected_stored, _ = create(kube, namespace, resubmitted, dry_run=True)
    assert stored["spec"] == expected_stored["spec"]
    assert stored["metadata"]["annotations"] == expected_stored["metadata"]["annotations"]
    assert stored["metadata"]["labels"] == expected_stored["metadata"]["labels"]


def test_an_annotated_pod_in_an_unlabelled_namespace_is_untouched(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    """Both entries cover this namespace, but it is not labelled enabled: no route applies."""
    kube, namespace = kube_control_plane, injector.namespace
    pod, _ = create(kube, namespace, agent_pod("plain", label=None))
    assert pod["metadata"]["annotations"] == {NAME_ANNOTATION: RESOURCE}
    assert not injected(pod)
    assert sidecars(pod) == []
    assert "initContainers" not in pod["spec"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["agent"]
    assert "volumes" not in pod["spec"]


def test_an_injected_pod_passes_the_webhook_unchanged(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    kube, namespace = kube_control_plane, injector.namespace
    stored, _ = create(kube, namespace, agent_pod("agent-3"))
    again, _ = create(kube, namespace, as_submitted(stored, "agent-3-again"), dry_run=True)
    assert again["spec"] == stored["spec"]
    assert len(sidecars(again)) == 1


@pytest.mark.parametrize("route", ["label", "namespace"])
def test_a_reinvocation_after_a_later_webhook_injects_nothing(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject, route: str
) -> None:
    """A second webhook (ordered after ours) changes the pod; ours runs again (IfNeeded)."""
    kube = kube_control_plane
    if route == "label":
        namespace, label = injector.namespace, "true"
        selector: JsonObject = {"matchLabels": {INJECT_LABEL: "true"}}
    else:
        namespace, label = injector.enabled_namespace, None
        selector = {"matchExpressions": [{"key": INJECT_LABEL, "operator": "DoesNotExist"}]}
    pod_name = f"agent-4-{route}"

    def spy(request: JsonObject) -> AdmissionDecision:
        annotations = request["object"]["metadata"].get("annotations") or {}
        if SPY_ANNOTATION in annotations:
            return AdmissionDecision()
        path = pointer("metadata", "annotations", SPY_ANNOTATION)
        return AdmissionDecision(patch=[{"op": "add", "path": path, "value": "true"}])

    name = f"zz-spy-{uuid.uuid4().hex[:6]}"
    with host_webhook_server(kube, spy) as server:
        configuration = mutating_webhook_configuration(
            name,
            server.url,
            server.ca_bundle,
            rules=[POD_CREATION],
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            object_selector=selector,
        )
        kube.apply(configuration)
        try:
            eventually(lambda: spied(kube, namespace, label), "the spy webhook to take effect")
            pod, _ = create(kube, namespace, agent_pod(pod_name, label=label))
        finally:
            kube.kubectl("delete", "mutatingwebhookconfiguration", name)
    assert pod["metadata"]["annotations"][SPY_ANNOTATION] == "true"
    assert len(sidecars(pod)) == 1
    seen = [r["object"] for r in server.requests if r["object"]["metadata"]["name"] == pod_name]
    assert [len(sidecars(o)) for o in seen] == [1]  # the spy ran after our injection
    eventually(lambda: logged(injector, pod_name, "already injected"), "the reinvocation's log")


def test_a_resource_created_just_before_its_pod_is_found(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    """The index may lag behind a fresh resource; the handler reads it through the API."""
    kube, namespace = kube_control_plane, injector.namespace
    fresh = f"fresh-{uuid.uuid4().hex[:6]}"
    kube.apply(agent_persistence(fresh, namespace))
    pod, _ = create(kube, namespace, agent_pod("agent-5", resource=fresh))
    assert injected(pod)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["agentpersistence-config"]["configMap"]["name"] == f"{fresh}-sidecar-config"


def test_with_a_sidecar_identity_only_the_sidecar_holds_aws_credentials(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    """``spec.sidecar.awsIdentity``: the stored pod's sidecar has the role, the projected
    token and its mount; no agent container has an AWS variable or the token."""
    kube, namespace = kube_control_plane, injector.namespace
    name = f"aws-{uuid.uuid4().hex[:6]}"
    resource = agent_persistence(name, namespace)
    role = "arn:aws:iam::111122223333:role/agent-state"
    resource["spec"]["sidecar"]["awsIdentity"] = {"roleArn": role}
    kube.apply(resource)
    pod = agent_pod("agent-aws", resource=name)
    pod["spec"]["containers"].append({"name": "helper", "image": "registry.invalid/helper:1"})
    stored, _ = create(kube, namespace, pod)
    spec = stored["spec"]
    [sidecar] = spec["initContainers"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["AWS_ROLE_ARN"] == role
    token_file = env["AWS_WEB_IDENTITY_TOKEN_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert token_file.startswith(mounts["agentpersistence-aws-token"] + "/")
    [token] = [v for v in spec["volumes"] if v["name"] == "agentpersistence-aws-token"]
    [source] = token["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    assert [c["name"] for c in spec["containers"]] == ["agent", "helper"]
    for container in spec["containers"]:
        assert [e["name"] for e in container.get("env", []) if e["name"].startswith("AWS_")] == []
        names = {m["name"] for m in container.get("volumeMounts", [])}
        assert "agentpersistence-aws-token" not in names


def test_valkey_credentials_are_mounted_into_the_sidecar_only(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    """``spec.valkeyCredentials``: the stored pod mounts the Secret's two keys into the
    sidecar, at the files its config names; no agent container mounts it."""
    kube, namespace = kube_control_plane, injector.namespace
    name = f"vk-{uuid.uuid4().hex[:6]}"
    resource = agent_persistence(name, namespace)
    resource["spec"]["checkpointer"] = {"backend": "valkey", "valkey": {"url": "valkey://vk:6379"}}
    resource["spec"]["valkeyCredentials"] = {"secretName": "vk-auth", "usernameKey": "user"}
    kube.apply(resource)
    pod = agent_pod("agent-vk", resource=name)
    pod["spec"]["containers"].append({"name": "helper", "image": "registry.invalid/helper:1"})
    stored, _ = create(kube, namespace, pod)
    spec = stored["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "agentpersistence-valkey-credentials"]
    assert volume["secret"]["secretName"] == "vk-auth"
    assert volume["secret"]["items"] == [
        {"key": "password", "path": "password"},
        {"key": "user", "path": "username"},
    ]
    [sidecar] = spec["initContainers"]
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    mount = mounts["agentpersistence-valkey-credentials"]
    assert (mount["mountPath"], mount["readOnly"]) == (naming.VALKEY_CREDENTIALS_DIR, True)
    assert naming.VALKEY_PASSWORD_FILE.startswith(mount["mountPath"] + "/")
    for container in spec["containers"]:
        names = {m["name"] for m in container.get("volumeMounts", [])}
        assert "agentpersistence-valkey-credentials" not in names


def test_a_pod_naming_a_missing_resource_is_refused(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    with pytest.raises(KubectlError) as refused:
        create(kube_control_plane, injector.namespace, agent_pod("agent-6", resource="missing"))
    message = refused.value.stderr
    assert 'admission webhook "inject.agentpersistence.io" denied the request' in message
    assert (
        f"pod 'agent-6' names AgentPersistence 'missing' ({NAME_ANNOTATION}), which does not "
        f"exist in namespace '{injector.namespace}'"
    ) in message
    found = kube_control_plane.kubectl(
        "get", "pod", "agent-6", "-n", injector.namespace, check=False
    )
    assert found.returncode != 0


def test_a_labelled_pod_without_a_name_is_refused(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    with pytest.raises(KubectlError) as refused:
        create(kube_control_plane, injector.namespace, agent_pod("agent-7", resource=None))
    assert f"but no annotation {NAME_ANNOTATION}" in refused.value.stderr


def test_a_pod_with_another_service_account_is_refused(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    pod = agent_pod("agent-8")
    pod["spec"]["serviceAccountName"] = "someone-else"
    with pytest.raises(KubectlError) as refused:
        create(kube_control_plane, injector.namespace, pod)
    assert "runs as ServiceAccount 'someone-else'" in refused.value.stderr
    assert f"set it to '{RESOURCE_ACCOUNT}'" in refused.value.stderr


# --------------------------------------------------------------------------- the namespace route


def test_an_annotated_pod_in_an_enabled_namespace_is_injected(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    kube, namespace = kube_control_plane, injector.enabled_namespace
    pod, warnings = create(kube, namespace, agent_pod("by-namespace", label=None))
    assert injected(pod)
    assert INJECT_LABEL not in pod["metadata"]["labels"]
    [sidecar] = sidecars(pod)
    assert sidecar["image"] == IMAGE
    assert pod["spec"]["serviceAccountName"] == RESOURCE_ACCOUNT
    assert f"AgentPersistence '{RESOURCE}' is not Ready yet" in warnings
    # The same injection as the label route's, for the same pod.
    twin, _ = create(kube, namespace, agent_pod("by-label"), dry_run=True)
    assert pod["spec"] == twin["spec"]
    lines = logged(injector, "by-namespace", "injecting the sidecar")
    assert len(lines) == 1
    assert "(namespace route)" in lines[0]


def test_an_unannotated_pod_in_an_enabled_namespace_is_admitted_unchanged(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    kube, namespace = kube_control_plane, injector.enabled_namespace
    pod, warnings = create(kube, namespace, agent_pod("plain-enabled", label=None, resource=None))
    assert not injected(pod)
    assert "annotations" not in pod["metadata"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["agent"]
    assert "initContainers" not in pod["spec"]
    assert "volumes" not in pod["spec"]
    assert warnings == ""


def test_a_pod_labelled_false_in_an_enabled_namespace_is_untouched(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    kube, namespace = kube_control_plane, injector.enabled_namespace
    pod, _ = create(kube, namespace, agent_pod("opted-out", label="false"))
    assert pod["metadata"]["labels"][INJECT_LABEL] == "false"
    assert pod["metadata"]["annotations"] == {NAME_ANNOTATION: RESOURCE}
    assert sidecars(pod) == []
    assert "volumes" not in pod["spec"]


def test_a_labelled_pod_in_an_enabled_namespace_is_injected_once(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    """Only the label route takes it: the namespace entry's objectSelector leaves it out."""
    kube, namespace = kube_control_plane, injector.enabled_namespace
    pod, _ = create(kube, namespace, agent_pod("both-routes"))
    spec = pod["spec"]
    assert len(sidecars(pod)) == 1
    assert pod["metadata"]["annotations"] == {
        NAME_ANNOTATION: RESOURCE,
        STATUS_ANNOTATION: "injected",
    }
    assert [v["name"] for v in spec["volumes"]] == [
        "agentpersistence-socket",
        "agentpersistence-config",
    ]
    assert spec["securityContext"]["supplementalGroups"] == [SETTINGS.run_as_group]
    [agent] = spec["containers"]
    assert [e["name"] for e in agent["env"]] == ["LOG_LEVEL", "AGENTPERSISTENCE_SOCKET"]
    lines = logged(injector, "both-routes")
    injections = [line for line in lines if "injecting the sidecar" in line]
    assert len(injections) == 1
    assert "(label route)" in injections[0]
    assert not [line for line in lines if handlers.NAMESPACE_WEBHOOK_ID in line]
    assert not [line for line in lines if "already injected" in line]


def test_a_labelled_pod_without_a_name_in_an_enabled_namespace_is_refused(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    pod = agent_pod("unnamed", resource=None)
    with pytest.raises(KubectlError) as refused:
        create(kube_control_plane, injector.enabled_namespace, pod)
    assert 'admission webhook "inject.agentpersistence.io" denied the request' in (
        refused.value.stderr
    )
    assert f"but no annotation {NAME_ANNOTATION}" in refused.value.stderr


def test_an_annotated_pod_naming_a_missing_resource_is_refused_as_by_the_label_route(
    kube_control_plane: KubeControlPlane, injector: Injector, registered: JsonObject
) -> None:
    kube, namespace = kube_control_plane, injector.enabled_namespace
    with pytest.raises(KubectlError) as by_label:
        create(kube, namespace, agent_pod("missing-ap", resource="missing"))
    with pytest.raises(KubectlError) as by_namespace:
        create(kube, namespace, agent_pod("missing-ap", label=None, resource="missing"))
    assert 'admission webhook "inject.agentpersistence.io" denied the request' in (
        by_label.value.stderr
    )
    assert 'admission webhook "inject-namespace.agentpersistence.io" denied the request' in (
        by_namespace.value.stderr
    )
    assert refusal(by_namespace.value) == refusal(by_label.value)
    assert refusal(by_namespace.value).startswith(
        f"pod 'missing-ap' names AgentPersistence 'missing' ({NAME_ANNOTATION}), which does "
        f"not exist in namespace '{namespace}'"
    )
    found = kube.kubectl("get", "pod", "missing-ap", "-n", namespace, check=False)
    assert found.returncode != 0


def test_the_helm_test_selftest_passes(injector: Injector, registered: JsonObject) -> None:
    argv = [
        sys.executable, "-m", "agentpersistence.operator.webhook.selftest",
        "--url", injector.url, "--namespace-url", injector.namespace_url,
        "--ca-file", str(injector.ca_file), "--namespace", injector.namespace,
    ]  # fmt: skip
    result = subprocess.run(
        argv, capture_output=True, text=True, env=child_env(), check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    passed = f"webhook self-test passed: {injector.url}, {injector.namespace_url}"
    assert passed in result.stdout


def test_the_webhook_logged_no_error(injector: Injector, registered: JsonObject) -> None:
    log = injector.log()
    assert "Traceback" not in log
    assert "Forbidden" not in log, "the chart's RBAC lacks a permission the webhook uses"
    assert os.path.getsize(injector.process.log_path) > 0
