"""The injection is a pure function: the whole resulting pod is spelled out and compared.

Each test applies :func:`inject`'s JSON patch to a pod (with the webhook's own applier, and
cross-checked with the ``jsonpatch`` library kopf uses) and asserts on the complete pod.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from agentpersistence.operator.bodies import Status
from agentpersistence.operator.webhook.inject import (
    NAME_ANNOTATION,
    STATUS_ANNOTATION,
    Injection,
    Refusal,
    RefusalReason,
    already_injected,
    inject,
)
from agentpersistence.operator.webhook.patching import applied
from agentpersistence.operator.webhook.payloads import AgentPersistenceView, EnvVar, Pod
from agentpersistence.operator.webhook.settings import InjectionSettings

IMAGE = "registry.example/agentpersistence-sidecar:1.0"
SOCKET = "/var/run/agentpersistence/sidecar.sock"
INJECT_LABEL = "agentpersistence.io/inject"
READY: Status = {
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Provisioned",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    ]
}

SOCKET_MOUNT = {
    "name": "agentpersistence-socket",
    "mountPath": "/var/run/agentpersistence",
    "readOnly": True,
}
SOCKET_ENV = {"name": "AGENTPERSISTENCE_SOCKET", "value": SOCKET}
VOLUMES = [
    {"name": "agentpersistence-socket", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    {
        "name": "agentpersistence-config",
        "configMap": {
            "name": "notes-sidecar-config",
            "items": [{"key": "sidecar.yaml", "path": "sidecar.yaml"}],
        },
    },
]
SIDECAR: dict[str, Any] = {
    "name": "agentpersistence-sidecar",
    "image": IMAGE,
    "command": ["agentpersistence-sidecar"],
    "args": [
        "--socket",
        SOCKET,
        "--config",
        "/etc/agentpersistence/sidecar.yaml",
        "--probe-port",
        "9147",
    ],
    "ports": [{"name": "ap-probe", "containerPort": 9147, "protocol": "TCP"}],
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    "volumeMounts": [
        {"name": "agentpersistence-socket", "mountPath": "/var/run/agentpersistence"},
        {"name": "agentpersistence-config", "mountPath": "/etc/agentpersistence", "readOnly": True},
    ],
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "startupProbe": {
        "exec": {"command": ["test", "-S", SOCKET]},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 120,
    },
    "livenessProbe": {
        "httpGet": {"path": "/healthz", "port": 9147},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    },
    "readinessProbe": {
        "httpGet": {"path": "/readyz", "port": 9147},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    },
    "restartPolicy": "Always",
    "terminationMessagePolicy": "FallbackToLogsOnError",
}


@pytest.fixture
def settings() -> InjectionSettings:
    return InjectionSettings(image=IMAGE)


def resource(
    spec: dict[str, Any] | None = None, status: Status | None = None
) -> AgentPersistenceView:
    base = {"checkpointer": {"backend": "memory"}}
    return {
        "name": "notes",
        "spec": base | (spec or {}),
        "status": READY if status is None else status,
    }


def agent_pod(**spec: Any) -> Pod:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "agent-0",
            "namespace": "team-a",
            "labels": {"app": "agent", INJECT_LABEL: "true"},
            "annotations": {NAME_ANNOTATION: "notes"},
        },
        "spec": {
            "containers": [
                {
                    "name": "agent",
                    "image": "registry.example/agent:1",
                    "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                }
            ]
        }
        | spec,
    }
    return pod  # type: ignore[return-value]


def patched(pod: Pod, result: Injection | Refusal) -> Any:
    """The pod after the patch, applied by both appliers (which must agree)."""
    assert isinstance(result, Injection), result
    ours = applied(pod, result.patch)
    theirs = jsonpatch.apply_patch(copy.deepcopy(pod), result.patch)
    assert ours == theirs
    return ours


def with_sidecar(**changes: Any) -> dict[str, Any]:
    return copy.deepcopy(SIDECAR) | changes


# --------------------------------------------------------------------------- the design


def test_labelled_pod_gets_exactly_the_designed_patch(settings: InjectionSettings) -> None:
    pod = agent_pod()
    result = inject(pod, resource(), settings)
    assert patched(pod, result) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "agent-0",
            "namespace": "team-a",
            "labels": {"app": "agent", INJECT_LABEL: "true"},
            "annotations": {NAME_ANNOTATION: "notes", STATUS_ANNOTATION: "injected"},
        },
        "spec": {
            "containers": [
                {
                    "name": "agent",
                    "image": "registry.example/agent:1",
                    "env": [{"name": "LOG_LEVEL", "value": "debug"}, SOCKET_ENV],
                    "volumeMounts": [SOCKET_MOUNT],
                }
            ],
            "initContainers": [SIDECAR],
            "volumes": VOLUMES,
            "securityContext": {"supplementalGroups": [65532]},
        },
    }
    assert isinstance(result, Injection)
    assert result.warnings == ()


def test_the_patch_adds_and_never_replaces_or_removes(settings: InjectionSettings) -> None:
    result = inject(agent_pod(), resource(), settings)
    assert isinstance(result, Injection)
    assert {op["op"] for op in result.patch} == {"add"}


def test_the_input_pod_is_not_mutated(settings: InjectionSettings) -> None:
    pod = agent_pod()
    before = copy.deepcopy(pod)
    result = inject(pod, resource(), settings)
    patched(pod, result)
    assert pod == before


def test_every_app_container_gets_the_socket_and_the_env(settings: InjectionSettings) -> None:
    worker = {"name": "worker", "image": "registry.example/worker:1"}
    pod = agent_pod(containers=[agent_pod()["spec"]["containers"][0], worker])
    containers = patched(pod, inject(pod, resource(), settings))["spec"]["containers"]
    assert [c["volumeMounts"] for c in containers] == [[SOCKET_MOUNT], [SOCKET_MOUNT]]
    assert containers[1]["env"] == [SOCKET_ENV]


def test_existing_lists_are_appended_to(settings: InjectionSettings) -> None:
    setup = {"name": "setup", "image": "registry.example/setup:1"}
    data = {"name": "data", "emptyDir": {}}
    pod = agent_pod(initContainers=[setup], volumes=[data])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    spec = patched(pod, inject(pod, resource(), settings))["spec"]
    assert spec["initContainers"] == [setup, SIDECAR]  # after the pod's own init containers
    assert spec["volumes"] == [data, *VOLUMES]
    mounts = spec["containers"][0]["volumeMounts"]
    assert mounts == [{"name": "data", "mountPath": "/data"}, SOCKET_MOUNT]


def test_other_annotations_and_security_context_are_kept(settings: InjectionSettings) -> None:
    pod = agent_pod(securityContext={"runAsUser": 1000, "fsGroup": 2000})
    pod["metadata"]["annotations"]["team"] = "a"
    result = patched(pod, inject(pod, resource(), settings))
    assert result["metadata"]["annotations"] == {
        NAME_ANNOTATION: "notes",
        "team": "a",
        STATUS_ANNOTATION: "injected",
    }
    assert result["spec"]["securityContext"] == {
        "runAsUser": 1000,
        "fsGroup": 2000,
        "supplementalGroups": [65532],
    }


@pytest.mark.parametrize(
    ("groups", "expected"), [([3000], [3000, 65532]), ([65532], [65532]), ([], [65532])]
)
def test_supplemental_groups_are_merged(
    settings: InjectionSettings, groups: list[int], expected: list[int]
) -> None:
    pod = agent_pod(securityContext={"supplementalGroups": groups})
    result = patched(pod, inject(pod, resource(), settings))
    assert result["spec"]["securityContext"]["supplementalGroups"] == expected


# --------------------------------------------------------------------------- env merging


def test_env_is_created_when_the_container_has_none(settings: InjectionSettings) -> None:
    pod = agent_pod()
    del pod["spec"]["containers"][0]["env"]
    result = patched(pod, inject(pod, resource(), settings))
    assert result["spec"]["containers"][0]["env"] == [SOCKET_ENV]


def test_a_container_setting_the_socket_env_keeps_it_with_a_warning(
    settings: InjectionSettings,
) -> None:
    pod = agent_pod()
    own: EnvVar = {"name": "AGENTPERSISTENCE_SOCKET", "value": "/elsewhere.sock"}
    pod["spec"]["containers"][0]["env"] = [own]
    result = inject(pod, resource(), settings)
    assert patched(pod, result)["spec"]["containers"][0]["env"] == [own]
    assert isinstance(result, Injection)
    assert len(result.warnings) == 1
    assert "'agent' sets AGENTPERSISTENCE_SOCKET='/elsewhere.sock'" in result.warnings[0]


def test_the_same_socket_env_is_kept_silently(settings: InjectionSettings) -> None:
    pod = agent_pod()
    pod["spec"]["containers"][0]["env"] = [{"name": "AGENTPERSISTENCE_SOCKET", "value": SOCKET}]
    result = inject(pod, resource(), settings)
    assert patched(pod, result)["spec"]["containers"][0]["env"] == [SOCKET_ENV]
    assert isinstance(result, Injection)
    assert result.warnings == ()


# --------------------------------------------------------------------------- untouched pods


@pytest.mark.parametrize("labels", [None, {}, {"app": "agent"}, {INJECT_LABEL: "false"}])
def test_pods_without_the_label_are_untouched(
    settings: InjectionSettings, labels: dict[str, str] | None
) -> None:
    pod = agent_pod()
    pod["metadata"]["labels"] = labels  # type: ignore[typeddict-item]
    assert inject(pod, resource(), settings) == Injection()
    assert inject(pod, None, settings) == Injection()  # no lookup result needed either


def test_an_injected_pod_gets_no_second_injection(settings: InjectionSettings) -> None:
    pod = agent_pod()
    once = patched(pod, inject(pod, resource(), settings))
    assert already_injected(once)
    assert inject(once, resource(), settings) == Injection()


def test_a_pod_with_the_sidecar_container_counts_as_injected(
    settings: InjectionSettings,
) -> None:
    pod = agent_pod(initContainers=[{"name": "agentpersistence-sidecar", "image": IMAGE}])
    assert inject(pod, resource(), settings) == Injection()


def test_the_status_annotation_alone_counts_as_injected(settings: InjectionSettings) -> None:
    pod = agent_pod()
    pod["metadata"]["annotations"][STATUS_ANNOTATION] = "injected"
    assert inject(pod, resource(), settings) == Injection()


# --------------------------------------------------------------------------- refusals


def test_a_missing_resource_is_refused_with_a_clear_message(
    settings: InjectionSettings,
) -> None:
    result = inject(agent_pod(), None, settings)
    assert isinstance(result, Refusal)
    assert result.reason is RefusalReason.NOT_FOUND
    assert result.message == (
        "pod 'agent-0' names AgentPersistence 'notes' (agentpersistence.io/name), which does "
        "not exist in namespace 'team-a': create it (kubectl get agentpersistences lists "
        "them) or fix the annotation; a controller retries the pod's creation"
    )


@pytest.mark.parametrize("annotations", [None, {}, {NAME_ANNOTATION: ""}, {NAME_ANNOTATION: " "}])
def test_a_labelled_pod_without_a_name_is_refused(
    settings: InjectionSettings, annotations: dict[str, str] | None
) -> None:
    pod = agent_pod()
    pod["metadata"]["annotations"] = annotations  # type: ignore[typeddict-item]
    result = inject(pod, resource(), settings)
    assert isinstance(result, Refusal)
    assert result.reason is RefusalReason.MISSING_NAME
    assert "add agentpersistence.io/name: <AgentPersistence name>" in result.message


def test_a_generated_name_is_described_in_messages(settings: InjectionSettings) -> None:
    pod = agent_pod()
    pod["metadata"] = pod["metadata"] | {"generateName": "agent-7d9f-"}
    del pod["metadata"]["name"]
    del pod["metadata"]["namespace"]
    result = inject(pod, None, settings)
    assert isinstance(result, Refusal)
    assert "pod 'agent-7d9f-<generated>'" in result.message
    assert "in the pod's namespace" in result.message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"volumes": [{"name": "agentpersistence-socket", "emptyDir": {}}]}, "is reserved"),
        ({"volumes": [{"name": "agentpersistence-config", "emptyDir": {}}]}, "is reserved"),
        (
            {
                "containers": [
                    {
                        "name": "agent",
                        "volumeMounts": [{"name": "x", "mountPath": "/var/run/agentpersistence/"}],
                    }
                ]
            },
            "already mounts a volume at /var/run/agentpersistence",
        ),
        (
            {"containers": [{"name": "agent", "ports": [{"containerPort": 9147}]}]},
            "uses port 9147, the sidecar's probe port",
        ),
    ],
)
def test_pods_using_what_the_sidecar_needs_are_refused(
    settings: InjectionSettings, change: dict[str, Any], fragment: str
) -> None:
    result = inject(agent_pod(**change), resource(), settings)
    assert isinstance(result, Refusal)
    assert result.reason is RefusalReason.NAME_CONFLICT
    assert fragment in result.message


# --------------------------------------------------------------------------- service account


@pytest.mark.parametrize("current", [None, "", "default"])
def test_the_resources_service_account_is_set_on_a_pod_without_one(
    settings: InjectionSettings, current: str | None
) -> None:
    pod = agent_pod() if current is None else agent_pod(serviceAccountName=current)
    ap = resource({"serviceAccountName": "notes-aws"})
    assert patched(pod, inject(pod, ap, settings))["spec"]["serviceAccountName"] == "notes-aws"


def test_the_deprecated_service_account_alias_follows(settings: InjectionSettings) -> None:
    pod = agent_pod(serviceAccountName="default", serviceAccount="default")
    spec = patched(pod, inject(pod, resource({"serviceAccountName": "notes-aws"}), settings))
    assert (spec["spec"]["serviceAccountName"], spec["spec"]["serviceAccount"]) == (
        "notes-aws",
        "notes-aws",
    )


def test_the_same_service_account_needs_no_change(settings: InjectionSettings) -> None:
    pod = agent_pod(serviceAccountName="notes-aws")
    result = inject(pod, resource({"serviceAccountName": "notes-aws"}), settings)
    assert isinstance(result, Injection)
    assert not [op for op in result.patch if "serviceAccount" in op["path"]]


def test_a_conflicting_service_account_is_refused(settings: InjectionSettings) -> None:
    pod = agent_pod(serviceAccountName="agent")
    result = inject(pod, resource({"serviceAccountName": "notes-aws"}), settings)
    assert isinstance(result, Refusal)
    assert result.reason is RefusalReason.SERVICE_ACCOUNT_CONFLICT
    assert "runs as ServiceAccount 'agent'" in result.message
    assert "set it to 'notes-aws'" in result.message


def test_without_a_service_account_in_the_resource_the_pods_is_kept(
    settings: InjectionSettings,
) -> None:
    pod = agent_pod(serviceAccountName="agent")
    assert patched(pod, inject(pod, resource(), settings))["spec"]["serviceAccountName"] == "agent"


# --------------------------------------------------------------------------- variants


def test_fallback_puts_a_regular_container_last(settings: InjectionSettings) -> None:
    fallback = InjectionSettings(image=IMAGE, native_sidecars=False)
    pod = agent_pod()
    spec = patched(pod, inject(pod, resource(), fallback))["spec"]
    assert "initContainers" not in spec
    sidecar = copy.deepcopy(SIDECAR)
    del sidecar["restartPolicy"]
    assert spec["containers"][1] == sidecar
    assert spec["containers"][0]["name"] == "agent"  # still the pod's default container
    assert spec["containers"][0]["volumeMounts"] == [SOCKET_MOUNT]


def test_the_resources_sidecar_block_overrides_image_and_resources(
    settings: InjectionSettings,
) -> None:
    overrides = {
        "image": "registry.example/custom-sidecar:2",
        "imagePullPolicy": "Always",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    pod = agent_pod()
    spec = patched(pod, inject(pod, resource({"sidecar": overrides}), settings))["spec"]
    assert spec["initContainers"] == [
        with_sidecar(
            image="registry.example/custom-sidecar:2",
            imagePullPolicy="Always",
            resources={"requests": {"cpu": "1", "memory": "1Gi"}},
        )
    ]


def test_allowed_peers_become_the_sidecars_allow_list(settings: InjectionSettings) -> None:
    pod = agent_pod()
    peers = {"allowedPeers": {"uids": [1000, 1001], "gids": [2000]}}
    spec = patched(pod, inject(pod, resource({"sidecar": peers}), settings))["spec"]
    args = spec["initContainers"][0]["args"]
    assert args[-6:] == ["--allow-uid", "1000", "--allow-uid", "1001", "--allow-gid", "2000"]
    assert args[: len(SIDECAR["args"])] == SIDECAR["args"]


def test_an_aws_identity_reaches_the_sidecar_only(settings: InjectionSettings) -> None:
    identity = {"roleArn": "arn:aws:iam::111122223333:role/state", "audience": "sts.amazonaws.com"}
    pod = agent_pod()
    spec = patched(pod, inject(pod, resource({"sidecar": {"awsIdentity": identity}}), settings))[
        "spec"
    ]
    [sidecar] = spec["initContainers"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["AWS_ROLE_ARN"] == identity["roleArn"]
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == "/var/run/secrets/agentpersistence/aws/token"
    token_mount = {
        "name": "agentpersistence-aws-token",
        "mountPath": "/var/run/secrets/agentpersistence/aws",
        "readOnly": True,
    }
    assert token_mount in sidecar["volumeMounts"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "agentpersistence-aws-token"]
    [source] = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "audience": "sts.amazonaws.com",
        "expirationSeconds": 86400,
        "path": "token",
    }
    for container in spec["containers"]:
        assert not [e for e in container.get("env", []) if e["name"].startswith("AWS_")]
        assert token_mount["name"] not in {m["name"] for m in container.get("volumeMounts", [])}


def test_operator_settings_shape_the_sidecar() -> None:
    custom = InjectionSettings(
        image=IMAGE,
        image_pull_policy="IfNotPresent",
        resources={"limits": {"memory": "128Mi"}},
        extra_env=({"name": "AWS_REGION", "value": "eu-west-1"},),
        socket_dir="/run/ap",
        probe_port=None,
        run_as_user=1234,
        run_as_group=4321,
        startup_timeout_seconds=30,
    )
    pod = agent_pod()
    spec = patched(pod, inject(pod, resource(), custom))["spec"]
    socket = "/run/ap/sidecar.sock"
    sidecar = with_sidecar(
        imagePullPolicy="IfNotPresent",
        args=["--socket", socket, "--config", "/etc/agentpersistence/sidecar.yaml"],
        env=[{"name": "AWS_REGION", "value": "eu-west-1"}],
        resources={"limits": {"memory": "128Mi"}},
        volumeMounts=[
            {"name": "agentpersistence-socket", "mountPath": "/run/ap"},
            SIDECAR["volumeMounts"][1],
        ],
        securityContext=SIDECAR["securityContext"] | {"runAsUser": 1234, "runAsGroup": 4321},
        startupProbe=SIDECAR["startupProbe"]
        | {"exec": {"command": ["test", "-S", socket]}, "failureThreshold": 30},
    )
    for key in ("ports", "livenessProbe", "readinessProbe"):  # no probe port: socket only
        del sidecar[key]
    assert spec["initContainers"] == [sidecar]
    assert spec["containers"][0]["env"][-1] == {"name": "AGENTPERSISTENCE_SOCKET", "value": socket}
    assert spec["containers"][0]["volumeMounts"] == [SOCKET_MOUNT | {"mountPath": "/run/ap"}]
    assert spec["securityContext"] == {"supplementalGroups": [4321]}


def test_a_resource_not_ready_yet_injects_with_a_warning(settings: InjectionSettings) -> None:
    status: Status = {
        "conditions": [
            READY["conditions"][0] | {"status": "False", "message": "creating the table"}
        ]
    }
    result = inject(agent_pod(), resource(status=status), settings)
    assert isinstance(result, Injection)
    assert result.patch
    assert result.warnings == (
        "AgentPersistence 'notes' is not Ready yet: creating the table; the sidecar starts "
        "once its storage and ConfigMap exist",
    )


def test_a_resource_without_status_injects_with_a_warning(settings: InjectionSettings) -> None:
    result = inject(agent_pod(), resource(status={}), settings)
    assert isinstance(result, Injection)
    assert result.warnings == (
        "AgentPersistence 'notes' is not Ready yet; the sidecar starts once its storage and "
        "ConfigMap exist",
    )
