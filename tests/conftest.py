"""Fixtures shared by every tier; the rig lives in ``tests/rig`` (on sys.path via pytest).

Session-scoped rig fixtures are imported here and only here: a fixture imported into two
modules is two fixtures, and would start its server twice.
"""

import pytest

from rig import awscalls, e2e, kube
from rig.agentcore import agentcore_backend, agentcore_sidecar
from rig.agentcore_valkey import agentcore_valkey_sidecar
from rig.bedrock_session import bedrock_session_backend, bedrock_session_sidecar
from rig.dynamodb import aws_endpoints, aws_env, dynamodb_local, dynamodb_sidecar, moto_s3
from rig.emulator import agentcore_emulator
from rig.kube import kube_control_plane, testenv_bin_dir
from rig.sidecar import any_sidecar, memory_sidecar, sidecar_factory, valkey_sidecar
from rig.store import (
    store_exact_valkey,
    store_search_valkey,
    store_sidecar,
    store_sidecar_agentcore_memory,
    store_sidecar_dynamodb,
    store_sidecar_factory,
    store_sidecar_memory,
    store_sidecar_valkey_exact,
    store_sidecar_valkey_search,
)
from rig.valkey import admin, round_trips, valkey_flushed, valkey_search_server, valkey_server


def pytest_configure(config: pytest.Config) -> None:
    """Records every AWS call of the session, in this process and its children, for
    ``test_zz_iam_coverage.py`` (see ``rig.awscalls``)."""
    awscalls.start(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds what the selected tiers need before the first test starts (outside timeouts)."""
    kube.pytest_collection_finish(session)
    e2e.pytest_collection_finish(session)


__all__ = [
    "admin",
    "agentcore_backend",
    "agentcore_emulator",
    "agentcore_sidecar",
    "agentcore_valkey_sidecar",
    "any_sidecar",
    "aws_endpoints",
    "aws_env",
    "bedrock_session_backend",
    "bedrock_session_sidecar",
    "dynamodb_local",
    "dynamodb_sidecar",
    "kube_control_plane",
    "memory_sidecar",
    "moto_s3",
    "round_trips",
    "sidecar_factory",
    "store_exact_valkey",
    "store_search_valkey",
    "store_sidecar",
    "store_sidecar_agentcore_memory",
    "store_sidecar_dynamodb",
    "store_sidecar_factory",
    "store_sidecar_memory",
    "store_sidecar_valkey_exact",
    "store_sidecar_valkey_search",
    "testenv_bin_dir",
    "valkey_flushed",
    "valkey_search_server",
    "valkey_server",
    "valkey_sidecar",
]
