"""The node's processes: each one's configuration, command line and readiness check.

Every component is started detached (its own session, output in ``logs/<name>.log``, pid in
``run/<name>.pid``) so that ``make cluster`` can return and leave the cluster running; ``down``
stops them by their pid files, newest first.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.cluster import plan
from rig.cluster.layout import Layout
from rig.cluster.pki import Pki
from rig.kube import KeyPair, client_ssl_context, http_ok, log_tail

READY_TIMEOUT_S = 120.0
"""The API server takes 5-15 s on two cores; a busy machine may need much more."""

Probe = Callable[[], bool]


class ComponentError(RuntimeError):
    """A component exited or did not become ready; the message carries its log's tail."""


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    ready: Probe


def start(layout: Layout, component: Component, timeout: float = READY_TIMEOUT_S) -> int:
    """Start ``component`` detached and wait until it is ready; its pid."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    log = layout.logs / f"{component.name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env(),
        )
    (layout.run / f"{component.name}.pid").write_text(f"{proc.pid} {component.argv[0]}")
    deadline = time.monotonic() + timeout
    while not component.ready():
        if proc.poll() is not None:
            raise ComponentError(
                f"{component.name} exited with {proc.returncode}; its log ends:\n{log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ComponentError(
                f"{component.name} not ready in {timeout:.0f}s; its log ends:\n{log_tail(log)}"
            )
        time.sleep(0.2)
    proc.returncode = 0  # it lives on after this process: never reaped here
    return proc.pid


def running_pids(layout: Layout) -> list[int]:
    """The pids of the components ``up`` started and that still run them, newest first (a pid
    file outlives its process; its pid may since be someone else's)."""
    files = sorted(layout.run.glob("*.pid"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    pids = []
    for path in files:
        with contextlib.suppress(ValueError, OSError):
            pid, program = path.read_text().split(" ", 1)
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
            if argv0.decode() == program:
                pids.append(int(pid))
    return pids


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY")
    }
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
    return env


def _insecure() -> ssl.SSLContext:
    """For the self-signed /healthz of the controller manager and scheduler (loopback)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------- control plane


def etcd(bin_dir: Path, layout: Layout) -> Component:
    client = f"http://127.0.0.1:{plan.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{plan.ETCD_PEER_PORT}"
    argv = [
        str(bin_dir / "etcd"),
        "--name=node",
        f"--data-dir={layout.dir('etcd')}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=node={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]
    return Component("etcd", argv, lambda: http_ok(f"{client}/health"))


def apiserver(bin_dir: Path, layout: Layout, pki: Pki) -> Component:
    argv = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{plan.ETCD_CLIENT_PORT}",
        f"--bind-address={plan.NODE_IP}",
        f"--advertise-address={plan.NODE_IP}",
        f"--secure-port={plan.APISERVER_PORT}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={plan.SERVICE_CIDR}",
        f"--service-account-issuer=https://kubernetes.default.svc.{plan.CLUSTER_DOMAIN}",
        f"--service-account-key-file={pki.service_account.cert}",
        f"--service-account-signing-key-file={pki.service_account.key}",
        f"--kubelet-client-certificate={pki.client('apiserver-kubelet-client').cert}",
        f"--kubelet-client-key={pki.client('apiserver-kubelet-client').key}",
        f"--kubelet-certificate-authority={pki.ca}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
    ]
    admin = pki.client("admin")
    context = client_ssl_context(pki.ca, admin)
    url = f"https://{plan.NODE_IP}:{plan.APISERVER_PORT}/readyz"
    return Component("kube-apiserver", argv, lambda: http_ok(url, context))


def controller_manager(bin_dir: Path, layout: Layout, pki: Pki) -> Component:
    kubeconfig = pki.kubeconfigs["controller-manager"]
    argv = [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--service-account-private-key-file={pki.service_account.key}",
        f"--root-ca-file={pki.ca}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.CONTROLLER_MANAGER_PORT}",
        f"--flex-volume-plugin-dir={layout.dir('flexvolume')}",
        "--cluster-name=agentpersistence",
        "--profiling=false",
    ]
    url = f"https://127.0.0.1:{plan.CONTROLLER_MANAGER_PORT}/healthz"
    return Component("kube-controller-manager", argv, lambda: http_ok(url, _insecure()))


def scheduler(bin_dir: Path, pki: Pki) -> Component:
    kubeconfig = pki.kubeconfigs["scheduler"]
    argv = [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.SCHEDULER_PORT}",
        "--profiling=false",
    ]
    url = f"https://127.0.0.1:{plan.SCHEDULER_PORT}/healthz"
    return Component("kube-scheduler", argv, lambda: http_ok(url, _insecure()))


# --------------------------------------------------------------------------- the node


def containerd(layout: Layout, sandbox_image: str) -> Component:
    base = layout.dir("containerd")
    certs = base / "certs.d"
    for registry in plan.REGISTRIES:
        # Every pull goes to a closed local port: nothing may be fetched from outside.
        hosts = certs / registry
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            'server = "http://127.0.0.1:1"\n\n'
            '[host."http://127.0.0.1:1"]\n  capabilities = ["pull", "resolve"]\n'
        )
    cni = layout.dir("cni")
    (cni / "net.d").mkdir(exist_ok=True)
    (cni / "net.d" / "10-agentpersistence.conflist").write_text(json.dumps(_cni_config(layout)))
    config = base / "config.toml"
    config.write_text(
        _toml(
            {
                "version": 2,
                "root": str(base / "root"),
                "state": str(base / "state"),
                "disabled_plugins": [
                    "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.internal.v1.tracing",
                ],
                "grpc": {"address": str(layout.containerd_socket)},
                "ttrpc": {"address": f"{layout.containerd_socket}.ttrpc"},
                "plugins": {
                    "io.containerd.internal.v1.opt": {"path": str(base / "opt")},
                    "io.containerd.grpc.v1.cri": {
                        "sandbox_image": sandbox_image,
                        # This VM's root lacks CAP_SYS_RESOURCE: without it runc fails every pod.
                        "restrict_oom_score_adj": True,
                        "disable_apparmor": True,
                        "enable_selinux": False,
                        "containerd": {
                            "snapshotter": "overlayfs",
                            "default_runtime_name": "runc",
                            "runtimes": {
                                "runc": {
                                    "runtime_type": "io.containerd.runc.v2",
                                    "options": {"SystemdCgroup": False},
                                }
                            },
                        },
                        "cni": {"bin_dir": "/usr/lib/cni", "conf_dir": str(cni / "net.d")},
                        "registry": {"config_path": str(certs)},
                    },
                },
            }
        )
    )
    argv = ["containerd", f"--config={config}"]

    def ready() -> bool:
        if not layout.containerd_socket.exists():
            return False
        done = subprocess.run(
            ["ctr", f"--address={layout.containerd_socket}", "version"], capture_output=True
        )
        return done.returncode == 0

    return Component("containerd", argv, ready)


def _cni_config(layout: Layout) -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "agentpersistence",
        "plugins": [
            {
                "type": "bridge",
                "bridge": plan.POD_BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": plan.POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.dir("cni") / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet(bin_dir: Path, layout: Layout, pki: Pki) -> Component:
    base = layout.dir("kubelet")
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": plan.NODE_IP,
        "port": plan.KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": plan.KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki.ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{plan.CGROUP_PARENT}",
        "failSwapOn": False,
        "failCgroupV1": False,
        "clusterDomain": plan.CLUSTER_DOMAIN,
        "clusterDNS": [plan.DNS_IP],
        "resolvConf": "",  # no upstream DNS: pods resolve cluster names only
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(base / "pod-logs"),
        "volumePluginDir": str(base / "volume-plugins"),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 40,
        "protectKernelDefaults": False,
        "staticPodPath": "",
    }
    path = base / "config.yaml"
    path.write_text(json.dumps(config, indent=2))
    argv = [
        str(bin_dir / "kubelet"),
        f"--config={path}",
        f"--kubeconfig={pki.kubeconfigs['kubelet']}",
        f"--root-dir={base / 'root'}",
        f"--hostname-override={plan.NODE_NAME}",
        f"--node-ip={plan.NODE_IP}",
        "--v=1",
    ]
    url = f"http://127.0.0.1:{plan.KUBELET_HEALTHZ_PORT}/healthz"
    return Component("kubelet", argv, lambda: http_ok(url))


def kube_proxy(bin_dir: Path, layout: Layout, pki: Pki) -> Component:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(pki.kubeconfigs["kube-proxy"])},
        "mode": "iptables",
        "hostnameOverride": plan.NODE_NAME,
        "clusterCIDR": plan.POD_CIDR,
        "bindAddress": plan.NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{plan.PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{plan.PROXY_METRICS_PORT}",
        "nodePortAddresses": [f"{plan.NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False},
        # Zeros: kube-proxy leaves the conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    path = layout.dir("kube-proxy") / "config.yaml"
    path.write_text(json.dumps(config, indent=2))
    argv = [str(bin_dir / "kube-proxy"), f"--config={path}"]
    url = f"http://127.0.0.1:{plan.PROXY_HEALTHZ_PORT}/healthz"
    return Component("kube-proxy", argv, lambda: http_ok(url))


def coredns(bin_dir: Path, layout: Layout, pki: Pki) -> Component:
    corefile = layout.dir("coredns") / "Corefile"
    corefile.write_text(
        f"""{plan.CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {plan.DNS_IP}
    errors
    health 127.0.0.1:{plan.COREDNS_HEALTH_PORT}
    ready 127.0.0.1:{plan.COREDNS_READY_PORT}
    kubernetes {plan.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {pki.kubeconfigs["coredns"]}
        pods insecure
    }}
    cache 30
}}

