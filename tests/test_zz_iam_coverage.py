"""The IAM documents in ``iam/`` allow every AWS call the operator and the sidecar made in
this session.

Runs last (``rig.awscalls`` moves it there): every process of the session recorded its calls
with their role (the operator, a sidecar backend, the sidecar's ``--provision``), and each
call's IAM actions must be allowed on its resources by that role's document. Calls the rig
itself makes (creating memories for a test, reading what the operator provisioned) are
not checked.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from rig import awscalls
from rig.awscalls import actions, policies
from rig.awscalls.actions import Call

_PROCESSES = ("agentpersistence/sidecar/__main__.py", "agentpersistence/operator/__main__.py")
"""Scripts of processes whose every AWS call must be attributed to a role."""


def test_every_recorded_aws_call_is_allowed_by_its_roles_document(
    request: pytest.FixtureRequest,
) -> None:
    recording = awscalls.recording(request.config)
    assert recording is not None, "rig.awscalls.start() did not run (tests/conftest.py)"
    calls = recording.calls()
    checked = [call for call in calls if call.role != "test"]
    if not checked:
        ran = sorted(recording.fixtures_set_up & awscalls.PROJECT_FIXTURES)
        assert not ran, (
            f"fixtures running the sidecar on AWS stand-ins were set up ({', '.join(ran)}) "
            f"but no call of the sidecar or the operator was recorded ({len(calls)} calls in "
            f"all, in {recording.directory}): the recorder is broken"
        )
        pytest.skip("no test of this session made AWS calls from the operator or the sidecar")
    print(_summary(checked))  # shown with -rP
    problems = [*_unattributed(calls), *_denied(checked)]
    assert not problems, (
        f"calls the documents in iam/ do not cover ({len(problems)}):\n" + "\n".join(problems)
    )


def _summary(calls: list[Call]) -> str:
    """Per role: how many calls, and the IAM actions they needed."""
    seen: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for call in calls:
        counts[call.role] += 1
        try:
            seen[call.role].update(need.action for need in actions.needs(call))
        except actions.Unmapped:
            seen[call.role].add(f"? {call.service}.{call.operation}")
    lines = []
    for role in sorted(seen):
        lines.append(f"{role} ({counts[role]} calls): {', '.join(sorted(seen[role]))}")
        document = policies.document_for(role)
        granted = {a for s in document.statements for a in s.actions} if document else set()
        if granted - seen[role]:
            lines.append(f"  granted, not exercised: {', '.join(sorted(granted - seen[role]))}")
    return "\n".join(lines)


def _unattributed(calls: list[Call]) -> list[str]:
    """Calls from a sidecar or operator process that the stack did not attribute."""
    return sorted(
        {
            f"unattributed {call} (process {call.argv0})"
            for call in calls
            if call.role == "test" and call.argv0.endswith(_PROCESSES)
        }
    )


def _denied(calls: list[Call]) -> list[str]:
    """One line per (role, action, resource kind) a document does not allow."""
    denied: dict[str, list[str]] = defaultdict(list)
    for call in calls:
        document = policies.document_for(call.role)
        if document is None:
            denied[f"{call.role}: no document in iam/ for this role"].append(str(call))
            continue
        try:
            needs = actions.needs(call)
        except actions.Unmapped as exc:
            denied[str(exc)].append(str(call))
            continue
        for need in needs:
            if not document.allows(need):
                denied[f"{call.role}: {document.name} does not allow {need}"].append(str(call))
    return [f"{what}\n    e.g. {calls[0]} ({len(calls)} calls)" for what, calls in denied.items()]
