"""Sidecar injection into agent pods: a mutating admission webhook served by kopf.

What belongs here, by layer (a module imports only from the ones above it):

- :mod:`.payloads`: the raw Kubernetes shapes the webhook reads and writes (TypedDicts);
- :mod:`.settings`: what the operator is configured with (image, resources, socket
  directory, probe port, native sidecars; the webhook server's address and certificates);
- :mod:`.patching`: a small RFC 6902 (JSON patch) applier, for the handler and the tests;
- :mod:`.inject`: the pure decision: pod + ``AgentPersistence`` + settings + opt-in route →
  a JSON patch or a typed refusal, with no I/O;
- :mod:`.handlers`: the kopf wiring (an index of ``AgentPersistence`` objects, one mutating
  handler per opt-in route, the webhook server at startup); the only module that imports kopf;
- :mod:`.selftest`: the client the chart's ``helm test`` pod runs against the webhook.

The ``MutatingWebhookConfiguration`` is not kopf's to manage: the Helm chart ships it
(``charts/agentpersistence/templates/webhook.yaml``), one entry per opt-in route, with the
timeout, selectors and reinvocation policy this package relies on.
"""