# No upstream: a name outside the cluster gets NXDOMAIN, and no query leaves the machine.
.:53 {{
    bind {plan.DNS_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    )
    argv = [str(bin_dir / "coredns"), "-conf", str(corefile)]
    url = f"http://127.0.0.1:{plan.COREDNS_READY_PORT}/ready"
    return Component("coredns", argv, lambda: http_ok(url))


# --------------------------------------------------------------------------- helpers


def _toml(table: dict[str, object], prefix: str = "") -> str:
    """A minimal TOML writer for containerd's config (strings, bools, ints, lists, tables)."""
    scalars, tables = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            scalars.append(f"{_key(key)} = {_value(value)}")
    out = "\n".join(scalars)
    for key, value in tables:
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        out += f"\n\n[{name}]\n" + _toml(value, name)
    return out.strip() + "\n"


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def api_get(pki: Pki, path: str) -> dict[str, Any] | None:
    """GET ``path`` from the API server as admin; None on 404."""
    context = client_ssl_context(pki.ca, KeyPair(pki.client("admin").cert, pki.client("admin").key))
    url = f"https://{plan.NODE_IP}:{plan.APISERVER_PORT}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            loaded: dict[str, Any] = json.loads(response.read())
            return loaded
    except urllib.error.HTTPError as error:
        with error:
            if error.code == 404:
                return None
            raise
