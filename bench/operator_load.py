"""``python -m bench.operator_load``: the operator under load, on the local servers.

One ``agentpersistence-operator`` process (reconciler and injection webhook, as the chart runs
it) against kube-apiserver + etcd from ``make testenv``, DynamoDB Local, moto's S3, the
project's AgentCore emulator and Valkey with RediSearch, started through the test rig. Two
phases:

1. **Reconcile**: ``--resources`` ``AgentPersistence`` objects (each with a DynamoDB table, an
   S3 bucket, a Valkey search index and cache, an AgentCore Memory) are created at once, from
   a pool of client threads. A watch on the API server notes when each first shows
   ``Ready=True``; per resource, the time from its create request to that. Then every
   resource is checked to name its own table, bucket, index and memory.
2. **Admission**: pods are created at ``--rate`` per second for ``--seconds`` (open loop: a
   request starts on schedule whether or not earlier ones returned), first labelled for
   injection (through the webhook), then without the label (the webhook's selector skips
   them): the client-side create latency of each. There is no kubelet: pods are stored,
   never run. Every labelled pod is checked to carry the sidecar.

The operator's resident memory (``/proc/<pid>/status``) is read after each phase. Nothing is
a pass/fail target: the figures are for the README and for finding bottlenecks.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bench.testrig  # noqa: F401  # puts the rig (tests/rig) on sys.path, before it is imported
from agentpersistence.operator import naming
from agentpersistence.operator.webhook import handlers as webhook_handlers
from agentpersistence.operator.webhook.inject import (
    INJECT_LABEL,
    NAME_ANNOTATION,
    STATUS_ANNOTATION,
)
from rig.dynamodb import DynamoDBLocal, MotoServer, install_dynamodb_local
from rig.emulator import start_emulator
from rig.kube import (
    BUILD_SCRIPT,
    KubeControlPlane,
    free_port,
    mutating_webhook_configuration,
    start_control_plane,
)
from rig.operator import CRD_FILE, POD_CREATION, Backends
from rig.valkey import search_module_path, start_valkey

from .context import progress
from .procs import BenchSetupError, Memory, memory_of
from .runner import percentile

IMAGE = "registry.invalid/agentpersistence-sidecar:bench"
START_TIMEOUT_S = 60.0
CLIENT_THREADS = 16
"""Concurrent create requests: enough that 200 creations leave together, and that a slow
admission does not delay the next scheduled pod."""
SLOW_MS = 250.0
WEBHOOK_NAME = "inject.agentpersistence.io"
WEBHOOK_METRIC = "apiserver_admission_webhook_admission_duration_seconds"
JsonObject = dict[str, Any]


# --------------------------------------------------------------------------- the API server


class Api:
    """Plain HTTPS requests to the API server as its admin; one keep-alive connection per
    thread (kubectl would add a process start to every request measured)."""

    def __init__(self, kube: KubeControlPlane) -> None:
        parts = urlsplit(kube.server)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.context = kube.ssl_context()
        self.local = threading.local()

    def connection(self) -> http.client.HTTPSConnection:
        found = getattr(self.local, "connection", None)
        if found is None:
            found = http.client.HTTPSConnection(self.host, self.port, context=self.context)
            self.local.connection = found
        return found

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, JsonObject]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        connection = self.connection()
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self.local.connection = None
            raise
        return response.status, json.loads(data) if data else {}

    def create(self, path: str, body: Any) -> JsonObject:
        status, answer = self.request("POST", path, body)
        if status != 201:
            raise RuntimeError(f"POST {path} answered {status}: {json.dumps(answer)[:500]}")
        return answer

    def watch(self, path: str, seen: Callable[[JsonObject], bool], stop: threading.Event) -> None:
        """List then watch ``path``, each object into ``seen``, until it returns True or
        ``stop`` is set; listed again whenever the watch ends or reports an error."""
        while not stop.is_set():
            status, listed = self.request("GET", path)
            if status == 429:  # the resource's storage is still starting: as told, retry
                time.sleep(float(listed.get("details", {}).get("retryAfterSeconds", 1)))
                continue
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {json.dumps(listed)[:300]}")
            if any([seen(item) for item in listed.get("items", [])]):
                return
            version = listed["metadata"]["resourceVersion"]
            if self._watch(f"{path}?watch=1&resourceVersion={version}", seen, stop):
                return

    def _watch(self, url: str, seen: Callable[[JsonObject], bool], stop: threading.Event) -> bool:
        """One watch request; True once ``seen`` is satisfied."""
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=5
        )
        try:
            connection.request("GET", url)
            response = connection.getresponse()
            while not stop.is_set():
                line = response.readline()
                if not line:
                    return False
                event = json.loads(line)
                if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
                    return False  # an error (an expired version...): list again
                if seen(event["object"]):
                    return True
        except (TimeoutError, OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            connection.close()
        return False


# --------------------------------------------------------------------------- the servers


@dataclass
class Rig:
    kube: KubeControlPlane
    backends: Backends
    workdir: Path


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[Rig]:
    """Every server the operator talks to, stopped on exit."""
    bin_dir = testenv_bin_dir()
    with contextlib.ExitStack() as stack:
        progress("starting kube-apiserver + etcd, DynamoDB Local, moto, the emulator, Valkey")
        kube = start_control_plane(bin_dir, workdir / "kube")
        stack.callback(kube.stop)
        dynamodb = DynamoDBLocal(free_port(), workdir / "dynamodb", jar=install_dynamodb_local())
        dynamodb.start()
        stack.callback(dynamodb.stop)
        moto = MotoServer(free_port(), workdir / "moto")
        moto.start()
        stack.callback(moto.stop)
        emulator = start_emulator(workdir / "emulator")
        stack.callback(emulator.stop)
        args = ["--loadmodule", str(search_module_path())]
        valkey = start_valkey(workdir / "valkey", extra_args=args)
        stack.callback(valkey.stop)
        backends = Backends(
            moto.endpoint_url, dynamodb.endpoint_url, valkey.url, emulator.endpoint_url
        )
        yield Rig(kube, backends, workdir)


def testenv_bin_dir() -> Path:
    """etcd, kube-apiserver and kubectl from ``make testenv`` (never built here)."""
    located = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    if located.returncode != 0:
        raise BenchSetupError("the control-plane binaries are missing: run `make testenv`")
    printed = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True
    )
    return Path(printed.stdout.strip())


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log_path: Path
    webhook_url: str

    def memory(self) -> Memory | None:
        return memory_of(self.process.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time the operator has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
            raise BenchSetupError(f"the operator exited with {self.process.returncode}:\n{tail}")


@contextlib.contextmanager
def operator(rig: Rig, namespace: str, extra_env: Mapping[str, str]) -> Iterator[Operator]:
    """``agentpersistence-operator`` with its webhook, watching ``namespace``."""
    certs = rig.workdir / "certs"
    certs.mkdir()
    pair = rig.kube.issue_serving_cert("bench-webhook")
    (certs / "tls.crt").write_bytes(pair.cert.read_bytes())
    (certs / "tls.key").write_bytes(pair.key.read_bytes())
    (certs / "ca.crt").write_bytes(rig.kube.ca_cert.read_bytes())
    port, health = free_port(), free_port()
    argv = [
        sys.executable, "-m", "agentpersistence.operator", "--standalone",
        "--namespace", namespace, "--liveness", f"http://127.0.0.1:{health}/healthz",
    ]  # fmt: skip
    env = (
        rig.kube.env()
        | rig.backends.env()
        | {
            "AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE,
            "AGENTPERSISTENCE_WEBHOOK_ADDR": "127.0.0.1",
            "AGENTPERSISTENCE_WEBHOOK_PORT": str(port),
            "AGENTPERSISTENCE_WEBHOOK_CERT_DIR": str(certs),
        }
        | dict(extra_env)
    )
    log_path = rig.workdir / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    running = Operator(process, log_path, f"https://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(f"http://127.0.0.1:{health}/healthz"):
            running.alive()
            if time.monotonic() > deadline:
                raise BenchSetupError("the operator's liveness endpoint never answered")
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# --------------------------------------------------------------------------- phase 1


def spec(backends: Backends, suffix: str) -> JsonObject:
    valkey = {"url": backends.valkey_url, "keyPrefix": f"ap{suffix}"}
    return {
        "deletionPolicy": "Delete",
        "checkpointer": {
            "backend": "dynamodb",
            "dynamodb": {
                "tableName": f"bench-table-{suffix}",
                "ttlSeconds": 86400,
                "s3Offload": {"bucketName": f"bench-bucket-{suffix}"},
            },
        },
        "store": {"backend": "valkey", "valkey": valkey, "index": {"dims": 8}},
        "cache": {"backend": "valkey", "valkey": valkey},
        "agentcoreMemory": {"name": f"bench_{suffix}", "eventExpiryDays": 30},
    }


def ready(body: JsonObject) -> bool:
    conditions = body.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class Reconciled:
    seconds: list[float]
    """Per resource: from its create request to Ready=True first seen."""
    total_s: float
    """From the first create request to the last resource Ready."""
    create_s: float
    """How long the create requests took, all of them."""
    missing: list[str] = field(default_factory=list)


def reconcile_phase(
    api: Api, rig: Rig, namespace: str, count: int, timeout: float, batch: str = ""
) -> Reconciled:
    path = f"/apis/{naming.API_VERSION}/namespaces/{namespace}/{naming.PLURAL}"
    sent: dict[str, float] = {}
    became_ready: dict[str, float] = {}
    stop = threading.Event()

    def seen(body: JsonObject) -> bool:
        name = body["metadata"]["name"]
        if name in sent and name not in became_ready and ready(body):
            became_ready[name] = time.perf_counter()
        return len(became_ready) >= count

    failures: list[BaseException] = []

    def watch() -> None:
        try:
            api.watch(path, seen, stop)
        except BaseException as exc:
            failures.append(exc)
            raise

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    suffixes = [f"{batch}{i:03d}{uuid.uuid4().hex[:5]}" for i in range(count)]

    def create(suffix: str) -> None:
        name = f"agent-{suffix}"
        body = {
            "apiVersion": naming.API_VERSION,
            "kind": naming.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec(rig.backends, suffix),
        }
        sent[name] = time.perf_counter()
        api.create(path, body)

    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        for done in [pool.submit(create, s) for s in suffixes]:
            done.result()
    created = time.perf_counter()
    progress(f"{count} resources created in {created - began:.1f} s; waiting for Ready")
    watcher.join(timeout)
    stop.set()
    if failures:
        raise BenchSetupError(f"watching the resources failed: {failures[0]}")
    missing = sorted(set(sent) - set(became_ready))
    seconds = [became_ready[name] - sent[name] for name in sent if name in became_ready]
    last = max(became_ready.values(), default=math.nan)
    return Reconciled(seconds, last - began, created - began, missing)


def check_outputs(api: Api, rig: Rig, namespace: str) -> int:
    """Every Ready resource names its own storage; how many were checked."""
    path = f"/apis/{naming.API_VERSION}/namespaces/{namespace}/{naming.PLURAL}"
    _, listed = api.request("GET", path)
    checked = 0
    for item in listed.get("items", []):
        if not ready(item):
            continue
        suffix = item["metadata"]["name"].removeprefix("agent-")
        outputs = item["status"]["outputs"]
        wanted = {"tableName": f"bench-table-{suffix}", "bucketName": f"bench-bucket-{suffix}"}
        if any(outputs.get(k) != v for k, v in wanted.items()) or not outputs.get("memoryId"):
            raise RuntimeError(f"{item['metadata']['name']} reports {outputs}")
        checked += 1
    return checked


# --------------------------------------------------------------------------- phase 2


def register_webhook(rig: Rig, running: Operator, namespace: str) -> None:
    ca_bundle = base64.b64encode(rig.kube.ca_cert.read_bytes()).decode("ascii")
    configuration = mutating_webhook_configuration(
        WEBHOOK_NAME,
        f"{running.webhook_url}{webhook_handlers.WEBHOOK_PATH}",
        ca_bundle,
        rules=[POD_CREATION],
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        object_selector={"matchLabels": {INJECT_LABEL: "true"}},
        timeout_seconds=10,
    )
    configuration["metadata"]["name"] = "bench-agentpersistence"
    rig.kube.apply(configuration)


def pod(name: str, resource: str, labelled: bool) -> JsonObject:
    labels = {"app": "agent", **({INJECT_LABEL: "true"} if labelled else {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": {NAME_ANNOTATION: resource}},
        "spec": {"containers": [{"name": "agent", "image": "registry.invalid/agent:1"}]},
    }


@dataclass
class Admitted:
    latencies_ms: list[float]
    late_ms: float
    """The latest a request started after its scheduled time."""
    injected: int
    errors: list[str]
    slow: list[tuple[float, float]] = field(default_factory=list)
    """(second of the run it started at, latency ms) of the requests over :data:`SLOW_MS`."""
    webhook: dict[float, int] = field(default_factory=dict)
    """The API server's own timing of the webhook calls: calls per histogram bucket (upper
    bound in seconds), from its ``/metrics``."""


def admission_phase(
    api: Api,
    namespace: str,
    resource: str,
    labelled: bool,
    rate: float,
    seconds: float,
    kind: str = "",
) -> Admitted:
    path = f"/api/v1/namespaces/{namespace}/pods"
    count = int(rate * seconds)
    latencies: list[float] = []
    slow: list[tuple[float, float]] = []
    errors: list[str] = []
    injected = 0
    late = 0.0
    kind = kind or ("in" if labelled else "out")

    def create(index: int, due: float) -> tuple[float, float, bool]:
        began = time.perf_counter()
        stored = api.create(path, pod(f"{kind}-{index:05d}", resource, labelled))
        took = time.perf_counter() - began
        annotations = stored["metadata"].get("annotations", {})
        return took, began - due, annotations.get(STATUS_ANNOTATION) == "injected"

    histogram_before = webhook_histogram(api)
    start = time.perf_counter() + 0.5
    futures: list[Future[tuple[float, float, bool]]] = []
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        for index in range(count):
            due = start + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # the schedule is the load: open loop, one request per slot
            futures.append(pool.submit(create, index, due))
        for index, future in enumerate(futures):
            try:
                took, lag, was_injected = future.result()
            except Exception as exc:  # every failure is reported
                errors.append(str(exc)[:300])
                continue
            latencies.append(took * 1000)
            late = max(late, lag * 1000)
            injected += was_injected
            if took * 1000 > SLOW_MS:
                slow.append((index / rate, took * 1000))
    after = webhook_histogram(api)
    calls = {bound: after.get(bound, 0) - histogram_before.get(bound, 0) for bound in after}
    return Admitted(latencies, late, injected, errors, slow, calls)


def webhook_histogram(api: Api) -> dict[float, int]:
    """``apiserver_admission_webhook_admission_duration_seconds`` for our webhook: how many
    calls took at most each bucket's bound (cumulative, as Prometheus counts them)."""
    connection = api.connection()
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    counts: dict[float, int] = {}
    for line in text.splitlines():
        if not line.startswith(f"{WEBHOOK_METRIC}_bucket{{") or WEBHOOK_NAME not in line:
            continue
        labels, _, value = line.rpartition(" ")
        bound = labels.split('le="', 1)[1].split('"', 1)[0]
        counts[math.inf if bound == "+Inf" else float(bound)] = int(float(value))
    return counts


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _row(name: str, samples: list[float], unit: float = 1.0) -> str:
    values = [s * unit for s in samples]
    cells = [percentile(values, 50), percentile(values, 99), max(values, default=math.nan)]
    return (
        f"{name:<40} {_ms(cells[0]):>10} {_ms(cells[1]):>10} {_ms(cells[2]):>10} {len(values):>6}"
    )


