"""Every name the operator gives or recognises: the API group, the resource, its finalizer,
annotations, labels, the ConfigMap of the sidecar, the field manager, event reasons.

Nothing else in the operator spells one of these strings.
"""

from __future__ import annotations

GROUP = "agentpersistence.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AgentPersistence"
PLURAL = "agentpersistences"
SINGULAR = "agentpersistence"
SHORT_NAMES = ("ap", "agentpersist")
CATEGORIES = ("agentpersistence",)
CRD_NAME = f"{PLURAL}.{GROUP}"

RESOURCE = (GROUP, VERSION, PLURAL)
"""What kopf's decorators take as the resource selector."""

FINALIZER = f"{GROUP}/finalizer"
"""Held by kopf while the resource exists, released once the delete handler has run."""

KOPF_ANNOTATION_PREFIX = f"kopf.{GROUP}"
"""kopf keeps its progress and last-handled spec under this annotation prefix (not in the
status). It must differ from :data:`GROUP`: kopf ignores every annotation under its own
prefix when it decides whether a resource changed, and :data:`RECONCILE_ANNOTATION` must
count as a change."""

RECONCILE_ANNOTATION = f"{GROUP}/reconcile-requested"
"""Changing this annotation (any value, e.g. a timestamp) makes the operator reconcile again:
the way to retry after a ``Terminal`` error was fixed outside the resource (IAM, Valkey)."""

FIELD_MANAGER = "agentpersistence-operator"
"""The server-side-apply field manager of everything the operator writes."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
OWNER_LABEL = f"{GROUP}/name"
"""On the ConfigMap: the name of the ``AgentPersistence`` it belongs to."""

CONFIG_KEY = "sidecar.yaml"
"""The key of the sidecar's config file in the ConfigMap (mounted as a file)."""


VALKEY_CREDENTIALS_DIR = "/var/run/secrets/agentpersistence/valkey"
"""Where the sidecar container (and only it) mounts ``spec.valkeyCredentials``' Secret; the
config names files there, never the password."""
VALKEY_PASSWORD_FILE = f"{VALKEY_CREDENTIALS_DIR}/password"
VALKEY_USERNAME_FILE = f"{VALKEY_CREDENTIALS_DIR}/username"


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


def sidecar_configmap(name: str) -> str:
    """The ConfigMap holding the sidecar config of the ``AgentPersistence`` ``name``."""
    return f"{name}-sidecar-config"


def resource_path(namespace: str, name: str) -> str:
    """The API path of the ``AgentPersistence`` ``namespace/name``."""
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def reference(namespace: str, name: str) -> str:
    """How logs and events name a resource: ``namespace/name``."""
    return f"{namespace}/{name}"
