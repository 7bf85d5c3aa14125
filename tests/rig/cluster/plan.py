"""The local cluster's fixed plan: its names, addresses and ports, in one place.

Every address is on a bridge this rig creates (nothing routes to or from the machine's real
network), in ranges chosen not to meet the machine's own; every port is a non-default one, so
a real kubelet or control plane on the same machine would not collide with it.
"""

from __future__ import annotations

NODE_NAME = "agentpersistence-node"
NODE_BRIDGE = "apnode0"
"""A bridge with no ports: it only carries the node's address (the kernel has no dummy links)."""
NODE_IP = "10.231.0.1"
POD_BRIDGE = "apcni0"
POD_CIDR = "10.232.0.0/24"
SERVICE_CIDR = "10.233.0.0/24"
KUBERNETES_SERVICE_IP = "10.233.0.1"
CLUSTER_DOMAIN = "cluster.local"
DNS_IP = NODE_IP
"""CoreDNS runs on the node, on its address (no upstream: outside names do not resolve)."""

APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
KUBELET_PORT = 11250
KUBELET_HEALTHZ_PORT = 11248
PROXY_HEALTHZ_PORT = 11256
PROXY_METRICS_PORT = 11249
CONTROLLER_MANAGER_PORT = 11257
SCHEDULER_PORT = 11259
COREDNS_READY_PORT = 11281
COREDNS_HEALTH_PORT = 11280

CGROUP_PARENT = "agentpersistence"
"""The kubelet's cgroup root: every pod's processes live below it, so teardown finds them all."""
GUARD_CHAIN = "AP-EGRESS-GUARD"
"""An iptables chain that drops (and counts) any pod traffic bound outside the cluster."""
REGISTRIES = ("docker.io", "registry.k8s.io", "quay.io", "ghcr.io", "gcr.io", "public.ecr.aws")
"""Every pull from these is sent to a closed local port: images are imported, never pulled."""

FIXED_HOST_PATHS = (
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/run/netns",
    "/run/containerd",
)
"""Paths the components use whatever their configuration says; removed at teardown when this
cluster created them."""
