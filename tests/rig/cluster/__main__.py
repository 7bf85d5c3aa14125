"""``python -m rig.cluster up [--chart] | down | status`` (``make cluster``, ``cluster-down``)."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from types import FrameType

from rig import cluster, images, packages
from rig.cluster import chart, components
from rig.cluster.layout import Layout


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so a bring-up in progress tears down what it started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.cluster")
    parser.add_argument("what", choices=["up", "down", "status"])
    parser.add_argument("--chart", action="store_true", help="up: also install the Helm chart")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    layout = Layout.default()
    try:
        if args.what == "up":
            return _up(layout, args.chart)
        if args.what == "down":
            return 1 if cluster.down(print, layout) else 0
        return _status(layout)
    except (
        cluster.ClusterError,
        cluster.HostError,
        components.ComponentError,
        images.ImagesError,
        packages.PackagesError,
    ) as exc:
        print(f"[rig.cluster] {exc}", file=sys.stderr)
        return 1


def _up(layout: Layout, with_chart: bool) -> int:
    local = cluster.up(print, layout)
    if with_chart:
        print(f"[rig.cluster] helm install {chart.RELEASE} {chart.CHART} -n {chart.NAMESPACE}")
        done = chart.install(local.bin_dir, local.kubeconfig, layout.root / "helm")
        print(done.stdout + done.stderr, end="")
        if done.returncode != 0:
            print("[rig.cluster] the chart did not install; the cluster stays up", file=sys.stderr)
            return 1
    print(
        f"""
The local cluster is up. Use it with:

    export KUBECONFIG={local.kubeconfig}
    export PATH={local.bin_dir}:$PATH    # kubectl and helm built for it
    kubectl get pods -A

Stop it and undo everything it changed on this machine with `make cluster-down`.
"""
    )
    return 0


def _status(layout: Layout) -> int:
    if not cluster.is_up(layout):
        print("no local cluster is running")
        return 1
    kubectl = cluster.bin_dir() / "kubectl"
    subprocess.run([str(kubectl), f"--kubeconfig={layout.kubeconfig}", "get", "nodes,pods", "-A"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
