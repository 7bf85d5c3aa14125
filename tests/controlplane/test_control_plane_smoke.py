"""The control-plane test rig works: a real kube-apiserver, RBAC, CEL, webhooks, helm.

These tests talk to etcd + kube-apiserver built by tests/testenv/build.sh. There is no
controller manager: every test removes what it creates (namespaces stay Terminating).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rig.kube import (
    AdmissionDecision,
    KubeControlPlane,
    KubectlError,
    helm,
    host_webhook_server,
    mutating_webhook_configuration,
)

pytestmark = pytest.mark.controlplane

BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "testenv" / "build.sh"
POLL_TIMEOUT_S = 20.0
CRD_GROUP = "smoke.agentpersistence.test"
MUTATED_LABEL = "agentpersistence.test/mutated"
INJECT_LABEL = "agentpersistence.test/inject"


def pinned_version(variable: str) -> str:
    """A version pinned in build.sh (K8S_VERSION, ETCD_VERSION, HELM_VERSION)."""
    match = re.search(rf"^{variable}=(v[0-9.]+)", BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert match, f"{variable} not found in {BUILD_SCRIPT}"
    return match.group(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eventually(check: Callable[[], bool], what: str, timeout: float = POLL_TIMEOUT_S) -> None:
    """Polls ``check`` until it is true (caches and informers in the API server lag a little)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture
def namespace(kube_control_plane: KubeControlPlane) -> Iterator[str]:
    name = unique("smoke")
    kube_control_plane.kubectl("create", "namespace", name)
    yield name
    kube_control_plane.kubectl("delete", "namespace", name, "--wait=false")


# --------------------------------------------------------------------------- basics


def test_namespace_and_configmap_round_trip(
    kube_control_plane: KubeControlPlane, namespace: str
) -> None:
    kube_control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "greeting", "namespace": namespace},
            "data": {"hello": "world"},
        }
    )
    stored = kube_control_plane.kubectl_json("get", "configmap", "greeting", "-n", namespace)
    assert stored["data"] == {"hello": "world"}
    assert stored["metadata"]["namespace"] == namespace


def test_binaries_report_the_pinned_versions(kube_control_plane: KubeControlPlane) -> None:
    k8s_version = pinned_version("K8S_VERSION")
    apiserver = kube_control_plane.bin_dir / "kube-apiserver"
    output = subprocess.run(
        [str(apiserver), "--version"], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == f"Kubernetes {k8s_version}"
    versions = kube_control_plane.kubectl_json("version")
    assert versions["serverVersion"]["gitVersion"] == k8s_version
    assert versions["clientVersion"]["gitVersion"] == k8s_version
    etcd = subprocess.run(
        [str(kube_control_plane.bin_dir / "etcd"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"etcd Version: {pinned_version('ETCD_VERSION').removeprefix('v')}" in etcd.stdout


# --------------------------------------------------------------------------- CEL validation


def widget_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "required": ["replicas", "maxReplicas"],
        "properties": {"replicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
        "x-kubernetes-validations": [
            {
                "rule": "self.replicas <= self.maxReplicas",
                "message": "replicas must not exceed maxReplicas",
            }
        ],
    }
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "Widget",
                "plural": "widgets",
                "singular": "widget",
                "listKind": "WidgetList",
            },
            "versions": [version],
        },
    }


def widget(name: str, namespace: str, replicas: int, max_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{CRD_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "maxReplicas": max_replicas},
    }


@pytest.fixture
def widget_crd_installed(kube_control_plane: KubeControlPlane, namespace: str) -> Iterator[None]:
    kube = kube_control_plane
    kube.apply(widget_crd())
    kube.kubectl("wait", "--for=condition=Established", f"crd/widgets.{CRD_GROUP}", "--timeout=30s")
    eventually(
        lambda: (
            kube.kubectl("get", f"widgets.{CRD_GROUP}", "-n", namespace, check=False).returncode
            == 0
        ),
        "the Widget resource to be served",
    )
    yield
    kube.kubectl("delete", "crd", f"widgets.{CRD_GROUP}", "--wait=false")


@pytest.mark.usefixtures("widget_crd_installed")
def test_cel_rule_rejects_an_invalid_custom_object(
    kube_control_plane: KubeControlPlane, namespace: str
) -> None:
    kube_control_plane.apply(widget("fine", namespace, replicas=1, max_replicas=3))
    with pytest.raises(KubectlError) as rejected:
        kube_control_plane.apply(widget("too-many", namespace, replicas=5, max_replicas=3))
    assert "replicas must not exceed maxReplicas" in rejected.value.stderr
    assert "Invalid" in rejected.value.stderr
    names = kube_control_plane.kubectl(
        "get", f"widgets.{CRD_GROUP}", "-n", namespace, "-o", "name"
    ).stdout
    assert names.split() == [f"widget.{CRD_GROUP}/fine"]


# --------------------------------------------------------------------------- mutating webhook


def add_mutated_label(request: dict[str, Any]) -> AdmissionDecision:
    labels = request["object"]["metadata"].get("labels") or {}
    if MUTATED_LABEL in labels:
        return AdmissionDecision()
    path = "/metadata/labels/" + MUTATED_LABEL.replace("~", "~0").replace("/", "~1")
    return AdmissionDecision(patch=[{"op": "add", "path": path, "value": "true"}])


def labelled_configmap(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {INJECT_LABEL: "yes"}},
        "data": {"key": "value"},
    }


