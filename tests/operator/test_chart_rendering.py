"""The Helm chart lints, renders and says what the design says, value by value.

``helm`` comes from the test environment (``tests/testenv/build.sh``); the last test sends the
whole rendering to the real API server (server-side dry run), so every object is valid.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from agentpersistence.operator.webhook import handlers, inject
from agentpersistence.operator.webhook.settings import InjectionSettings, injection_from_env
from rig.kube import KubeControlPlane, KubectlError, helm
from rig.operator import POD_CREATION

pytestmark = pytest.mark.controlplane

CHART = Path(__file__).resolve().parents[2] / "charts" / "agentpersistence"
RELEASE = "demo"
NAMESPACE = "ap-system"
FULLNAME = "demo-agentpersistence"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


@pytest.fixture
def render(testenv_bin_dir: Path, tmp_path: Path) -> Render:
    """``render(*helm_args)``: the chart's objects as ``helm template`` renders them."""

    def rendered(*args: str, namespace: str = NAMESPACE) -> list[Manifest]:
        argv = ["template", RELEASE, str(CHART), "-n", namespace, *args]
        result = helm(testenv_bin_dir, tmp_path, *argv, check=False)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return rendered


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(objects: list[Manifest]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def operator_container(objects: list[Manifest]) -> Manifest:
    containers: list[Manifest] = one(objects, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


def container_env(container: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("--set", "webhook.certificates.mode=cert-manager"),
        ("--set", "operator.watchNamespaces={team-a,team-b}", "--set", "rbac.create=true"),
        ("--set", "sidecar.probePort=0", "--set", "sidecar.nativeSidecars=false"),
        ("--set", "webhook.namespaceOptIn=false"),
        ("--set", "operator.replicas=1", "--set", "operator.updateStrategy=Recreate"),
    ],
)
def test_helm_lint_passes(testenv_bin_dir: Path, tmp_path: Path, values: tuple[str, ...]) -> None:
    result = helm(testenv_bin_dir, tmp_path, "lint", "--strict", str(CHART), *values, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (("--set", "webhook.timeoutSeconds=31"), "/webhook/timeoutSeconds"),
        (("--set", "webhook.failurePolicy=Sometimes"), "/webhook/failurePolicy"),
        (("--set", "sidecar.nativeSidecars=maybe"), "/sidecar/nativeSidecars"),
        (("--set", "operator.replicas=0"), "/operator/replicas"),
        (("--set", "operator.updateStrategy=OnDelete"), "/operator/updateStrategy"),
        (("--set", "webhook.certificates.mode=vault"), "/webhook/certificates/mode"),
        (("--set", "webhook.namespaceOptIn=maybe"), "/webhook/namespaceOptIn"),
    ],
)
def test_the_schema_refuses_bad_values(
    testenv_bin_dir: Path, tmp_path: Path, values: tuple[str, ...], fragment: str
) -> None:
    result = helm(testenv_bin_dir, tmp_path, "template", RELEASE, str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert fragment in result.stderr


# --------------------------------------------------------------------------- objects


def test_the_default_rendering_has_the_designed_objects(render: Render) -> None:
    assert kinds(render()) == [
        ("ClusterKopfPeering", FULLNAME),
        ("ClusterRole", FULLNAME),
        ("ClusterRole", f"{FULLNAME}-cluster"),
        ("ClusterRole", f"{FULLNAME}-secrets"),
        ("ClusterRoleBinding", FULLNAME),
        ("ClusterRoleBinding", f"{FULLNAME}-cluster"),
        ("Deployment", FULLNAME),
        ("MutatingWebhookConfiguration", FULLNAME),
        ("Pod", f"{FULLNAME}-test-webhook"),
        ("PodDisruptionBudget", FULLNAME),
        ("Secret", f"{FULLNAME}-webhook-tls"),
        ("Service", f"{FULLNAME}-webhook"),
        ("ServiceAccount", FULLNAME),
    ]


def test_the_operator_runs_non_root_on_a_read_only_filesystem(render: Render) -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = operator_container(objects)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert pod["serviceAccountName"] == FULLNAME


def test_the_operator_runs_kopf_peered_with_its_liveness_endpoint(render: Render) -> None:
    container = operator_container(render())
    assert container["command"] == ["agentpersistence-operator"]
    assert container["args"] == [
        f"--peering={FULLNAME}",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=json",
        "--all-namespaces",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 9443, "health": 8080}


# --------------------------------------------------------------------------- availability

OPERATOR_POD = {
    "app.kubernetes.io/name": "agentpersistence",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}


def test_two_replicas_roll_without_losing_one(render: Render) -> None:
    deployment = one(render(), "Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert deployment["template"]["metadata"]["labels"] == OPERATOR_POD
    assert deployment["selector"]["matchLabels"].items() <= OPERATOR_POD.items()


def test_replicas_prefer_different_nodes_unless_affinity_is_given(render: Render) -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    preferred = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred == [
        {
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": OPERATOR_POD},
            },
        }
    ]
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["podAntiAffinity"]
    )
    mine: Manifest = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    given = one(render("--set-json", f"operator.affinity={json.dumps(mine)}"), "Deployment")
    assert given["spec"]["template"]["spec"]["affinity"] == mine


