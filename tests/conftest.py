"""Fixtures shared by every tier; the rig lives in ``tests/rig`` (on sys.path via pytest)."""

from rig.dynamodb import aws_endpoints, aws_env, dynamodb_local, dynamodb_sidecar, moto_s3
from rig.sidecar import any_sidecar, memory_sidecar, sidecar_factory, valkey_sidecar
from rig.store import (
    store_exact_valkey,
    store_search_valkey,
    store_sidecar,
    store_sidecar_factory,
    store_sidecar_memory,
    store_sidecar_valkey_exact,
    store_sidecar_valkey_search,
)
from rig.valkey import valkey_server

__all__ = [
    "any_sidecar",
    "aws_endpoints",
    "aws_env",
    "dynamodb_local",
    "dynamodb_sidecar",
    "memory_sidecar",
    "moto_s3",
    "sidecar_factory",
    "store_exact_valkey",
    "store_search_valkey",
    "store_sidecar",
    "store_sidecar_factory",
    "store_sidecar_memory",
    "store_sidecar_valkey_exact",
    "store_sidecar_valkey_search",
    "valkey_server",
    "valkey_sidecar",
]
