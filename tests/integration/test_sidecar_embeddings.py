"""Embeddings computed in the sidecar: a store with ``index.embed`` set embeds puts and
queries that arrive without vectors, through Bedrock's InvokeModel.

Bedrock cannot be reached from here, so a local HTTP server answers InvokeModel at the
path botocore's ``bedrock-runtime`` model defines (``POST /model/{modelId}/invoke``);
the sidecar's aiobotocore client is pointed at it with ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from aiohttp import web

from agentpersistence.client import RequestRejected, SidecarStore
from rig.sidecar import SidecarProcess

MODEL = "amazon.titan-embed-text-v2:0"
BEDROCK = {"provider": "bedrock", "model": MODEL}
WORDS = ["apple", "banana", "car", "train"]


def embed(text: str) -> list[float]:
    """A deterministic 4-dim embedding: how often each of four words occurs."""
    lowered = text.lower()
    return [float(lowered.count(w)) + 0.01 for w in WORDS]


class FakeBedrock:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _invoke(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.calls.append((request.match_info["model"], body))
        return web.json_response({"embedding": embed(body["inputText"]), "inputTextTokenCount": 1})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/model/{model}/invoke", self._invoke)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> FakeBedrock:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


def test_the_fake_speaks_botocores_invoke_model_shape() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    http = model.operation_model("InvokeModel").http
    assert (http["method"], http["requestUri"]) == ("POST", "/model/{modelId}/invoke")


def test_sidecar_embeds_puts_and_queries(
    sidecar_factory: Callable[..., SidecarProcess], bedrock: FakeBedrock
) -> None:
    config = {
        "store": {
            "backend": "memory",
            "index": {
                "dims": 4,
                "fields": ["text"],
                "embed": {"provider": "bedrock", "model": MODEL},
            },
        }
    }
    env = {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    sidecar = sidecar_factory(config, env=env)
    ns = ("docs", uuid.uuid4().hex)
    with SidecarStore(sidecar.socket) as store:
        store.put(ns, "fruit", {"text": "apple apple banana"})
        store.put(ns, "vehicles", {"text": "car train train"})
        store.put(ns, "unindexed", {"text": "apple"}, index=False)
        hits = store.search(ns, query="a train and a car")
    assert [h.key for h in hits] == ["vehicles", "fruit", "unindexed"]
    scores = [h.score for h in hits]
    assert scores[0] is not None
    assert scores[1] is not None
    assert scores[0] > scores[1]
    assert hits[2].score is None
    texts = [body["inputText"] for _, body in bedrock.calls]
    assert sorted(texts) == sorted(["apple apple banana", "car train train", "a train and a car"])
    assert {model for model, _ in bedrock.calls} == {MODEL}
    assert all(body["dimensions"] == 4 for _, body in bedrock.calls)


def test_a_model_with_other_dimensions_is_refused_clearly(
    sidecar_factory: Callable[..., SidecarProcess], bedrock: FakeBedrock
) -> None:
    config = {
        "store": {
            "backend": "memory",
            "index": {"dims": 8, "embed": BEDROCK},
        }
    }
    env = {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # fmt: skip
    sidecar = sidecar_factory(config, env=env)

    with (
        SidecarStore(sidecar.socket) as store,
        pytest.raises(RequestRejected, match="4 dimensions"),
    ):
        store.put(("docs",), "k", {"text": "apple"})
