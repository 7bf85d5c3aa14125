"""``make cluster`` gives a cluster with the operator running; ``make cluster-down`` leaves the
machine as it found it: no process, mount, network interface, iptables rule, sysctl, cgroup
or host path of the cluster's is left behind.

The commands are the ones the Makefile runs (``python -m rig.cluster up --chart`` / ``down``).
A pod with volumes runs in between, so there are pod mounts, a network namespace and a veth
to clean up; and nothing a pod sent may have tried to leave the machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import cluster
from rig.cluster import host, plan
from rig.cluster.layout import Layout

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900
COMPONENTS = {
    "etcd",
    "kube-apiserver",
    "kube-controller",  # comm is cut to 15 characters
    "kube-scheduler",
    "containerd",
    "containerd-shim",
    "kubelet",
    "kube-proxy",
    "coredns",
    "pause",
}


def snapshot() -> dict[str, object]:
    """What the cluster could leave behind, as comparable values."""
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return {
        "links": sorted(Path("/sys/class/net").iterdir()),
        "mounts": sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ),
        "iptables": [
            re.sub(r"\[\d+:\d+\]", "", line)
            for line in iptables.splitlines()
            if not line.startswith("#")
        ],
        "sysctls": {key: Path("/proc/sys", key).read_text() for key in host.SYSCTLS},
        "cgroups": [str(d) for d in host.cgroup_dirs() if d.exists()],
        "paths": [p for p in plan.FIXED_HOST_PATHS if os.path.exists(p)],
        "processes": sorted(_component_processes()),
    }


def _component_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if comm in COMPONENTS and state != "Z":
                found.append(f"{comm}[{entry.name}]")
    return found


def rig_cluster(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run(
        [sys.executable, "-m", "rig.cluster", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=TIMEOUT_S,
    )


@pytest.fixture
def machine_before() -> Iterator[dict[str, object]]:
    if cluster.is_up():
        pytest.fail("a local cluster is running: stop it with `make cluster-down` first")
    before = snapshot()
    yield before
    rig_cluster("down")  # whatever the test did, the machine is put back


def test_make_cluster_runs_the_operator_and_cluster_down_leaves_nothing(
    machine_before: dict[str, object],
) -> None:
    started = rig_cluster("up", "--chart")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"export KUBECONFIG={Layout.default().kubeconfig}" in started.stdout
    kubectl = [str(cluster.bin_dir() / "kubectl"), f"--kubeconfig={Layout.default().kubeconfig}"]
    pods = subprocess.run([*kubectl, "get", "pods", "-A"], capture_output=True, text=True)
    operator = [line for line in pods.stdout.splitlines() if line.startswith("agentpersistence ")]
    assert len(operator) == 2, pods.stdout  # the chart's default: two replicas
    assert all(re.search(r"\s1/1\s+Running\s", line) for line in operator), pods.stdout

    volumes = """
apiVersion: v1
kind: Pod
metadata: {name: with-volumes, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - {name: c, image: registry.k8s.io/pause:3.10, imagePullPolicy: Never,
       volumeMounts: [{name: scratch, mountPath: /scratch}]}
  volumes: [{name: scratch, emptyDir: {medium: Memory}}]
"""
    subprocess.run([*kubectl, "apply", "-f", "-"], input=volumes, text=True, check=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Ready", "pod/with-volumes", "--timeout=120s"],
        check=True,
        capture_output=True,
    )
    assert host.mounts_under(Layout.default().root)  # the pod's volumes and rootfs
    assert Path(f"/sys/class/net/{plan.POD_BRIDGE}").exists()
    dropped = host.dropped_egress()

    stopped = rig_cluster("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert dropped == 0
    assert snapshot() == machine_before
