"""The webhook's settings come from the environment the chart renders; errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentpersistence.operator.webhook.settings import (
    InjectionSettings,
    ServerSettings,
    SettingsError,
    default_resources,
    injection_from_env,
    server_from_env,
)

IMAGE = "registry.example/agentpersistence-sidecar:1.0"


def test_only_the_image_is_required() -> None:
    assert injection_from_env({"AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE}) == InjectionSettings(
        image=IMAGE
    )
    with pytest.raises(SettingsError, match="AGENTPERSISTENCE_SIDECAR_IMAGE is not set"):
        injection_from_env({})


def test_defaults_follow_the_stable_contract() -> None:
    settings = InjectionSettings(image=IMAGE)
    assert settings.socket_path == "/var/run/agentpersistence/sidecar.sock"
    assert settings.native_sidecars is True
    assert settings.resources == default_resources()


def test_every_variable_is_read() -> None:
    env = {
        "AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE,
        "AGENTPERSISTENCE_SIDECAR_IMAGE_PULL_POLICY": "Always",
        "AGENTPERSISTENCE_SIDECAR_RESOURCES": '{"requests": {"cpu": "10m"}}',
        "AGENTPERSISTENCE_SIDECAR_ENV": '[{"name": "AWS_REGION", "value": "eu-west-1"}]',
        "AGENTPERSISTENCE_SOCKET_DIR": "/run/ap/",
        "AGENTPERSISTENCE_SIDECAR_PROBE_PORT": "0",
        "AGENTPERSISTENCE_NATIVE_SIDECARS": "False",
        "AGENTPERSISTENCE_SIDECAR_UID": "1000",
        "AGENTPERSISTENCE_SIDECAR_GID": "2000",
    }
    assert injection_from_env(env) == InjectionSettings(
        image=IMAGE,
        image_pull_policy="Always",
        resources={"requests": {"cpu": "10m"}},
        extra_env=({"name": "AWS_REGION", "value": "eu-west-1"},),
        socket_dir="/run/ap",
        probe_port=None,
        native_sidecars=False,
        run_as_user=1000,
        run_as_group=2000,
    )


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("AGENTPERSISTENCE_SIDECAR_IMAGE_PULL_POLICY", "Sometimes", "Always, IfNotPresent"),
        ("AGENTPERSISTENCE_SIDECAR_RESOURCES", "{", "not JSON"),
        ("AGENTPERSISTENCE_SIDECAR_RESOURCES", '{"cpu": "1"}', '"requests"'),
        ("AGENTPERSISTENCE_SIDECAR_ENV", '{"name": "A"}', "JSON list"),
        ("AGENTPERSISTENCE_SOCKET_DIR", "relative/dir", "absolute path"),
        ("AGENTPERSISTENCE_SIDECAR_PROBE_PORT", "70000", "1-65535"),
        ("AGENTPERSISTENCE_SIDECAR_PROBE_PORT", "http", "invalid literal"),
        ("AGENTPERSISTENCE_NATIVE_SIDECARS", "yes", "true or false"),
        ("AGENTPERSISTENCE_SIDECAR_UID", "0", "non-root"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    env = {"AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE, name: value}
    with pytest.raises(SettingsError, match=f"^{name}=") as raised:
        injection_from_env(env)
    assert fragment in str(raised.value)


def test_server_settings_from_env() -> None:
    assert server_from_env({}) == ServerSettings()
    server = server_from_env(
        {
            "AGENTPERSISTENCE_WEBHOOK_ADDR": "127.0.0.1",
            "AGENTPERSISTENCE_WEBHOOK_PORT": "8443",
            "AGENTPERSISTENCE_WEBHOOK_CERT_DIR": "/certs",
        }
    )
    assert (server.addr, server.port) == ("127.0.0.1", 8443)
    assert (server.certfile, server.pkeyfile, server.cafile) == (
        Path("/certs/tls.crt"),
        Path("/certs/tls.key"),
        Path("/certs/ca.crt"),
    )