def _buckets(result: Admitted) -> str:
    """Calls within each bucket of the histogram, and the bucket holding p50 and p99."""
    total = result.webhook.get(math.inf, 0)
    bounds = sorted(b for b in result.webhook if b != math.inf)
    shares = [
        f"≤{b * 1000:g} ms {100 * result.webhook[b] / total:.1f}%"
        for b in bounds
        if 0.005 <= b <= 2.5
    ]

    def quantile(q: float) -> str:
        bound = next((b for b in bounds if result.webhook[b] >= q * total), math.inf)
        return "> 2.5 s" if bound == math.inf else f"≤ {bound * 1000:g} ms"

    return f"{total} calls; {', '.join(shares)}; p50 {quantile(0.5)}, p99 {quantile(0.99)}"


def format_report(
    args: argparse.Namespace,
    reconciled: Reconciled,
    checked: int,
    memory_after_reconcile: Memory | None,
    admitted: dict[str, Admitted],
    memory_after_admission: Memory | None,
    cpu: dict[str, float],
    seconds: float,
    storm: tuple[Reconciled, Admitted] | None = None,
    memory_after_storm: Memory | None = None,
) -> str:
    head = f"{'measure':<40} {'p50':>10} {'p99':>10} {'max':>10} {'n':>6}"
    lines = [
        "== the operator under load (local servers) ==",
        f"{args.resources} AgentPersistence resources (DynamoDB table + S3 bucket + Valkey "
        "index + AgentCore Memory each) created at once",
        "",
        head,
        "-" * len(head),
        _row("create request → Ready=True, s", reconciled.seconds),
        "",
        f"all {args.resources} created in {reconciled.create_s:.1f} s; all Ready "
        f"{reconciled.total_s:.1f} s after the first create; outputs checked: {checked}",
    ]
    if reconciled.missing:
        lines.append(f"NOT Ready within {args.ready_timeout:.0f} s: {len(reconciled.missing)}")
    lines += [
        "",
        f"pod creations at {args.rate:g}/s for {args.seconds:g} s each (client-side latency, "
        "ms; no kubelet)",
        "",
        head,
        "-" * len(head),
    ]
    if storm is not None:
        admitted = {**admitted, f"with, while {args.resources} more reconcile": storm[1]}
    for label, result in admitted.items():
        lines.append(_row(label, result.latencies_ms))
    for label, result in admitted.items():
        lines.append(
            f"{label}: injected {result.injected}/{len(result.latencies_ms)}, errors "
            f"{len(result.errors)}, latest start {result.late_ms:.0f} ms behind schedule"
        )
        lines += [f"  error: {e}" for e in result.errors[:3]]
        if result.slow:
            at = ", ".join(f"{second:.1f}" for second, _ in result.slow[:12])
            lines.append(f"  {len(result.slow)} over {SLOW_MS:.0f} ms, started at second {at}")
        if sum(result.webhook.values()):
            lines.append(f"  the API server's timing of the webhook call: {_buckets(result)}")
    if storm is not None:
        again = storm[0]
        lines.append(
            f"the second {args.resources}, under that admission load: Ready p50 "
            f"{percentile(again.seconds, 50):.1f} s, p99 {percentile(again.seconds, 99):.1f} s, "
            f"all {again.total_s:.1f} s after the first create; not Ready: {len(again.missing)}"
        )
    lines.append("")
    lines.append(
        f"operator CPU: {cpu['reconcile']:.1f} s in the reconcile phase, "
        f"{cpu['admission']:.1f} s in the admission phase"
        + (f", {cpu['storm']:.1f} s with both at once" if "storm" in cpu else "")
    )
    for when, memory in (
        ("after the reconcile phase", memory_after_reconcile),
        ("after the admission phase", memory_after_admission),
        ("after both at once", memory_after_storm),
    ):
        if memory is not None:
            lines.append(
                f"operator RSS {when}: {memory.rss_kib / 1024:.1f} MiB "
                f"(peak {memory.hwm_kib / 1024:.1f} MiB)"
            )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append(f"(run took {seconds:.1f} s on {os.cpu_count()} CPUs; load average {load})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.operator_load",
        description="The operator under load: many AgentPersistence resources at once, then "
        "pod admissions through its webhook at a steady rate.",
    )
    p.add_argument("--resources", type=int, default=200, help="resources created at once")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for Ready")
    p.add_argument("--rate", type=float, default=20.0, help="pod creations per second")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of pod creations, each way")
    p.add_argument(
        "--storm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then admit pods while another --resources reconcile (default: on)",
    )
    p.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the operator (e.g. its concurrency), repeatable",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the servers' logs")
    return p


