"""The chart's CRDs are the repository's, byte for byte (``scripts/sync-chart-crds.sh``).

Helm installs ``crds/`` on first install only; the source of truth is the repository's
``crds/``, generated from the spec model. A stale copy fails here and in CI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "crds"
COPY = REPO / "charts" / "agentpersistence" / "crds"
SCRIPT = REPO / "scripts" / "sync-chart-crds.sh"


def crd_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.yaml"))}


@pytest.fixture
def sources() -> dict[str, bytes]:
    found = crd_files(SOURCE)
    assert found, f"no CRD in {SOURCE}: the operator's CRD generator writes it"
    return found


def test_the_charts_crds_equal_the_repositorys(sources: dict[str, bytes]) -> None:
    assert crd_files(COPY) == sources, "run scripts/sync-chart-crds.sh"


def test_the_sync_script_agrees(sources: dict[str, bytes]) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_sync_script_reports_a_stale_copy(tmp_path: Path, sources: dict[str, bytes]) -> None:
    """On a scratch copy of the layout: an edited and an extra file are both reported."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / SCRIPT.name).write_bytes(SCRIPT.read_bytes())
    (root / "crds").mkdir()
    chart = root / "charts" / "agentpersistence" / "crds"
    chart.mkdir(parents=True)
    for name, content in sources.items():
        (root / "crds" / name).write_bytes(content)
        (chart / name).write_bytes(content + b"# edited\n")
    (chart / "stale.yaml").write_text("kind: Leftover\n")
    script = ["bash", str(root / "scripts" / SCRIPT.name)]
    check = subprocess.run([*script, "--check"], capture_output=True, text=True, check=False)
    assert check.returncode == 1
    assert "stale.yaml" in check.stderr
    assert "differs from crds/" in check.stderr
    subprocess.run(script, capture_output=True, check=True)
    assert crd_files(chart) == sources
    assert subprocess.run([*script, "--check"], capture_output=True, check=False).returncode == 0
