"""A single-node Kubernetes cluster assembled on this machine from parts, with no Docker.

What it is: etcd, kube-apiserver (``Node,RBAC``, service-account keys), the controller
manager and the scheduler; containerd (Debian's) with its CRI plugin and a CNI bridge; the
kubelet and kube-proxy (iptables); and CoreDNS for service names. The Kubernetes binaries and
CoreDNS are built by ``tests/testenv/build.sh`` through the Go module proxy; the images the
cluster runs are built by :mod:`rig.images` and imported into its containerd. Everything
lives under ``$AGENTPERSISTENCE_CACHE/cluster`` (admin kubeconfig: ``cluster/kubeconfig``).

The network rule: every address is on bridges this rig creates; pods reach nothing outside
the cluster (an iptables guard drops and counts any such packet, see :func:`dropped_egress`);
CoreDNS has no upstream and the kubelet no resolv.conf; every registry containerd knows is
sent to a closed local port, so nothing is ever pulled.

What it is not: isolated from the host (it needs root and shares the host's kernel, cgroups
and iptables) or more than one per machine (containerd, CNI and the kubelet use fixed host
paths): :func:`up` refuses to start beside a running one and clears a killed one's leftovers.

    up(say) -> LocalCluster      # fresh cluster, ready for pods (about 20 s when warm)
    down(say) -> list[str]       # stop and undo everything; what could not be undone
    python -m rig.cluster up [--chart] | down | status
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rig import images
from rig.cluster import components, host, pki, plan
from rig.cluster.host import HostError, HostRecord, dropped_egress
from rig.cluster.layout import Layout

__all__ = [
    "ClusterError",
    "HostError",
    "Layout",
    "LocalCluster",
    "down",
    "dropped_egress",
    "is_up",
    "up",
]

REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "tests" / "testenv" / "build.sh"
NODE_READY_TIMEOUT_S = 120.0

Say = Callable[[str], object]


class ClusterError(RuntimeError):
    """The cluster could not be brought up or down; the message says why and what to do."""


@dataclass(frozen=True)
class LocalCluster:
    layout: Layout
    bin_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def containerd_socket(self) -> Path:
        return self.layout.containerd_socket


def up(say: Say = print, layout: Layout | None = None) -> LocalCluster:
    """Bring up a fresh cluster (built parts are reused from the cache) and wait until its
    node is Ready and DNS answers. On any failure everything started is torn down again."""
    layout = layout or Layout.default()
    began = time.monotonic()
    with _locked(layout):
        if is_up(layout):
            raise ClusterError(
                f"a local cluster is already running ({layout.kubeconfig}); "
                "stop it with `make cluster-down` first"
            )
        _clear(layout, say)
        host.ensure_packages(say)
        bin_dir = bin_dir_built(say)
        built = images.build(say)
        record = host.record_host(layout)
        try:
            _start(layout, bin_dir, built, say)
        except BaseException:
            host.say_host(say, "bring-up failed; tearing down what was started")
            _teardown(layout, HostRecord.load(layout) or record, say)
            raise
    host.say_host(
        say, f"cluster up in {time.monotonic() - began:.1f}s; KUBECONFIG={layout.kubeconfig}"
    )
    return LocalCluster(layout, bin_dir)


def down(say: Say = print, layout: Layout | None = None) -> list[str]:
    """Stop every process of the cluster and undo what ``up`` did to the host."""
    layout = layout or Layout.default()
    with _locked(layout):
        return _clear(layout, say)


def is_up(layout: Layout | None = None) -> bool:
    """Whether a cluster started by ``up`` is running (one of its components is)."""
    return bool(components.running_pids(layout or Layout.default()))


def _start(layout: Layout, bin_dir: Path, built: list[images.BuiltImage], say: Say) -> None:
    host.create_cgroups()
    host.setup_network(say)
    made = pki.make_pki(layout)
    steps = [
        components.etcd(bin_dir, layout),
        components.apiserver(bin_dir, layout, made),
        components.controller_manager(bin_dir, layout, made),
        components.scheduler(bin_dir, made),
        components.containerd(layout, images.SANDBOX_IMAGE),
    ]
    for component in steps:
        _started(layout, component, say)
    images.import_into(str(layout.containerd_socket), built, say)
    _started(layout, components.kubelet(bin_dir, layout, made), say)
    _wait_node_ready(made)
    _started(layout, components.kube_proxy(bin_dir, layout, made), say)
    _started(layout, components.coredns(bin_dir, layout, made), say)
    shutil.copyfile(made.kubeconfigs["admin"], layout.kubeconfig)


def _started(layout: Layout, component: components.Component, say: Say) -> None:
    began = time.monotonic()
    pid = components.start(layout, component)
    host.say_host(say, f"{component.name} ready (pid {pid}, {time.monotonic() - began:.1f}s)")


def _wait_node_ready(made: pki.Pki) -> None:
    deadline = time.monotonic() + NODE_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        node = components.api_get(made, f"/api/v1/nodes/{plan.NODE_NAME}") or {}
        conditions = node.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.5)
    raise ClusterError(f"node {plan.NODE_NAME} not Ready in {NODE_READY_TIMEOUT_S:.0f}s")


def _clear(layout: Layout, say: Say) -> list[str]:
    """Tear down whatever a previous ``up`` left, whether it ended cleanly or was killed."""
    record = HostRecord.load(layout)
    if record is None and not layout.run.exists() and not layout.data.exists():
        return []
    return _teardown(layout, record, say)


def _teardown(layout: Layout, record: HostRecord | None, say: Say) -> list[str]:
    began = time.monotonic()
    dropped = dropped_egress()
    host.kill_everything(layout, components.running_pids(layout))
    problems: list[str] = []
    host.unmount_all(layout, record, problems)
    proxy = _bin_dir_if_built() / "kube-proxy"
    if proxy.exists():
        subprocess.run([str(proxy), "--cleanup"], capture_output=True)
    problems += host.teardown_network(record)
    host.remove_cgroups(problems)
    host.remove_created_paths(record, problems)
    left = host.mounts_under(layout.root)
    if left:
        problems.append(f"mounts left under {layout.root}: {', '.join(left)}")
    # The record stays while something could not be undone, so that `down` can try again.
    for path in (layout.data, layout.kubeconfig, *(() if problems else (layout.run,))):
        if path.is_dir():
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
        elif path.exists():
            path.unlink()
    note = f"; {dropped} packet(s) from pods tried to leave and were dropped" if dropped else ""
    host.say_host(say, f"cluster down in {time.monotonic() - began:.1f}s{note}")
    for problem in problems:
        host.say_host(say, f"could not undo: {problem}")
    return problems


def bin_dir_built(say: Say) -> Path:
    """The Kubernetes binaries' directory, built first if they are missing or stale."""
    if subprocess.run(["bash", str(BUILD_SCRIPT), "--check"], capture_output=True).returncode:
        host.say_host(say, f"building the Kubernetes binaries with {BUILD_SCRIPT}")
        if subprocess.run(["bash", str(BUILD_SCRIPT)]).returncode != 0:
            raise ClusterError(f"{BUILD_SCRIPT} failed (its output is above)")
    return _bin_dir_if_built()


def bin_dir() -> Path:
    """Where ``tests/testenv/build.sh`` puts kubectl, helm and the node's binaries."""
    return _bin_dir_if_built()


def _bin_dir_if_built() -> Path:
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True, check=True
    )
    return Path(done.stdout.strip())


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    layout.lock.parent.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(
                "another `up` or `down` of the local cluster is running on this machine"
            ) from None
        yield