def test_a_disruption_budget_keeps_one_replica_when_there_are_several(render: Render) -> None:
    budget = one(render(), "PodDisruptionBudget")
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": OPERATOR_POD}}
    assert budget["metadata"]["namespace"] == NAMESPACE
    single = render("--set", "operator.replicas=1")
    assert not [o for o in single if o["kind"] == "PodDisruptionBudget"]
    assert one(single, "Deployment")["spec"]["replicas"] == 1
    recreate = one(render("--set", "operator.updateStrategy=Recreate"), "Deployment")
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_the_webhook_service_selects_every_replica(render: Render) -> None:
    """Not only the active peer: every replica answers admission requests."""
    objects = render()
    selector = one(objects, "Service")["spec"]["selector"]
    assert selector.items() <= OPERATOR_POD.items()
    assert one(objects, "Service")["spec"]["ports"][0]["targetPort"] == "webhook"


def test_replicas_peer_through_the_releases_peering_object(render: Render) -> None:
    """kopf's identity is the pod's name; the peering object is the one --peering names,
    cluster-wide, or one per watched namespace."""
    objects = render()
    container = operator_container(objects)
    pod_id = next(e for e in container["env"] if e["name"] == "POD_ID")
    assert pod_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    peering = one(objects, "ClusterKopfPeering", FULLNAME)
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert "namespace" not in peering["metadata"]
    scoped = render("--set", "operator.watchNamespaces={team-a,team-b}")
    peerings = [o for o in scoped if o["kind"] in {"KopfPeering", "ClusterKopfPeering"}]
    assert [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in peerings] == [
        ("KopfPeering", "team-a", FULLNAME),
        ("KopfPeering", "team-b", FULLNAME),
    ]


def test_the_chart_ships_kopfs_peering_crds() -> None:
    documents = list(yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()))
    names = {(d["spec"]["names"]["kind"], d["spec"]["scope"]) for d in documents}
    assert names == {("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")}
    for document in documents:
        assert document["spec"]["group"] == "kopf.dev"
        status = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        assert status["status"]["x-kubernetes-preserve-unknown-fields"] is True


def test_the_deployment_env_is_what_the_webhook_reads(render: Render) -> None:
    env = container_env(operator_container(render()))
    assert injection_from_env(env) == InjectionSettings(
        image=f"agentpersistence/sidecar:{APP_VERSION}",
        image_pull_policy="IfNotPresent",
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        native_sidecars=True,  # helm's default Kubernetes version is >= 1.29
    )
    assert env["AGENTPERSISTENCE_WEBHOOK_PORT"] == "9443"
    assert env["AGENTPERSISTENCE_WEBHOOK_CERT_DIR"] == "/etc/agentpersistence/webhook"


