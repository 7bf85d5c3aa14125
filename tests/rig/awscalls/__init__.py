"""Every AWS call the test session makes, recorded so the IAM documents in ``iam/`` can be
checked against what the operator and the sidecar really call.

How: :func:`start` (from the root conftest's ``pytest_configure``) makes a directory for the
session, puts ``AGENTPERSISTENCE_RECORD_AWS_CALLS=<dir>`` and the ``hook/`` directory (a
test-only ``sitecustomize``) into ``os.environ``, where every process the rig starts finds
them (the sidecar, the operator, the stand-in servers: their environments are copies of it),
and installs the same recorder in this process. :class:`Recording`, a plugin for the session,
notes which fixtures were set up, runs :data:`COVERAGE_MODULE` last, and removes the
directory at the end. :mod:`.actions` maps a recorded call to IAM actions and resources;
:mod:`.policies` evaluates the documents.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

from rig.awscalls.actions import Call, read_calls
from rig.awscalls.hook import sitecustomize as hook

HOOK_DIR = Path(hook.__file__).resolve().parent
COVERAGE_MODULE = "test_zz_iam_coverage.py"
"""Checks the calls of the whole session, so it runs after every other test."""

PLUGIN_NAME = "agentpersistence-aws-calls"

PROJECT_FIXTURES = frozenset(
    {
        "aws_env",
        "dynamodb_sidecar",
        "agentcore_sidecar",
        "agentcore_backend",
        "store_sidecar_agentcore_memory",
        "bedrock_session_sidecar",
        "bedrock_session_backend",
    }
)
"""Rig fixtures that run the sidecar's AWS backends: a session that set one up and recorded
no call of theirs has a broken recorder."""


class Recording:
    """The session's recording (registered as the plugin :data:`PLUGIN_NAME`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fixtures_set_up: set[str] = set()
        self._saved = {name: os.environ.get(name) for name in (hook.ENV_VAR, "PYTHONPATH")}

    def calls(self) -> list[Call]:
        return read_calls(self.directory)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[object]
    ) -> Generator[None, object, object]:
        self.fixtures_set_up.add(fixturedef.argname)
        return (yield)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """The coverage test last, whatever the order of collection."""
        items.sort(key=lambda item: item.path.name == COVERAGE_MODULE)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.directory, ignore_errors=True)


def start(config: pytest.Config) -> Recording:
    """Record the AWS calls of this session: this process and every child it starts."""
    directory = Path(tempfile.mkdtemp(prefix="ap-aws-calls-"))
    recording = Recording(directory)
    paths = [str(HOOK_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    os.environ[hook.ENV_VAR] = str(directory)
    hook.install(str(directory))
    config.pluginmanager.register(recording, PLUGIN_NAME)
    return recording


def recording(config: pytest.Config) -> Recording | None:
    found = config.pluginmanager.get_plugin(PLUGIN_NAME)
    return found if isinstance(found, Recording) else None
