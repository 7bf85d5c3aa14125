"""``agentpersistence-operator`` runs kopf with our modules; its settings come from the
environment (:mod:`...operator.__main__`, :mod:`...operator.config`)."""

from __future__ import annotations

import importlib.util

import pytest

from agentpersistence.operator import __main__ as entrypoint
from agentpersistence.operator.config import InvalidConfig, OperatorConfig


def test_the_command_loads_the_reconciler_and_passes_kopfs_options() -> None:
    command = entrypoint.command(["--standalone", "--namespace", "agents"])
    assert command[:3] == ["run", "-m", entrypoint.HANDLERS]
    assert command[-3:] == ["--standalone", "--namespace", "agents"]


def test_the_webhook_module_is_loaded_when_installed_unless_disabled() -> None:
    installed = importlib.util.find_spec(entrypoint.WEBHOOK_HANDLERS) is not None
    assert (entrypoint.WEBHOOK_HANDLERS in entrypoint.command([])) is installed
    without = entrypoint.command([entrypoint.NO_WEBHOOK, "-A"])
    assert without == ["run", "-m", entrypoint.HANDLERS, "-A"]


def test_defaults_without_environment() -> None:
    config = OperatorConfig.from_environ({})
    assert config.drift_interval_seconds == 300.0
    assert config.aws_region is None


def test_environment_overrides() -> None:
    config = OperatorConfig.from_environ(
        {
            "AGENTPERSISTENCE_DRIFT_INTERVAL_SECONDS": "2.5",
            "AGENTPERSISTENCE_AWS_MAX_ATTEMPTS": "5",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    )
    assert config.drift_interval_seconds == 2.5
    assert config.aws_max_attempts == 5
    assert config.aws_region == "eu-west-1"
    assert OperatorConfig.from_environ({"AWS_REGION": "us-west-2"}).aws_region == "us-west-2"


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_unusable_values_are_refused_with_the_variable_named(value: str) -> None:
    with pytest.raises(InvalidConfig, match="AGENTPERSISTENCE_DRIFT_INTERVAL_SECONDS"):
        OperatorConfig.from_environ({"AGENTPERSISTENCE_DRIFT_INTERVAL_SECONDS": value})
