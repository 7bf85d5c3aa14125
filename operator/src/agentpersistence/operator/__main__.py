"""``agentpersistence-operator [kopf run options]``: kopf's ``run`` with our handler modules.

It loads :mod:`agentpersistence.operator.handlers` (the ``AgentPersistence`` reconciler) and,
unless ``--no-webhook`` is the first argument, the pod-injection webhook's handlers
(:data:`WEBHOOK_HANDLERS`, which need the webhook's certificates and the sidecar image in the
environment). Every option of ``kopf run`` applies (``--namespace``/``--all-namespaces``,
``--standalone``, ``--liveness``, ``--log-format``, ``--verbose``...).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from kopf import cli

HANDLERS = "agentpersistence.operator.handlers"
WEBHOOK_HANDLERS = "agentpersistence.operator.webhook.handlers"
NO_WEBHOOK = "--no-webhook"


def modules(with_webhook: bool) -> list[str]:
    """The handler modules to load (the webhook's only if it is installed)."""
    found = with_webhook and importlib.util.find_spec(WEBHOOK_HANDLERS) is not None
    return [HANDLERS, WEBHOOK_HANDLERS] if found else [HANDLERS]


def command(argv: Sequence[str]) -> list[str]:
    """The ``kopf`` command line for our arguments."""
    args = list(argv)
    with_webhook = not (args and args[0] == NO_WEBHOOK)
    if not with_webhook:
        args = args[1:]
    loads = [part for module in modules(with_webhook) for part in ("-m", module)]
    return ["run", *loads, *args]


def main(argv: Sequence[str] | None = None) -> None:
    args = command(sys.argv[1:] if argv is None else argv)
    cli.main(args=args, prog_name="agentpersistence-operator")


if __name__ == "__main__":
    main()