def test_sidecar_values_reach_the_webhook(render: Render) -> None:
    objects = render(
        "--set", "sidecar.image.digest=sha256:" + "a" * 64,
        "--set", "sidecar.probePort=0",
        "--set", "sidecar.socketDir=/run/ap",
        "--set-json", 'sidecar.env=[{"name": "AWS_REGION", "value": "eu-west-1"}]',
    )  # fmt: skip
    settings = injection_from_env(container_env(operator_container(objects)))
    assert settings.image == "agentpersistence/sidecar@sha256:" + "a" * 64
    assert settings.probe_port is None
    assert settings.socket_path == "/run/ap/sidecar.sock"
    assert settings.extra_env == ({"name": "AWS_REGION", "value": "eu-west-1"},)


@pytest.mark.parametrize(
    ("kube_version", "value", "expected"),
    [("1.28.0", "auto", "false"), ("1.29.0", "auto", "true"), ("1.34.0", "false", "false")],
)
def test_native_sidecars_follow_the_cluster_version(
    render: Render, kube_version: str, value: str, expected: str
) -> None:
    objects = render("--kube-version", kube_version, "--set", f"sidecar.nativeSidecars={value}")
    assert (
        container_env(operator_container(objects))["AGENTPERSISTENCE_NATIVE_SIDECARS"] == expected
    )


def test_the_certificate_secret_is_mounted_where_the_webhook_reads_it(render: Render) -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == f"{FULLNAME}-webhook-tls"
    mounts = {m["name"]: m for m in operator_container(objects)["volumeMounts"]}
    assert mounts["webhook-tls"] == {
        "name": "webhook-tls",
        "mountPath": "/etc/agentpersistence/webhook",
        "readOnly": True,
    }
    assert mounts["tmp"]["mountPath"] == "/tmp"


# --------------------------------------------------------------------------- the webhook


EXCLUDED = {
    "key": "kubernetes.io/metadata.name",
    "operator": "NotIn",
    "values": [NAMESPACE, "kube-system"],
}


def webhooks(objects: list[Manifest]) -> dict[str, Manifest]:
    """The configuration's entries by name."""
    entries = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    return {entry["name"]: entry for entry in entries}


def test_the_webhook_configuration_has_one_entry_per_route(render: Render) -> None:
    objects = render()
    entries = webhooks(objects)
    assert list(entries) == ["inject.agentpersistence.io", "inject-namespace.agentpersistence.io"]
    service = one(objects, "Service")
    shared = {
        "admissionReviewVersions": ["v1"],
        "rules": [POD_CREATION],
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "failurePolicy": "Fail",
        "reinvocationPolicy": "IfNeeded",
    }
    paths = {}
    for name, entry in entries.items():
        client = entry.pop("clientConfig")
        assert client["caBundle"]
        paths[name] = client["service"].pop("path")
        assert client["service"] == {
            "name": service["metadata"]["name"],
            "namespace": NAMESPACE,
            "port": 443,
        }
        assert {key: entry.pop(key) for key in shared} == shared
    assert paths == {
        "inject.agentpersistence.io": handlers.WEBHOOK_PATH,
        "inject-namespace.agentpersistence.io": handlers.NAMESPACE_WEBHOOK_PATH,
    }
    # What is left: the selectors, which make the routes.
    assert entries["inject.agentpersistence.io"] == {
        "name": "inject.agentpersistence.io",
        "objectSelector": {"matchLabels": {inject.INJECT_LABEL: "true"}},
        "namespaceSelector": {"matchExpressions": [EXCLUDED]},
    }
    assert entries["inject-namespace.agentpersistence.io"] == {
        "name": "inject-namespace.agentpersistence.io",
        "objectSelector": {
            "matchExpressions": [{"key": inject.INJECT_LABEL, "operator": "DoesNotExist"}]
        },
        "namespaceSelector": {
            "matchLabels": {inject.NAMESPACE_INJECT_LABEL: inject.NAMESPACE_INJECT_ENABLED},
            "matchExpressions": [EXCLUDED],
        },
    }
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_namespace_route_can_be_turned_off(render: Render) -> None:
    objects = render("--set", "webhook.namespaceOptIn=false")
    assert list(webhooks(objects)) == ["inject.agentpersistence.io"]
    [container] = one(objects, "Pod")["spec"]["containers"]
    assert not [arg for arg in container["args"] if arg.startswith("--namespace-url=")]


