"""Who a piece of storage belongs to, and what a resource may do with storage it finds.

Every table, bucket, index and memory the operator uses carries a *claim*: the uid and name
of the ``AgentPersistence`` using it, and whether that resource ``created`` it or ``adopted``
it. Where the claim lives is each storage module's business (AWS tags, an item in the table,
a key beside the index); the rules are here, in one place:

- storage a resource finds without a claim is adopted only if its spec says
  ``adoptExisting: true`` (or its own status already names it: a pass that created it and
  stopped before writing the claim, or an operator version that kept no claims);
- storage claimed by another resource that still exists is refused, naming that resource;
  nothing is changed (a claim whose resource is gone counts as no claim);
- only storage a resource ``created`` is ever deleted, and only with ``deletionPolicy:
  Delete``; otherwise deletion of the resource removes its claim and leaves the storage.

Creating storage and writing its claim are two calls (a bucket cannot be tagged before it
exists), and the operator may die between them. So before a pass creates anything it
records its *intent* on the resource itself (the annotation :data:`INTENT_ANNOTATION`, the
storage's descriptions): storage found without a claim that the resource meant to create is
resumed as created by it (claimed, and deleted with ``deletionPolicy: Delete``), not refused
as someone else's. The pass removes the annotation once every claim is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from . import errors, naming

Kind = Literal["created", "adopted"]
Verdict = Literal["ours", "adopt", "resume"]

UID_TAG = f"{naming.GROUP}/owner-uid"
OWNER_TAG = f"{naming.GROUP}/owner"
CLAIM_TAG = f"{naming.GROUP}/claim"
TAG_KEYS = (UID_TAG, OWNER_TAG, CLAIM_TAG)
KINDS: tuple[Kind, ...] = ("created", "adopted")
INTENT_ANNOTATION = f"{naming.KOPF_ANNOTATION_PREFIX}/creating"
"""Storage a pass is creating, until its claims are written (a JSON list of descriptions).
Under kopf's prefix, which kopf leaves out when it decides whether the resource changed: the
annotation coming and going starts no reconcile."""


@dataclass(frozen=True)
class Claim:
    uid: str
    owner: str
    """``namespace/name`` of the resource."""
    kind: Kind

    def tags(self) -> dict[str, str]:
        """As AWS tags (keys :data:`TAG_KEYS`); the same mapping serves the other markers."""
        return {UID_TAG: self.uid, OWNER_TAG: self.owner, CLAIM_TAG: self.kind}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Claim | None:
        """The claim in ``tags``, or None if they hold none (or a malformed one)."""
        uid, owner, kind = (tags.get(key) for key in TAG_KEYS)
        if not uid or not owner:
            return None
        return cls(uid, owner, "created" if kind == "created" else "adopted")

    @property
    def namespace(self) -> str:
        return self.owner.partition("/")[0]

    @property
    def name(self) -> str:
        return self.owner.partition("/")[2]


def judge(
    description: str,
    found: Claim | None,
    *,
    uid: str,
    owner_alive: bool,
    adopt_existing: bool,
    recorded: bool,
    intended: bool = False,
) -> Verdict:
    """What a resource (``uid``) may do with existing storage claimed as ``found``.

    ``owner_alive``: the resource ``found`` names still exists with that uid. ``recorded``:
    this resource's status already names the storage. ``intended``: the resource recorded
    its intent to create it (:data:`INTENT_ANNOTATION`). Raises :class:`.errors.Terminal`
    when the storage is not the resource's to use.
    """
    if found is not None and found.uid == uid:
        return "ours"
    if found is None and intended:
        return "resume"
    if found is not None and owner_alive:
        raise errors.Terminal(
            f"{description} belongs to AgentPersistence {found.owner} (uid {found.uid}), "
            f"which {'created' if found.kind == 'created' else 'adopted'} it; nothing was "
            "changed: choose another name, or delete that resource first",
            reason="OwnedByAnother",
        )
    if recorded or adopt_existing:
        return "adopt"
    previously = f" (claimed by {found.owner}, which no longer exists)" if found else ""
    raise errors.Terminal(
        f"{description} exists and this resource did not create it{previously}; nothing was "
        "changed: set spec.adoptExisting: true to use it (adopted storage is never deleted "
        "by this resource, whatever its deletionPolicy), or choose another name",
        reason="AdoptionRefused",
    )


def claimed_meanwhile(description: str) -> errors.ReconcileError:
    """What a claim written on a condition raises when another claim got there first."""
    return errors.Retryable(
        f"{description} was claimed by another resource meanwhile; checking again",
        reason="ClaimChanged",
    )


def intents(annotations: Mapping[str, str]) -> frozenset[str]:
    """The descriptions in the resource's :data:`INTENT_ANNOTATION` (none if it is absent or
    unreadable: then only claims count, as before intents existed)."""
    text = annotations.get(INTENT_ANNOTATION)
    try:
        found = json.loads(text) if text else []
    except ValueError:
        return frozenset()
    return frozenset(str(d) for d in found) if isinstance(found, list) else frozenset()


def intent_text(descriptions: frozenset[str]) -> str:
    return json.dumps(sorted(descriptions))


def deletable(found: Claim | None, uid: str) -> bool:
    """Whether deleting the resource ``uid`` may delete the storage (with policy Delete)."""
    return found is not None and found.uid == uid and found.kind == "created"
