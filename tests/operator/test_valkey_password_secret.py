"""A Valkey password given through a Secret reaches the operator and the sidecar and nothing
else: no ConfigMap, no status, no event, no log line holds it.

On the real control plane with the operator as a subprocess and a Valkey (with RediSearch)
that requires the password. The operator creating the store's index on that server shows it
read the Secret; a sidecar started from the ConfigMap, with the Secret's key in the file the
webhook mounts (``naming.VALKEY_PASSWORD_FILE``, here at a temporary path as the kubelet's
mount would be), serves the store. Then every place a password could leak is searched.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
import yaml

from agentpersistence.client import SidecarStore
from agentpersistence.operator import naming
from rig.operator import Backends, Cluster, OperatorProcess
from rig.provisioned import Names, manifest
from rig.valkey import ValkeyProcess, search_module_path, start_valkey

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("operator")]

PASSWORD = f"pw-{secrets.token_hex(16)}"


@pytest.fixture(scope="module")
def guarded_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    args = ["--loadmodule", str(search_module_path()), "--requirepass", PASSWORD]
    server = start_valkey(tmp_path_factory.mktemp("valkey-auth"), extra_args=args)
    yield server
    server.stop()


def everything_said(cluster: Cluster, operator: OperatorProcess, names: Names) -> dict[str, str]:
    """Every text a password could leak into, by where it comes from."""
    kube = cluster.kube
    configmaps = kube.kubectl("get", "configmaps", "-n", cluster.namespace, "-o", "yaml").stdout
    events = kube.kubectl("get", "events", "-n", cluster.namespace, "-o", "yaml").stdout
    return {
        "configmaps": configmaps,
        "resource": yaml.safe_dump(cluster.must_get(names.resource)),
        "events": events,
        "operator log": operator.log_path.read_text(errors="replace"),
    }


def test_a_password_from_a_secret_reaches_the_sidecar_and_nothing_else(
    cluster: Cluster,
    backends: Backends,
    guarded_valkey: ValkeyProcess,
    operator: OperatorProcess,
    sidecar_factory: Any,
    tmp_path: Path,
) -> None:
    names = Names.fresh()
    secret = f"{names.resource}-valkey"
    cluster.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": cluster.namespace},
            "data": {"pw": base64.b64encode(PASSWORD.encode()).decode()},
        }
    )
    store = {"url": guarded_valkey.url, "keyPrefix": names.prefix}
    spec = {
        "deletionPolicy": "Delete",
        "store": {"backend": "valkey", "valkey": store, "index": {"dims": 4}},
        "valkeyCredentials": {"secretName": secret, "passwordKey": "pw"},
    }
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    cluster.wait_condition(names.resource, "Ready", "True")
    with valkey.Valkey.from_url(guarded_valkey.url, password=PASSWORD) as admin:
        assert admin.execute_command("FT.INFO", names.index)  # made by the operator

    configmap = cluster.configmap(naming.sidecar_configmap(names.resource))
    assert configmap is not None
    config = yaml.safe_load(configmap["data"][naming.CONFIG_KEY])
    assert config["store"]["valkey"]["passwordFile"] == naming.VALKEY_PASSWORD_FILE
    mounted = tmp_path / "password"  # what the kubelet projects from the Secret's key
    mounted.write_text(PASSWORD)
    config["store"]["valkey"]["passwordFile"] = str(mounted)
    sidecar = sidecar_factory(config)
    with SidecarStore(sidecar.socket) as saved:
        saved.put(("users", "u1"), "profile", {"plan": "pro"})
        item = saved.get(("users", "u1"), "profile")
    assert item is not None
    assert item.value == {"plan": "pro"}

    said = everything_said(cluster, operator, names)
    assert all(text for text in said.values())
    said["sidecar log"] = sidecar.log_path.read_text(errors="replace")
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    leaks = [where for where, text in said.items() if PASSWORD in text or encoded in text]
    assert leaks == []

    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
