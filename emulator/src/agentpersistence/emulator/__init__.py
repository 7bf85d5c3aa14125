"""agentpersistence emulator: Amazon Bedrock AgentCore Memory (``bedrock-agentcore``,
``bedrock-agentcore-control``) and Bedrock Agent Runtime sessions (``bedrock-agent-runtime``)
on loopback, for development and tests, driven by botocore's service models.

Layers, each importing only those before it: ``model`` (the service models: routes and
validation of values against shapes) → ``wire`` (rest-json requests, responses, errors) →
state (``state`` with ``events``, ``records``, ``sessions``, ``retrieval``, ``extraction``,
``pagination``, ``idempotency``, ``errors``; pure Python, no I/O) → ``operations`` (the
served operations on that state) → ``server`` (the request path and its aiohttp app) →
``__main__`` (``agentpersistence-emulator --host H --port P``).
"""