def run(args: argparse.Namespace, workdir: Path) -> str:
    began = time.perf_counter()
    namespace = "bench-operator"
    with servers(workdir) as rig:
        rig.kube.kubectl("apply", "--server-side", "--field-manager=bench", "-f", str(CRD_FILE))
        rig.kube.kubectl("wait", "--for=condition=Established", f"crd/{naming.CRD_NAME}")
        rig.kube.kubectl("create", "namespace", namespace)
        api = Api(rig.kube)
        extra = dict(item.split("=", 1) for item in args.operator_env)
        with operator(rig, namespace, extra) as running:
            progress(f"phase 1: {args.resources} AgentPersistence resources at once")
            cpu_start = running.cpu_seconds()
            reconciled = reconcile_phase(api, rig, namespace, args.resources, args.ready_timeout)
            running.alive()
            cpu = {"reconcile": running.cpu_seconds() - cpu_start}
            checked = check_outputs(api, rig, namespace)
            after_reconcile = running.memory()
            register_webhook(rig, running, namespace)
            target = f"agent-{'000'}"
            resource = next((n for n in _names(api, namespace) if n.startswith(target)), "missing")
            admitted: dict[str, Admitted] = {}
            for labelled, label in ((True, "with the webhook"), (False, "without (unlabelled)")):
                progress(f"phase 2: pods {label} at {args.rate:g}/s for {args.seconds:g} s")
                admitted[label] = admission_phase(
                    api, namespace, resource, labelled, args.rate, args.seconds
                )
            running.alive()
            cpu["admission"] = running.cpu_seconds() - cpu_start - cpu["reconcile"]
            after_admission = running.memory()
            storm: tuple[Reconciled, Admitted] | None = None
            if args.storm:
                progress(
                    f"phase 3: {args.resources} more resources at once, pods with the webhook "
                    f"at {args.rate:g}/s for {args.seconds:g} s meanwhile"
                )
                storm = storm_phase(api, rig, namespace, resource, args)
                running.alive()
                cpu["storm"] = running.cpu_seconds() - cpu_start - cpu["reconcile"]
                cpu["storm"] -= cpu["admission"]
                after_storm = running.memory()
    return format_report(
        args,
        reconciled,
        checked,
        after_reconcile,
        admitted,
        after_admission,
        cpu,
        time.perf_counter() - began,
        storm,
        after_storm if storm is not None else None,
    )


def storm_phase(
    api: Api, rig: Rig, namespace: str, resource: str, args: argparse.Namespace
) -> tuple[Reconciled, Admitted]:
    """A second batch of resources applied at once while pods keep coming: what admission
    costs while the same process reconciles."""
    with ThreadPoolExecutor(1) as pool:
        reconciling = pool.submit(
            reconcile_phase, api, rig, namespace, args.resources, args.ready_timeout, "s"
        )
        admitted = admission_phase(
            api, namespace, resource, True, args.rate, args.seconds, kind="storm"
        )
        return reconciling.result(), admitted


def _names(api: Api, namespace: str) -> list[str]:
    path = f"/apis/{naming.API_VERSION}/namespaces/{namespace}/{naming.PLURAL}"
    _, listed = api.request("GET", path)
    return sorted(item["metadata"]["name"] for item in listed.get("items", []))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    try:
        print(run(args, workdir))
    except BenchSetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep_workdir:
            progress(f"logs kept in {workdir}")
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
