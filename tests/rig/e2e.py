"""The cluster the e2e tier runs on, behind one fixture, whichever provider made it.

``$AGENTPERSISTENCE_E2E_PROVIDER`` chooses:

- ``local`` (default; ``make test``): a fresh single-node cluster from parts on this machine
  (:mod:`rig.cluster`), with the images built here from the repo's Dockerfiles; torn down at
  the end, and the host checked clean (no process, mount, interface, chain; no packet from a
  pod dropped on its way out);
- ``kubeconfig``: any cluster, through ``$AGENTPERSISTENCE_E2E_KUBECONFIG`` (default: the one
  ``make cluster`` started), left running; its nodes must already have the images;
- ``kind`` (``make e2e-kind``): a kind cluster on a machine with Docker; the images are built
  with ``docker build`` from the same Dockerfiles and loaded with ``kind load``; deleted at the
  end (``AGENTPERSISTENCE_E2E_KEEP=1`` keeps it).

Every provider yields an :class:`E2ECluster`: a kubeconfig and kubectl and helm (built by
``tests/testenv/build.sh``). What the tests need from a node itself, SIGKILLing a container's
process as a crash would, goes through the cluster too (:meth:`E2ECluster.kill_container`: a
privileged pod in the host's PID namespace), so it works the same on every provider.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rig import cluster, images, packages, waiting

PROVIDER_ENV = "AGENTPERSISTENCE_E2E_PROVIDER"
KEEP_ENV = "AGENTPERSISTENCE_E2E_KEEP"
KUBECONFIG_ENV = "AGENTPERSISTENCE_E2E_KUBECONFIG"
PROVIDERS = ("local", "kubeconfig", "kind")
KIND_CLUSTER = "agentpersistence-e2e"
KUBECTL_TIMEOUT_S = 120.0
WAIT_TIMEOUT_S = 180.0
"""How long a step may wait for pods and conditions on two busy cores."""

JsonObject = dict[str, Any]
T = TypeVar("T")
Say = Callable[[str], object]


class E2EError(RuntimeError):
    """A provider could not make its cluster; the message says what is missing."""


@dataclass
class E2ECluster:
    provider: str
    kubeconfig: Path
    bin_dir: Path
    home: Path
    """Where kubectl's and helm's caches and config go (never the user's)."""

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.home / "helm-config"),
            "HELM_DATA_HOME": str(self.home / "helm-data"),
        }

    def run(
        self, tool: str, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl or helm against this cluster; never raises on a non-zero exit."""
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )

    def kubectl(self, *args: str, input: str | None = None) -> str:
        done = self.run("kubectl", *args, input=input)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> JsonObject:
        loaded: JsonObject = json.loads(self.kubectl(*args, "-o", "json"))
        return loaded

    def apply(self, *manifests: Mapping[str, Any]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        self.kubectl("apply", "-f", "-", input=json.dumps(items))

    def kill_container(self, pod: JsonObject, container_id: str) -> None:
        """SIGKILL the processes of a container of ``pod``, from a privileged pod on its node
        that shares the host's PID namespace and runs the pod's own image (it is there)."""
        ns, node = pod["metadata"]["namespace"], pod["spec"]["nodeName"]
        image = pod["spec"]["initContainers"][-1]["image"]
        name = f"kill-{os.urandom(3).hex()}"
        runtime_id = container_id.split("://", 1)[-1]
        killer = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "nodeName": node,
                "hostPID": True,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "kill",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-c", KILL_BY_CGROUP, runtime_id],
                        "securityContext": {"runAsUser": 0, "privileged": True},
                    }
                ],
            },
        }
        self.apply(killer)
        try:
            self.kubectl(
                "wait", "-n", ns, f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded",
                f"--timeout={WAIT_TIMEOUT_S:.0f}s",
            )  # fmt: skip
        finally:
            self.run("kubectl", "delete", "pod", "-n", ns, name, "--wait=false")


KILL_BY_CGROUP = """
import os, signal, sys
killed = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cgroup") as cgroup:
            if sys.argv[1] in cgroup.read():
                os.kill(int(pid), signal.SIGKILL)
                killed.append(pid)
    except OSError:
        pass
print("killed", killed)
sys.exit(0 if killed else 1)
"""
"""Runs on the node: every process whose cgroup path names the container id is SIGKILLed."""


def diagnostics(made: E2ECluster, lines: int = 40) -> list[tuple[str, str]]:
    """What to read when a step fails: pods, recent events, logs of pods that are not ready."""
    sections = [
        ("pods", made.run("kubectl", "get", "pods", "-A", "-o", "wide").stdout),
        (
            "events (newest last)",
            "\n".join(
                made.run(
                    "kubectl", "get", "events", "-A", "--sort-by=.lastTimestamp"
                ).stdout.splitlines()[-lines:]
            ),
        ),
    ]
    listed = made.run("kubectl", "get", "pods", "-A", "-o", "json")
    for pod in json.loads(listed.stdout or '{"items": []}')["items"]:
        conditions = pod.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            continue
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for previous in ("", "--previous"):
            args = ["logs", "-n", ns, name, "--all-containers", f"--tail={lines}"]
            out = made.run("kubectl", *args, *([previous] if previous else []))
            if out.stdout.strip():
                sections.append((f"logs {ns}/{name} {previous}".strip(), out.stdout))
    return sections


def eventually(probe: Callable[[], T | None], what: str, timeout: float = WAIT_TIMEOUT_S) -> T:
    """Poll ``probe`` (every half second) until it returns something truthy; that value."""
    return waiting.eventually(probe, what, timeout, interval=0.5)


def terminal(config: pytest.Config) -> Say:
    """Progress lines that reach the terminal while pytest captures output."""
    capman = config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            print(message, flush=True)

    return say


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the local cluster's binaries and images before the first test, so a first
    build (minutes) is not counted against a test's timeout. Only when tests that run a
    local cluster (marker ``cluster``) are selected."""
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("cluster") for item in session.items):
        return
    if provider_name() == "local":
        say = terminal(session.config)
        try:
            cluster.bin_dir_built(say)
            images.build(say)
        except (cluster.ClusterError, images.ImagesError, packages.PackagesError) as exc:
            # Not an internal error of pytest: the tests that need the cluster fail with it.
            say(f"[rig.e2e] the local cluster's parts could not be built: {exc}")


