"""A resource whose checkpointer uses the memory the operator provisions is not Ready before
that memory is ACTIVE, and its sidecar config names the memory once it is.

Against the AgentCore emulator started so that a new memory stays ``CREATING``: the memory
resource holds the pass (``Retryable``, reason ``Creating``), and the ConfigMap cannot be
rendered without the memory's ARN, so no sidecar config ever names a memory still creating.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiobotocore.session import get_session

from agentpersistence.operator import errors, naming, reconcile
from agentpersistence.operator.resources.agentcore_memory import AgentCoreMemory
from agentpersistence.operator.resources.sidecar_configmap import Owner, render
from agentpersistence.operator.spec import AgentCoreMemorySpec, MemoryPending, parse_spec
from rig.aws import REGION
from rig.emulator import EmulatorProcess, start_emulator, unique_name

SPEC = {"checkpointer": {"backend": "agentcore-memory"}, "agentcoreMemory": {"name": "mem_one"}}
OWNER = Owner("team", "agent", "uid-1")
ARN = "arn:aws:bedrock-agentcore:eu-west-1:123456789012:memory/mem_one-a1B2c3D4e5"


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """An emulator whose new memories answer CREATING to the first 1,000 reads."""
    emulator = start_emulator(tmp_path, "--activation-reads", "1000")
    yield emulator
    emulator.stop()


async def test_a_memory_still_creating_holds_the_pass(slow_emulator: EmulatorProcess) -> None:
    async with get_session().create_client(
        "bedrock-agentcore-control",
        region_name=REGION,
        endpoint_url=slow_emulator.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as client:
        spec = AgentCoreMemorySpec(name=unique_name())
        memory = AgentCoreMemory(client, spec, owner_uid="u", known_id=None, wait_seconds=0)
        found = reconcile.Found(memory, None, None, None)
        with pytest.raises(errors.Retryable) as caught:
            await reconcile.sync(found, reconcile.Target("team", "agent", "u", 1))
    assert caught.value.reason == "Creating"
    assert "CREATING" in caught.value.message


def test_the_sidecar_config_waits_for_the_memory_and_then_names_it() -> None:
    spec = parse_spec(SPEC)
    with pytest.raises(MemoryPending):
        render(spec, OWNER)
    config = yaml.safe_load(render(spec, OWNER, ARN)["data"][naming.CONFIG_KEY])
    block = config["checkpointer"]["agentcoreMemory"]
    assert (block["memoryId"], block["region"]) == ("mem_one-a1B2c3D4e5", "eu-west-1")


def test_a_memory_id_given_in_the_spec_is_kept() -> None:
    named = {"backend": "agentcore-memory", "agentcoreMemory": {"memoryId": "other-0123456789"}}
    spec = parse_spec({**SPEC, "checkpointer": named})
    config = yaml.safe_load(render(spec, OWNER, ARN)["data"][naming.CONFIG_KEY])
    assert config["checkpointer"]["agentcoreMemory"]["memoryId"] == "other-0123456789"
    assert "region" not in config["checkpointer"]["agentcoreMemory"]
