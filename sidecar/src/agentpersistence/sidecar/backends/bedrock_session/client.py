"""The ``bedrock-agent-runtime`` client of the checkpointer and the session calls it makes.

Opened by ``open()`` (the backend's ``start()``), closed by ``close()``. Every call goes
through :meth:`SessionsClient.translated`: botocore's and aiohttp's exceptions become the
protocol's errors (:mod:`..aws`), except two answers the backend acts on: a missing
session, invocation or step raises :class:`Missing`, and a session that is no longer
ACTIVE (ended or expired) raises :class:`ReadOnly`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from agentpersistence.client.protocol.errors import RequestRejected, SidecarError

from ...settings import BedrockSessionSettings
from .. import aws
from . import layout

log = logging.getLogger("agentpersistence.sidecar.bedrock_session")

PAGE = 1000
"""Most summaries one list call returns (the API's maximum)."""
SERVICE: Final = "bedrock-agent-runtime"
WHERE = "Bedrock Agent Runtime sessions"


class Missing(RequestRejected):
    """The session, invocation or step named does not exist (ResourceNotFoundException)."""


class ReadOnly(RequestRejected):
    """The session is ENDED or EXPIRED: it keeps its content and takes no more (Conflict)."""


class SessionsClient:
    """An aiobotocore ``bedrock-agent-runtime`` client and the calls the backend makes."""

    def __init__(self, settings: BedrockSessionSettings) -> None:
        self.settings = settings
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        with self.translated():
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    SERVICE,
                    region_name=aws.region(self.settings),
                    config=aws.client_config(self.settings),
                )
            )
            aws.bound_retries(self._client)
        self._stack = stack
        log.info("Bedrock Agent Runtime client ready")

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise SidecarError(
                "the bedrock-session backend is used before start() or after close()"
            )
        return self._client

    @contextlib.contextmanager
    def translated(self, session: str | None = None) -> Iterator[None]:
        where = WHERE if session is None else f"Bedrock session {session}"
        try:
            yield
        except ClientError as exc:
            code = aws.code_of(exc)
            if code == "ResourceNotFoundException":
                raise Missing(f"{where}: not found") from None
            if code == "ConflictException" and session is not None:
                raise ReadOnly(
                    f"{where} is no longer ACTIVE (ended or expired) and takes no more "
                    "checkpoints: delete the thread, or continue under another thread id"
                ) from None
            raise aws.translate(exc, where) from None
        except aws.FAILURES as exc:
            raise aws.translate(exc, where) from None

    # --- sessions ------------------------------------------------------------------------

    async def create_session(self, metadata: Mapping[str, str]) -> str:
        """A new session's id, encrypted with the configured KMS key if any."""
        request: dict[str, Any] = {"sessionMetadata": dict(metadata)}
        if self.settings.kms_key_arn is not None:
            request["encryptionKeyArn"] = self.settings.kms_key_arn
        with self.translated():
            answer = await self.client.create_session(**request)
        return str(answer["sessionId"])

    async def get_session(self, session: str) -> dict[str, Any] | None:
        try:
            with self.translated(session):
                answer: dict[str, Any] = await self.client.get_session(sessionIdentifier=session)
        except Missing:
            return None
        return answer

    async def delete_session(self, session: str) -> None:
        """End (if ACTIVE) and delete a session; one already gone is done."""
        try:
            with self.translated(session):
                await self.client.end_session(sessionIdentifier=session)
        except (Missing, ReadOnly):
            pass  # gone, or EXPIRED (which cannot be ended, and can be deleted)
        try:
            with self.translated(session):
                await self.client.delete_session(sessionIdentifier=session)
        except Missing:
            pass

    async def sessions(self) -> AsyncIterator[dict[str, Any]]:
        """Every session of the account (summaries)."""
        request: dict[str, Any] = {"maxResults": PAGE}
        while True:
            with self.translated():
                answer = await self.client.list_sessions(**request)
            for summary in answer.get("sessionSummaries", []):
                yield summary
            token = answer.get("nextToken")
            if not token:
                return
            request["nextToken"] = token

    async def ping(self) -> None:
        """One cheap call that fails if the service is unreachable or refuses us."""
        with self.translated():
            await self.client.list_sessions(maxResults=1)

    # --- invocations and steps -----------------------------------------------------------

    async def create_invocation(self, session: str, invocation: str) -> None:
        """Create an invocation; one that exists already is done (CreateInvocation answers
        ConflictException for a known id)."""
        try:
            with self.translated(session):
                await self.client.create_invocation(
                    sessionIdentifier=session, invocationId=invocation
                )
        except ReadOnly:
            state = await self.get_session(session)
            if state is None:
                raise Missing(f"Bedrock session {session}: not found") from None
            if state.get("sessionStatus") != "ACTIVE":
                raise

    async def put_step(
        self,
        session: str,
        invocation: str,
        step: str,
        time: dt.datetime,
        content: Mapping[str, Any],
    ) -> None:
        with self.translated(session):
            await self.client.put_invocation_step(
                sessionIdentifier=session,
                invocationIdentifier=invocation,
                invocationStepId=step,
                invocationStepTime=time,
                payload=dict(content),
            )

    async def get_step(self, session: str, invocation: str, step: str) -> layout.Step | None:
        """A step, decoded; None if it (or its invocation) does not exist."""
        try:
            with self.translated(session):
                answer = await self.client.get_invocation_step(
                    sessionIdentifier=session,
                    invocationIdentifier=invocation,
                    invocationStepId=step,
                )
        except Missing:
            return None
        return layout.decode(answer["invocationStep"], f"Bedrock session {session}")

    async def summaries(
        self, session: str, invocation: str, *, page: int = PAGE
    ) -> AsyncIterator[dict[str, Any]]:
        """An invocation's step summaries, newest first; none if it does not exist."""
        request: dict[str, Any] = {
            "sessionIdentifier": session,
            "invocationIdentifier": invocation,
            "maxResults": page,
        }
        while True:
            try:
                with self.translated(session):
                    answer = await self.client.list_invocation_steps(**request)
            except Missing:
                return
            for summary in answer.get("invocationStepSummaries", []):
                yield summary
            token = answer.get("nextToken")
            if not token:
                return
            request["nextToken"] = token

    async def first(self, session: str, invocation: str, count: int) -> list[dict[str, Any]]:
        """An invocation's ``count`` newest step summaries (one call); none if it is missing."""
        try:
            with self.translated(session):
                answer = await self.client.list_invocation_steps(
                    sessionIdentifier=session, invocationIdentifier=invocation, maxResults=count
                )
        except Missing:
            return []
        found: list[dict[str, Any]] = answer.get("invocationStepSummaries", [])
        return found
