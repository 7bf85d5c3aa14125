"""The e2e tier's cluster: one per session, from the provider ``$AGENTPERSISTENCE_E2E_PROVIDER``
names (``local`` by default; see :mod:`rig.e2e`). A failed step's report carries the cluster's
pods, recent events and the logs of every pod that is not ready."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from rig import e2e


@pytest.fixture(scope="session")
def e2e_cluster(pytestconfig: pytest.Config) -> Iterator[e2e.E2ECluster]:
    with e2e.provide(e2e.provider_name(), e2e.terminal(pytestconfig)) as made:
        pytestconfig.stash[CLUSTER_KEY] = made
        try:
            yield made
        finally:
            del pytestconfig.stash[CLUSTER_KEY]


CLUSTER_KEY = pytest.StashKey[e2e.E2ECluster]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    made = item.config.stash.get(CLUSTER_KEY, None)
    if report.failed and made is not None:
        for title, text in e2e.diagnostics(made):
            report.sections.append((title, text))
    return report