def test_the_release_namespace_is_excluded_once(render: Render) -> None:
    objects = render("--set", "webhook.excludedNamespaces={kube-system,ap-system}")
    for entry in webhooks(objects).values():
        assert entry["namespaceSelector"]["matchExpressions"] == [EXCLUDED]


def test_the_ca_bundle_signed_the_served_certificate(render: Render) -> None:
    objects = render()
    secret = one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    for entry in webhooks(objects).values():
        assert entry["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    service = f"{FULLNAME}-webhook"
    assert names.get_values_for_type(x509.DNSName) == [
        service,
        f"{service}.{NAMESPACE}",
        f"{service}.{NAMESPACE}.svc",
        f"{service}.{NAMESPACE}.svc.cluster.local",
    ]


def test_cert_manager_mode_lets_cainjector_fill_the_bundle(render: Render) -> None:
    objects = render("--set", "webhook.certificates.mode=cert-manager")
    assert not [o for o in objects if o["kind"] == "Secret"]
    certificate = one(objects, "Certificate", f"{FULLNAME}-webhook")
    assert certificate["spec"]["secretName"] == f"{FULLNAME}-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"name": f"{FULLNAME}-webhook-ca", "kind": "Issuer"}
    configuration = one(objects, "MutatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{FULLNAME}-webhook"
    }
    assert len(configuration["webhooks"]) == 2
    assert not [e for e in configuration["webhooks"] if "caBundle" in e["clientConfig"]]
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Issuer"} == {
        f"{FULLNAME}-selfsigned",
        f"{FULLNAME}-webhook-ca",
    }


