"""The interfaces resource modules implement (ACK's read/create/update/delete + delta).

:class:`Resource` is what every one has. :class:`Storage` (tables, buckets, indexes,
memories) adds the claim that says which ``AgentPersistence`` uses it and whether it created
or adopted it (:mod:`..ownership` decides what the claims allow); the sidecar's ConfigMap is
a :class:`Resource` only, owned through its ``ownerReferences``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..bodies import Outputs
from ..ownership import Claim

Observed = TypeVar("Observed")


class Resource(Protocol[Observed]):
    """One resource the spec describes; ``description`` names it in events and messages."""

    @property
    def description(self) -> str: ...

    async def read(self) -> Observed | None:
        """The resource as it is, or None if it does not exist."""

    def delta(self, observed: Observed) -> list[str]:
        """How ``observed`` departs from the desired state, one phrase each ([] = in sync)."""

    async def update(self, observed: Observed) -> Observed:
        """Make an existing resource match the desired state; the resulting state."""

    async def delete(self) -> None:
        """Delete it; nothing if it is already gone."""

    def outputs(self, observed: Observed) -> Outputs:
        """What the status reports about it."""


class Storage(Resource[Observed], Protocol[Observed]):
    """Storage the operator provisions, adopts or refuses according to its claim."""

    @property
    def recorded_as(self) -> tuple[str, str]:
        """The status output (key, value) naming this storage, once a resource used it."""

    async def create(self, claim: Claim) -> Observed:
        """Create it carrying ``claim``; the resulting state. Raises
        :class:`..errors.Retryable` if another claim got there first."""

    async def read_claim(self, observed: Observed) -> Claim | None:
        """The claim the storage carries, if any."""

    async def write_claim(self, observed: Observed, claim: Claim, replacing: Claim | None) -> None:
        """Set ``claim`` where ``replacing`` (None: no claim) was read; raise
        :class:`..errors.Retryable` if the storage turns out to carry another one."""

    async def clear_claim(self, observed: Observed, claim: Claim) -> None:
        """Remove ``claim`` (the resource lets the storage go); nothing if it changed."""