# --------------------------------------------------------------------------- providers


def provider_name() -> str:
    name = os.environ.get(PROVIDER_ENV, "local")
    if name not in PROVIDERS:
        raise E2EError(f"{PROVIDER_ENV}={name!r}: choose one of {', '.join(PROVIDERS)}")
    return name


@contextlib.contextmanager
def provide(name: str, say: Say = print) -> Iterator[E2ECluster]:
    home = Path(tempfile.mkdtemp(prefix="ap-e2e-"))
    try:
        if name == "local":
            with _local(home, say) as made:
                yield made
        elif name == "kubeconfig":
            yield _any(home)
        else:
            with _kind(home, say) as made:
                yield made
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _local(home: Path, say: Say) -> Iterator[E2ECluster]:
    local = cluster.up(say)
    try:
        yield E2ECluster("local", local.kubeconfig, local.bin_dir, home)
    finally:
        dropped = cluster.dropped_egress()
        problems = cluster.down(say)
        if dropped:
            problems.append(f"{dropped} packet(s) from pods tried to leave the machine")
        if problems:
            raise E2EError("the local cluster did not end cleanly: " + "; ".join(problems))


def _any(home: Path) -> E2ECluster:
    kubeconfig = Path(os.environ.get(KUBECONFIG_ENV) or cluster.Layout.default().kubeconfig)
    if not kubeconfig.is_file():
        raise E2EError(
            f"no kubeconfig at {kubeconfig}: set {KUBECONFIG_ENV}, or start a cluster with "
            "`make cluster`"
        )
    return E2ECluster("kubeconfig", kubeconfig, cluster.bin_dir(), home)


@contextlib.contextmanager
def _kind(home: Path, say: Say) -> Iterator[E2ECluster]:
    missing = [tool for tool in ("kind", "docker") if shutil.which(tool) is None]
    if missing:
        raise E2EError(
            f"the kind provider needs {' and '.join(missing)} on PATH "
            "(https://kind.sigs.k8s.io, a running Docker engine)"
        )
    _check(["kind", "delete", "cluster", "--name", KIND_CLUSTER], say)
    _check(["kind", "create", "cluster", "--name", KIND_CLUSTER, "--wait", "180s"], say)
    try:
        kubeconfig = home / "kubeconfig"
        kubeconfig.write_text(
            _check(["kind", "get", "kubeconfig", "--name", KIND_CLUSTER], say).stdout
        )
        for spec in (spec for spec in images.IMAGES if spec.python):  # kind brings its pause
            _check(
                [
                    "docker",
                    "build",
                    "-f",
                    str(images.REPO / spec.dockerfile),
                    "-t",
                    spec.ref,
                    str(images.REPO),
                ],
                say,
            )
            _check(["kind", "load", "docker-image", spec.ref, "--name", KIND_CLUSTER], say)
        yield E2ECluster("kind", kubeconfig, cluster.bin_dir(), home)
    finally:
        if not os.environ.get(KEEP_ENV):
            _check(["kind", "delete", "cluster", "--name", KIND_CLUSTER], say)


def _check(cmd: list[str], say: Say) -> subprocess.CompletedProcess[str]:
    say(f"[rig.e2e] {' '.join(cmd)}")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise E2EError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr}")
    return done
