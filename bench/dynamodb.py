"""The ``dynamodb`` group: ``SidecarSaver[dynamodb]`` against the peer's ``DynamoDBSaver``.

Both on the same DynamoDB Local (AWS's jar) with S3 offload configured on moto's S3, both
started through the test rig (:mod:`bench.testrig`). The sidecar runs with ``--provision``
on table and bucket ``bench-ap``; the peer's table ``bench-peer`` is created with boto3
from :func:`agentpersistence.sidecar.backends.dynamodb.schema.table_definition` (the peer
wants string keys ``PK``/``SK``, which that table has) and its bucket first. Same 5 KB
checkpoint pairs as the ``checkpoint`` group, sync API (the peer's async methods run its
sync code on a thread pool).

Then the AWS calls each saver makes per operation, counted with botocore's ``before-call``
event: on the peer's own DynamoDB and S3 clients in this process; for the sidecar, which
exposes no AWS call counters (its metrics count requests per route), by running the same
backend in this process through :func:`agentpersistence.sidecar.inprocess.open_saver`
with the hook on its aiobotocore clients.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from . import report
from .checkpoints import checkpoint_header, contender, sidecar_saver
from .context import Bench, error_text, progress
from .runner import Comparison, contenders_of, run, summarize
from .workload import STEPS_PER_THREAD, CheckpointStream

if TYPE_CHECKING:
    from agentpersistence.client import SidecarSaver

SIDECAR_TABLE = SIDECAR_BUCKET = "bench-ap"
PEER_TABLE = PEER_BUCKET = "bench-peer"
REGION = "us-east-1"
LIST_LIMIT = 5
QUICK_CALL_STEPS = 4
"""Steps of the thread whose calls are counted with ``--quick`` (else a whole thread)."""


def sidecar_config() -> dict[str, Any]:
    return {
        "checkpointer": {
            "backend": "dynamodb",
            "dynamodb": {"tableName": SIDECAR_TABLE, "s3Offload": {"bucketName": SIDECAR_BUCKET}},
        }
    }


@contextlib.contextmanager
def aws_environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in this process (boto3 and the in-process sidecar read it), then restored."""
    names = [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]
    saved = {name: os.environ.get(name) for name in names}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class CallCounter:
    """Counts API calls by ``service:Operation`` from botocore's ``before-call`` event."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.unique_id = f"bench-calls-{uuid.uuid4().hex}"
        self._clients: list[Any] = []

    def hook(self, model: Any, **kwargs: Any) -> None:
        self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def attach(self, client: Any) -> None:
        """Any botocore or aiobotocore client."""
        client.meta.events.register("before-call", self.hook, unique_id=self.unique_id)
        self._clients.append(client)

    def detach(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-call", unique_id=self.unique_id)
        self._clients.clear()

    def take(self) -> dict[str, int]:
        out = dict(self.calls)
        self.calls.clear()
        return out


CallLog = dict[str, list[dict[str, int]]]


def _thread_config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def call_sequence(
    saver: BaseCheckpointSaver[Any],
    counter: CallCounter,
    messages: list[BaseMessage],
    label: str,
    steps: int,
) -> tuple[CallLog, str]:
    """One thread as a graph writes it, every operation's calls counted; and its thread id.

    Per step: ``put``, ``get_tuple`` of the latest and by id, ``put_writes`` of a task's two
    writes, ``get_tuple`` of the latest again (now with writes); then ``list`` of the
    thread. The caller counts what depends on the saver (a new reader, ``delete_thread``).
    """
    log: CallLog = defaultdict(list)
    stream = CheckpointStream(saver, f"calls-{label}", messages)

    def count(op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        counter.take()
        out = fn(*args, **kwargs)
        log[op].append(counter.take())
        return out

    answer = [AIMessage(content="Sintra is a day trip: take the train from Rossio.", id="w-1")]
    writes = [("messages", answer), ("branch:to:agent", None)]
    thread_id = ""
    for _ in range(steps):
        step = stream.next()
        thread_id = step.config["configurable"]["thread_id"]
        latest = _thread_config(thread_id)
        args = (step.config, step.checkpoint, step.metadata, step.new_versions)
        stored = count("put", saver.put, *args)
        count("get_tuple (latest)", saver.get_tuple, latest)
        count("get_tuple (by id)", saver.get_tuple, stored)
        count("put_writes (2 writes)", saver.put_writes, stored, writes, str(uuid.uuid4()))
        count("get_tuple (latest, with writes)", saver.get_tuple, latest)
    config = _thread_config(thread_id)
    count(f"list (limit {LIST_LIMIT})", lambda: list(saver.list(config, limit=LIST_LIMIT)))
    count(f"list (whole thread, {steps})", lambda: list(saver.list(config)))
    return log, thread_id


def _patterns(samples: list[dict[str, int]]) -> list[report.CallPattern]:
    seen: dict[tuple[tuple[str, int], ...], int] = {}
    for calls in samples:
        key = tuple(sorted(calls.items()))
        seen[key] = seen.get(key, 0) + 1
    return [report.CallPattern(dict(k), n) for k, n in seen.items()]


def _as_counts(name: str, log: CallLog) -> list[report.CallCount]:
    return [report.CallCount(op, name, _patterns(samples)) for op, samples in log.items()]


def count_peer_calls(peer: Any, messages: list[BaseMessage], steps: int) -> list[report.CallCount]:
    counter = CallCounter()
    counter.attach(peer.client)
    s3 = getattr(peer.storage, "s3_client", None)
    if s3 is not None:
        counter.attach(s3)
    try:
        log, thread_id = call_sequence(peer, counter, messages, "peer", steps)
        # The peer keeps no per-thread state: a new reader reads as any other.
        counter.take()
        peer.get_tuple(_thread_config(thread_id))
        log["get_tuple (latest, reader new to the thread)"].append(counter.take())
        peer.delete_thread(thread_id)
        log[f"delete_thread ({steps} checkpoints)"].append(counter.take())
    finally:
        counter.detach()
    return _as_counts("DynamoDBSaver (peer)", log)


def _attach_inprocess(saver: SidecarSaver, counter: CallCounter) -> None:
    from agentpersistence.sidecar.backends.dynamodb.checkpoint import DynamoDBCheckpointBackend
    from agentpersistence.sidecar.inprocess import InProcessTransport

    transport = cast(InProcessTransport, saver.transport)
    backend = cast(DynamoDBCheckpointBackend, transport._sidecar.checkpointer)
    counter.attach(backend.clients.dynamodb)
    if backend.clients.offloading:
        counter.attach(backend.clients.s3)


def count_sidecar_calls(messages: list[BaseMessage], steps: int) -> list[report.CallCount]:
    """The sidecar's backend in this process (same config and table), calls counted."""
    from agentpersistence.sidecar.inprocess import open_saver

    counter = CallCounter()
    writer = open_saver(sidecar_config())
    try:
        _attach_inprocess(writer, counter)
        log, thread_id = call_sequence(writer, counter, messages, "sidecar", steps)
        # A second sidecar that has not seen the thread (another pod, or after a restart).
        reader = open_saver(sidecar_config())
        try:
            _attach_inprocess(reader, counter)
            counter.take()
            reader.get_tuple(_thread_config(thread_id))
            log["get_tuple (latest, reader new to the thread)"].append(counter.take())
        finally:
            reader.close()
        counter.take()
        writer.delete_thread(thread_id)
        log[f"delete_thread ({steps} checkpoints)"].append(counter.take())
    finally:
        counter.detach()
        writer.close()
    return _as_counts("SidecarSaver[dynamodb]", log)


