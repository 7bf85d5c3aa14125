"""The project's Helm chart on the local cluster, with the images built here."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from rig.kube import helm

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "agentpersistence"
RELEASE = "agentpersistence"
NAMESPACE = "agentpersistence"
INSTALL_TIMEOUT = "5m"

Say = Callable[[str], object]


def install(
    bin_dir: Path, kubeconfig: Path, home: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``helm upgrade --install --wait`` of the chart; the images are already on the node
    (``IfNotPresent``), so nothing is pulled."""
    return helm(
        bin_dir,
        home,
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        f"--kubeconfig={kubeconfig}",
        f"--namespace={NAMESPACE}",
        "--create-namespace",
        "--wait",
        f"--timeout={INSTALL_TIMEOUT}",
        *extra,
        check=False,
    )