def test_cert_manager_with_an_issuer_creates_none(render: Render) -> None:
    objects = render(
        "--set", "webhook.certificates.mode=cert-manager",
        "--set", "webhook.certificates.certManager.issuerRef.name=corp-ca",
        "--set", "webhook.certificates.certManager.issuerRef.kind=ClusterIssuer",
    )  # fmt: skip
    assert not [o for o in objects if o["kind"] == "Issuer"]
    certificate = one(objects, "Certificate")
    assert certificate["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_the_helm_test_pod_calls_the_webhook_through_its_service(render: Render) -> None:
    pod = one(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "agentpersistence.operator.webhook.selftest"]
    base = f"https://{FULLNAME}-webhook.{NAMESPACE}.svc:443"
    assert f"--url={base}{handlers.WEBHOOK_PATH}" in container["args"]
    assert f"--namespace-url={base}{handlers.NAMESPACE_WEBHOOK_PATH}" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["volumes"][0]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


# --------------------------------------------------------------------------- RBAC


def rules(objects: list[Manifest], name: str) -> list[Manifest]:
    found: list[Manifest] = one(objects, "ClusterRole", name)["rules"]
    return found


def test_rbac_is_least_privilege(render: Render) -> None:
    objects = render()
    assert rules(objects, FULLNAME) == [
        {
            "apiGroups": ["agentpersistence.io"],
            "resources": ["agentpersistences"],
            "verbs": ["get", "list", "watch", "patch"],
        },
        {
            "apiGroups": ["agentpersistence.io"],
            "resources": ["agentpersistences/status"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["agentpersistence.io"],
            "resources": ["agentpersistences/finalizers"],
            "verbs": ["update"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["create", "get", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    assert rules(objects, f"{FULLNAME}-cluster") == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        *peering_rules("clusterkopfpeerings"),
    ]
    secrets = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert rules(objects, f"{FULLNAME}-secrets") == secrets
    assert not [o for o in objects if o["kind"].endswith("Binding") and "secrets" in str(o)]
    every = [r for name in (FULLNAME, f"{FULLNAME}-cluster") for r in rules(objects, name)]
    assert not [r for r in every if "pods" in r["resources"] or "secrets" in r["resources"]]
    assert not [r for r in every if "*" in r["verbs"] or "*" in r["resources"]]


def peering_rules(plural: str) -> list[Manifest]:
    """kopf's peering: watch every peering object of the kind, write only the release's."""
    return [
        {"apiGroups": ["kopf.dev"], "resources": [plural], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["kopf.dev"],
            "resources": [plural],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "patch"],
        },
    ]


def test_watched_namespaces_get_role_bindings_and_the_webhook_only_sees_them(
    render: Render,
) -> None:
    objects = render("--set", "operator.watchNamespaces={team-a,team-b}")
    assert rules(objects, FULLNAME)[-2:] == peering_rules("kopfpeerings")
    assert "kopf.dev" not in str(rules(objects, f"{FULLNAME}-cluster"))
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert {b["roleRef"]["name"] for b in bindings} == {FULLNAME}
    assert [b["metadata"]["name"] for b in objects if b["kind"] == "ClusterRoleBinding"] == [
        f"{FULLNAME}-cluster"
    ]
    args = operator_container(objects)["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    watched = {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["team-a", "team-b"],
    }
    for entry in webhooks(objects).values():
        assert entry["namespaceSelector"]["matchExpressions"] == [EXCLUDED, watched]


def test_secrets_are_readable_only_in_the_namespaces_named(render: Render) -> None:
    objects = render("--set", "rbac.secretNamespaces={team-a}")
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert [(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings] == [
        ("team-a", f"{FULLNAME}-secrets")
    ]
    assert [s["name"] for s in bindings[0]["subjects"]] == [FULLNAME]


# --------------------------------------------------------------------------- the API server


def test_the_rendering_is_accepted_by_the_api_server(
    kube_control_plane: KubeControlPlane, render: Render
) -> None:
    kube = kube_control_plane
    namespace = f"ap-chart-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    # Helm installs crds/ before the templates; `helm template` leaves them out.
    kube.kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "kopf.dev_peerings.yaml"))
    kube.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    try:
        objects = render(namespace=namespace)
        stream = "\n---\n".join(json.dumps(o) for o in objects)
        try:
            argv = ("apply", "--dry-run=server", "-o", "name", "-f", "-")
            result = kube.kubectl(*argv, input=stream)
        except KubectlError as error:
            pytest.fail(f"the API server refused the rendering: {error.stderr}")
        assert len(result.stdout.split()) == len(objects)
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false")


def install_dry_run(kube: KubeControlPlane, home: Path, namespace: str) -> list[Manifest]:
    """``helm install --dry-run=server``: rendered against the cluster (``lookup`` works)."""
    argv = ["install", RELEASE, str(CHART), "-n", namespace, "--dry-run=server"]
    homes = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    env = kube.env() | homes | {"HOME": str(home)}
    helm_bin = str(kube.bin_dir / "helm")
    result = subprocess.run([helm_bin, *argv], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    manifest = result.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)
    assert "Injected sidecars are native sidecars" in manifest[1]
    return [doc for doc in yaml.safe_load_all(manifest[0]) if doc]


def test_an_upgrade_keeps_the_existing_certificates(
    kube_control_plane: KubeControlPlane, tmp_path: Path
) -> None:
    """An existing webhook Secret (a previous release) is reused, with its CA as caBundle."""
    kube = kube_control_plane
    namespace = f"ap-certs-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    try:
        first = one(install_dry_run(kube, tmp_path, namespace), "Secret")
        owner = {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": namespace}
        kube.apply(first | {"metadata": first["metadata"] | {"annotations": owner}})
        again = install_dry_run(kube, tmp_path, namespace)
        assert one(again, "Secret")["data"] == first["data"]
        for entry in webhooks(again).values():
            assert entry["clientConfig"]["caBundle"] == first["data"]["ca.crt"]
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false")