def calls_per_pair(counts: list[report.CallCount]) -> dict[str, int]:
    """Per saver: the calls of its most common ``put`` plus ``get_tuple (latest)``."""
    out: dict[str, int] = {}
    for count in counts:
        if count.op in ("put", "get_tuple (latest)") and count.patterns:
            common = max(count.patterns, key=lambda p: p.times)
            out[count.saver] = out.get(count.saver, 0) + sum(common.calls.values())
    return out


def _create_peer_resources(dynamodb_url: str, s3_url: str) -> None:
    import boto3  # type: ignore[import-untyped]

    from agentpersistence.sidecar.backends.dynamodb.schema import table_definition

    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=dynamodb_url)
    ddb.create_table(**table_definition(PEER_TABLE))
    ddb.get_waiter("table_exists").wait(TableName=PEER_TABLE)
    boto3.client("s3", region_name=REGION, endpoint_url=s3_url).create_bucket(Bucket=PEER_BUCKET)


def run_group(bench: Bench) -> report.GroupResult:
    from . import testrig

    group = report.GroupResult(
        "dynamodb", "dynamodb: SidecarSaver[dynamodb] vs DynamoDBSaver (in-process peer)"
    )
    group.header = [
        *checkpoint_header(bench),
        "the same DynamoDB Local (AWS's jar) and moto S3 for both; sidecar: table/bucket "
        f"{SIDECAR_TABLE} (--provision, defaults: gzip ≥ 2 KB); peer: table/bucket "
        f"{PEER_TABLE} (schema.table_definition; defaults: no compression); "
        "no payload is offloaded at this size",
    ]
    group.schedule = schedule = bench.schedule("dynamodb")
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            jar = testrig.install_dynamodb_local(progress)
            progress("starting DynamoDB Local and moto (S3)")
            ddb = testrig.DynamoDBLocal(
                testrig.free_port(), bench.dir_for("dynamodb-local"), jar=jar
            )
            stack.callback(ddb.stop)
            ddb.start()
            moto = testrig.MotoServer(testrig.free_port(), bench.dir_for("moto"))
            stack.callback(moto.stop)
            moto.start()
        except (RuntimeError, OSError) as exc:
            group.notes.append(
                f"not measured: DynamoDB Local or moto did not start: {error_text(exc)}"
            )
            bench.exit_code = 1
            return group
        progress(f"DynamoDB Local and moto ready in {time.perf_counter() - began:.1f} s")
        endpoints = testrig.AwsEndpoints(ddb.endpoint_url, moto.endpoint_url)
        stack.enter_context(aws_environment(endpoints.env()))

        sidecar, stats = bench.sidecar(
            "dynamodb", sidecar_config(), stack, env=endpoints.env(), extra_args=["--provision"]
        )
        saver = sidecar_saver(sidecar, stack)
        a = contender(bench, "SidecarSaver[dynamodb]", "sync", saver)

        peer: Any = None
        try:
            from langgraph_checkpoint_aws import DynamoDBSaver

            _create_peer_resources(endpoints.dynamodb_url, endpoints.s3_url)
            peer = DynamoDBSaver(
                table_name=PEER_TABLE,
                region_name=REGION,
                endpoint_url=endpoints.dynamodb_url,
                s3_offload_config={"bucket_name": PEER_BUCKET, "endpoint_url": endpoints.s3_url},
            )
            b = contender(bench, "DynamoDBSaver (peer)", "sync", peer)
        except Exception as exc:
            group.unavailable.append(
                report.Unavailable("DynamoDBSaver (peer)", "sync", "put+get_tuple", error_text(exc))
            )
            b = None
        comparison = Comparison("dynamodb_sync", a, b)
        run([comparison], schedule, progress)
        bench.sidecar_done(sidecar, stats, group)

        progress("counting AWS calls per operation")
        steps = QUICK_CALL_STEPS if bench.args.quick else STEPS_PER_THREAD
        group.calls_header = [
            "AWS calls per operation (botocore before-call events; one thread of "
            f"{steps} steps; n/m = how many of the m operations made those calls)",
            "peer: counted on its own boto3 clients; sidecar: it exposes no AWS call counters, "
            "so its backend ran in this process (agentpersistence.sidecar.inprocess.open_saver, "
            "same config and table) with the hook on its aiobotocore clients",
        ]
        try:
            group.calls += count_sidecar_calls(bench.messages, steps)
        except Exception as exc:
            group.notes.append(f"sidecar calls not counted: {error_text(exc)}")
        if peer is not None:
            group.calls += count_peer_calls(peer, bench.messages, steps)
        per_pair = calls_per_pair(group.calls)
        if per_pair:
            group.notes.append(
                "AWS calls per timed pair (put + get_tuple latest, the most common counts): "
                + ", ".join(f"{name} {n}" for name, n in per_pair.items())
                + "; DynamoDB Local shares the 2 CPUs with both clients, so its time per call "
                "weighs on both sides alike"
            )
    group.summaries = [summarize(x) for x in contenders_of([comparison])]
    if comparison.b is not None:
        group.comparisons = [
            report.ratio(
                "dynamodb_sync",
                "SidecarSaver[dynamodb] / DynamoDBSaver (sync)",
                comparison,
                report.DYNAMODB_RATIO_TARGET,
            ),
            report.difference(
                "dynamodb_sync_diff",
                "SidecarSaver[dynamodb] - DynamoDBSaver (sync)",
                comparison,
                None,
            ),
        ]
    return group
