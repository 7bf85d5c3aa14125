"""What the journey applies: Valkey, AgentPersistence resources and the example agent.

The agent's Deployment is ``examples/agent/deployment.yaml`` itself (what the README tells
users to apply), moved to the test's namespace and pointed at the test's resource.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
AGENT_DEPLOYMENT = REPO / "examples" / "agent" / "deployment.yaml"
VALKEY_IMAGE = "docker.io/agentpersistence/e2e-valkey:0.1.0"
INJECT_LABEL = "agentpersistence.io/inject"
NAME_ANNOTATION = "agentpersistence.io/name"
NAMESPACE_OPT_IN = "enabled"
VALKEY_PASSWORD = "e2e-valkey-password-7f3a9c"
"""What the cluster's Valkey requires; the resources get it from the Secret ``valkey-auth``."""
VALKEY_SECRET = "valkey-auth"
OPERATOR = "agentpersistence"
"""The chart's full name as the journey installs it: its ServiceAccount and role prefix."""

JsonObject = dict[str, Any]


def namespace(name: str, *, opt_in: bool = False) -> JsonObject:
    labels = {INJECT_LABEL: NAMESPACE_OPT_IN} if opt_in else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def valkey(ns: str) -> list[JsonObject]:
    """One Valkey with the search module, and its Service ``valkey`` on 6379."""
    labels = {"app.kubernetes.io/name": "valkey"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "valkey", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "valkey",
                            "image": VALKEY_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["--requirepass", VALKEY_PASSWORD],
                            "ports": [{"name": "valkey", "containerPort": 6379}],
                            "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "valkey", "namespace": ns, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "valkey", "port": 6379}]},
    }
    return [deployment, service]


def valkey_credentials(ns: str, operator_ns: str) -> list[JsonObject]:
    """The Secret with Valkey's password, and the operator's right to read it in ``ns``
    (the chart's ``-secrets`` role, bound here as a platform team would)."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": VALKEY_SECRET, "namespace": ns},
        "stringData": {"password": VALKEY_PASSWORD},
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{OPERATOR}-secrets", "namespace": ns},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{OPERATOR}-secrets",
        },
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": operator_ns}],
    }
    return [secret, binding]


def valkey_url(ns: str, db: int = 0) -> str:
    return f"valkey://valkey.{ns}.svc:6379/{db}"


def agent_persistence(name: str, ns: str, valkey_ns: str) -> JsonObject:
    """Checkpoints and a searchable store in the cluster's Valkey, its password from the
    Secret; deleted storage goes."""
    url = valkey_url(valkey_ns)
    return {
        "apiVersion": "agentpersistence.io/v1alpha1",
        "kind": "AgentPersistence",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "deletionPolicy": "Delete",
            "checkpointer": {"backend": "valkey", "valkey": {"url": url, "keyPrefix": name}},
            "store": {
                "backend": "valkey",
                "valkey": {"url": url, "keyPrefix": name},
                "index": {"dims": 8},
            },
            "valkeyCredentials": {"secretName": VALKEY_SECRET},
        },
    }


def agent(ns: str, resource: str, thread: str, *, label_route: bool = True) -> JsonObject:
    """The example agent's Deployment, opted in by label (or, in an opted-in namespace, by
    the annotation alone)."""
    deployment: JsonObject = copy.deepcopy(yaml.safe_load(AGENT_DEPLOYMENT.read_text()))
    deployment["metadata"]["namespace"] = ns
    template = deployment["spec"]["template"]
    template["metadata"]["annotations"][NAME_ANNOTATION] = resource
    if not label_route:
        del template["metadata"]["labels"][INJECT_LABEL]
    template["spec"]["containers"][0]["args"] = ["run", thread]
    return deployment


def opted_in_pod(ns: str, name: str, resource: str) -> JsonObject:
    """A bare labelled pod naming ``resource``: what the webhook refuses when it is missing."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {INJECT_LABEL: "true"},
            "annotations": {NAME_ANNOTATION: resource},
        },
        "spec": {"containers": [{"name": "c", "image": VALKEY_IMAGE}]},
    }
