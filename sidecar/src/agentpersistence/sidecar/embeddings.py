"""Embeddings computed in the sidecar, for agents that send text without vectors.

A store whose ``index`` names an ``embed`` provider embeds, before the backend sees a
batch, the fields of each put that arrives without vectors and the query of each search
that arrives without a query vector. Agents that embed themselves
(``SidecarStore(index={"embed": ...})``) never reach this code.

Providers: ``bedrock`` (Amazon Bedrock's InvokeModel through aiobotocore; Titan text
embeddings take one text per call, Cohere models a batch) and ``sentence-transformers``
(a local model, for development: ``pip install 'agentpersistence-sidecar[local-embeddings]'``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules
from agentpersistence.client.protocol.errors import BackendUnavailable, RequestRejected

from .backends import aws
from .settings import EmbedSettings, IndexSettings

_BEDROCK_CONCURRENCY = 8


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def close(self) -> None: ...


@dataclasses.dataclass
class BedrockEmbedder:
    model: str
    dims: int
    _client: Any = None
    _context: Any = None

    async def _bedrock(self) -> Any:
        if self._client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
            from botocore.exceptions import BotoCoreError

            context = get_session().create_client(
                "bedrock-runtime",
                region_name=os.environ.get("AWS_REGION") or None,
                config=AioConfig(retries={"mode": "adaptive", "max_attempts": 5}),
            )
            try:
                self._client = await context.__aenter__()
            except BotoCoreError as exc:
                raise BackendUnavailable(
                    f"cannot create a Bedrock client: {exc} (set AWS_REGION)"
                ) from None
            self._context = context
            aws.bound_retries(self._client)  # the cause, not a bare deadline, reaches the caller
        return self._client

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        client = await self._bedrock()
        if self.model.startswith("cohere."):
            body = {"texts": list(texts), "input_type": "search_document"}
            return [_floats(v) for v in (await self._invoke(client, body))["embeddings"]]
        gate = asyncio.Semaphore(_BEDROCK_CONCURRENCY)

        async def one(text: str) -> list[float]:
            async with gate:
                body = {"inputText": text, "dimensions": self.dims, "normalize": True}
                return _floats((await self._invoke(client, body))["embedding"])

        return list(await asyncio.gather(*(one(t) for t in texts)))

    async def _invoke(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = await client.invoke_model(
                modelId=self.model,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            async with response["body"] as stream:
                result: dict[str, Any] = json.loads(await stream.read())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise BackendUnavailable(
                f"Bedrock refused to embed with {self.model}: {code}"
            ) from None
        except BotoCoreError as exc:
            raise BackendUnavailable(f"cannot reach Bedrock to embed: {exc}") from None
        return result

    async def close(self) -> None:
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._client = self._context = None


@dataclasses.dataclass
class SentenceTransformerEmbedder:
    model: str
    _model: Any = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._encode, list(texts))

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise RequestRejected(
                    "the sentence-transformers provider needs "
                    "pip install 'agentpersistence-sidecar[local-embeddings]'"
                ) from None
            self._model = SentenceTransformer(self.model)
        return [_floats(v) for v in self._model.encode(texts).tolist()]

    async def close(self) -> None:
        self._model = None


def build_embedder(settings: EmbedSettings, dims: int) -> Embedder:
    if settings.provider == "bedrock":
        return BedrockEmbedder(settings.model, dims)
    return SentenceTransformerEmbedder(settings.model)


def _floats(vector: Any) -> list[float]:
    return [float(x) for x in vector]


class BatchEmbedder:
    """Adds sidecar-computed vectors to the ops of a store batch that lack them."""

    def __init__(self, embedder: Embedder, index: IndexSettings) -> None:
        self._embedder = embedder
        self._index = index
        self._fields = store_rules.tokenize_fields(index.fields)

    async def complete(self, ops: Sequence[m.StoreOp]) -> list[m.StoreOp]:
        def value_of(i: int) -> Any:
            raw = ops[i].value
            return None if raw is None else store_rules.parse_value(raw)

        docs, queries = store_rules.texts_to_embed(ops, self._fields, value_of)
        if not docs and not queries:
            return list(ops)
        vectors = await self._embedder.embed([t for _, _, t in [*docs, *queries]])
        for vector in vectors:
            if len(vector) != self._index.dims:
                raise RequestRejected(
                    f"the embedding model returned {len(vector)} dimensions; "
                    f"the store's index.dims is {self._index.dims}"
                )
        split = len(docs)
        return store_rules.attach_vectors(ops, docs, vectors[:split], queries, vectors[split:])
