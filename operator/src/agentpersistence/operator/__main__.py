"""``agentpersistence-operator [kopf run options]``: kopf's ``run`` with our handler modules.

It loads :mod:`agentpersistence.operator.handlers` (the ``AgentPersistence`` reconciler) and,
unless ``--no-webhook`` is the first argument, the pod-injection webhook's handlers
(:data:`WEBHOOK_HANDLERS`, which need the webhook's certificates and the sidecar image in the
environment). Every option of ``kopf run`` applies (``--namespace``/``--all-namespaces``,
``--standalone``, ``--peering``, ``--liveness``, ``--log-format``, ``--verbose``...).

With ``--peering NAME`` (the Helm chart's replicas), kopf pauses every replica but the one of
highest priority, and pauses all of them when two share the highest. Unless ``--priority``
is given, each process therefore gets :func:`start_priority`: the earlier it started, the
higher, so the oldest replica keeps reconciling while newer ones (a rolling update's) wait.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Mapping, Sequence

from kopf import cli

HANDLERS = "agentpersistence.operator.handlers"
WEBHOOK_HANDLERS = "agentpersistence.operator.webhook.handlers"
NO_WEBHOOK = "--no-webhook"
PEERING_OPTIONS = ("--peering", "-P")
PRIORITY_OPTIONS = ("--priority", "-p", "--dev")
PEERING_ENV = "KOPF_RUN_PEERING"
"""kopf's own variable for ``--peering``."""


def modules(with_webhook: bool) -> list[str]:
    """The handler modules to load (the webhook's only if it is installed)."""
    found = with_webhook and importlib.util.find_spec(WEBHOOK_HANDLERS) is not None
    return [HANDLERS, WEBHOOK_HANDLERS] if found else [HANDLERS]


def start_priority(now_ns: int) -> int:
    """kopf's peering priority of a process started at ``now_ns`` (ns since the epoch): older
    is higher. Negative, so an operator run by hand with kopf's default (0) or ``--dev``
    (666) outranks the cluster's replicas, as kopf intends; nanoseconds make a tie (which
    would pause every replica) practically impossible."""
    return -now_ns


def _given(args: Sequence[str], options: Sequence[str]) -> bool:
    return any(arg == opt or arg.startswith(f"{opt}=") for arg in args for opt in options)


def command(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``kopf`` command line for our arguments."""
    args = list(argv)
    with_webhook = not (args and args[0] == NO_WEBHOOK)
    if not with_webhook:
        args = args[1:]
    loads = [part for module in modules(with_webhook) for part in ("-m", module)]
    env = os.environ if environ is None else environ
    peering = _given(args, PEERING_OPTIONS) or bool(env.get(PEERING_ENV))
    if peering and not _given(args, PRIORITY_OPTIONS):
        args.append(f"--priority={start_priority(time.time_ns())}")
    return ["run", *loads, *args]


def main(argv: Sequence[str] | None = None) -> None:
    args = command(sys.argv[1:] if argv is None else argv)
    cli.main(args=args, prog_name="agentpersistence-operator")


if __name__ == "__main__":
    main()
