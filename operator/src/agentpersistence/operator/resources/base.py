"""The interface every resource module implements (ACK's read/create/update/delete + delta)."""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..bodies import Outputs

Observed = TypeVar("Observed")


class Resource(Protocol[Observed]):
    """One resource the spec describes; ``description`` names it in events and messages."""

    @property
    def description(self) -> str: ...

    @property
    def claim(self) -> tuple[str, str]:
        """The status output (key, value) that records this resource as provisioned or
        adopted by the ``AgentPersistence``: only such resources are ever deleted."""

    async def read(self) -> Observed | None:
        """The resource as it is, or None if it does not exist."""

    def delta(self, observed: Observed) -> list[str]:
        """How ``observed`` departs from the desired state, one phrase each ([] = in sync)."""

    async def create(self) -> Observed:
        """Create it (or adopt one created meanwhile); the resulting state."""

    async def update(self, observed: Observed) -> Observed:
        """Make an existing resource match the desired state; the resulting state."""

    async def delete(self) -> None:
        """Delete it; nothing if it is already gone."""

    def outputs(self, observed: Observed) -> Outputs:
        """What the status reports about it."""
