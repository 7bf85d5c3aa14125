"""The local cluster's certificates and kubeconfigs, made fresh at every ``up``.

One CA signs every serving certificate (API server, kubelet) and every client identity: the
admin (``system:masters``), the controller manager, the scheduler, kube-proxy and CoreDNS by
their standard names (the API server's default RBAC binds them), the node
(``system:node:<name>`` in ``system:nodes``, as the Node authorizer needs) and the API
server's own client for kubelets. Service-account tokens are signed by a separate key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rig.cluster import plan
from rig.cluster.layout import Layout
from rig.kube import CertificateAuthority, KeyPair, write_kubeconfig

APISERVER_HOSTS = (
    plan.NODE_IP,
    plan.KUBERNETES_SERVICE_IP,
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    f"kubernetes.default.svc.{plan.CLUSTER_DOMAIN}",
)
CLIENTS = {
    "admin": ("admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kube-proxy": ("system:kube-proxy", ()),
    "kubelet": (f"system:node:{plan.NODE_NAME}", ("system:nodes",)),
    "coredns": ("coredns", ("system:masters",)),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}
"""File name → (user, groups). CoreDNS reads as admin: no ClusterRole ships for it."""


@dataclass(frozen=True)
class Pki:
    ca: Path
    apiserver: KeyPair
    kubelet_serving: KeyPair
    service_account: KeyPair
    clients: dict[str, KeyPair]
    kubeconfigs: dict[str, Path]

    def client(self, name: str) -> KeyPair:
        return self.clients[name]


def make_pki(layout: Layout) -> Pki:
    ca = CertificateAuthority(layout.pki)
    server = f"https://{plan.NODE_IP}:{plan.APISERVER_PORT}"
    clients = {
        name: ca.issue(name, user, organizations=groups) for name, (user, groups) in CLIENTS.items()
    }
    kubeconfigs = {
        name: write_kubeconfig(layout.pki / f"{name}.kubeconfig", server, ca.cert_path, user, pair)
        for name, pair in clients.items()
        for user in [CLIENTS[name][0]]
    }
    return Pki(
        ca=ca.cert_path,
        apiserver=ca.issue("apiserver", "kube-apiserver", hosts=APISERVER_HOSTS),
        kubelet_serving=ca.issue(
            "kubelet-serving", plan.NODE_NAME, hosts=(plan.NODE_IP, plan.NODE_NAME)
        ),
        service_account=ca.signing_key("service-account"),
        clients=clients,
        kubeconfigs=kubeconfigs,
    )