def configmap_rules() -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["configmaps"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]


def mutated_on_dry_run(kube: KubeControlPlane, namespace: str) -> bool:
    probe = labelled_configmap(unique("probe"), namespace)
    result = kube.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe)
    )
    return MUTATED_LABEL in json.loads(result.stdout)["metadata"].get("labels", {})


def test_mutating_webhook_on_the_host_mutates_created_objects(
    kube_control_plane: KubeControlPlane, namespace: str
) -> None:
    kube = kube_control_plane
    name = unique("smoke-mutator")
    with host_webhook_server(kube, add_mutated_label) as webhook:
        configuration = mutating_webhook_configuration(
            name,
            webhook.url,
            webhook.ca_bundle,
            rules=configmap_rules(),
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            object_selector={"matchLabels": {INJECT_LABEL: "yes"}},
        )
        kube.apply(configuration)
        try:
            eventually(
                lambda: mutated_on_dry_run(kube, namespace),
                "the webhook configuration to take effect",
            )
            kube.kubectl(
                "create", "-f", "-", input=json.dumps(labelled_configmap("mutated", namespace))
            )
        finally:
            kube.kubectl("delete", "mutatingwebhookconfiguration", name)
    stored = kube.kubectl_json("get", "configmap", "mutated", "-n", namespace)
    assert stored["metadata"]["labels"] == {INJECT_LABEL: "yes", MUTATED_LABEL: "true"}
    seen = {
        (r["operation"], r["kind"]["kind"], r["namespace"], r.get("dryRun"))
        for r in webhook.requests
    }
    assert ("CREATE", "ConfigMap", namespace, False) in seen


# --------------------------------------------------------------------------- RBAC


def raw_get_status(kube: KubeControlPlane, path: str, context: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(
            f"{kube.server}{path}", timeout=10, context=context
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


def reader_role_and_binding(namespace: str, group: str) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "configmap-reader", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "configmap-reader", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "configmap-reader",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }
    return [role, binding]


def test_identity_without_rbac_permission_is_refused(
    kube_control_plane: KubeControlPlane, namespace: str
) -> None:
    kube = kube_control_plane
    user = kube.make_user(unique("reader"), groups=["smoke-readers"])
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    context = kube.ssl_context(user.client)
    assert raw_get_status(kube, path, context) == 403
    with pytest.raises(KubectlError) as refused:
        kube.kubectl("get", "configmaps", "-n", namespace, kubeconfig=user.kubeconfig)
    assert f'User "{user.name}" cannot list resource "configmaps"' in refused.value.stderr
    assert raw_get_status(kube, path, kube.ssl_context()) == 200  # the admin may

    for manifest in reader_role_and_binding(namespace, "smoke-readers"):
        kube.apply(manifest)
    eventually(lambda: raw_get_status(kube, path, context) == 200, "the RoleBinding to take effect")
    assert raw_get_status(kube, f"/api/v1/namespaces/{namespace}/secrets", context) == 403


# --------------------------------------------------------------------------- helm


def write_trivial_chart(directory: Path) -> Path:
    chart = directory / "smoke"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\n"
        "name: smoke\n"
        "description: A smoke-test chart\n"
        "version: 0.1.0\n"
        'appVersion: "1.0"\n'
    )
    (chart / "values.yaml").write_text(
        "# greeting: text stored in the ConfigMap\ngreeting: hello\n"
    )
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-greeting\n"
        "  namespace: {{ .Release.Namespace }}\n"
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
    )
    return chart


def test_helm_reports_the_pinned_version(testenv_bin_dir: Path, tmp_path: Path) -> None:
    output = helm(testenv_bin_dir, tmp_path, "version", "--template", "{{ .Version }}").stdout
    assert output.strip() == pinned_version("HELM_VERSION")


def test_helm_lint_accepts_a_trivial_chart(testenv_bin_dir: Path, tmp_path: Path) -> None:
    chart = write_trivial_chart(tmp_path)
    output = helm(testenv_bin_dir, tmp_path, "lint", str(chart)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in output


def test_helm_template_renders_values(testenv_bin_dir: Path, tmp_path: Path) -> None:
    chart = write_trivial_chart(tmp_path)
    args = ("template", "demo", str(chart), "--namespace", "apps", "--set", "greeting=bonjour")
    output = helm(testenv_bin_dir, tmp_path, *args).stdout
    assert "name: demo-greeting" in output
    assert "namespace: apps" in output
    assert 'greeting: "bonjour"' in output


def test_helm_template_output_applies_to_the_control_plane(
    kube_control_plane: KubeControlPlane, namespace: str, tmp_path: Path
) -> None:
    chart = write_trivial_chart(tmp_path)
    args = ("template", "demo", str(chart), "--namespace", namespace)
    rendered = helm(kube_control_plane.bin_dir, tmp_path, *args).stdout
    kube_control_plane.kubectl("apply", "-f", "-", input=rendered)
    stored = kube_control_plane.kubectl_json("get", "configmap", "demo-greeting", "-n", namespace)
    assert stored["data"] == {"greeting": "hello"}
