"""The ``agentcore-memory`` backend: checkpoints as events of a Bedrock AgentCore Memory.

The memory itself is provisioned by the operator (or by hand); the sidecar only reads and
writes events in it. :mod:`.identity` maps threads to actors and sessions, :mod:`.events`
turns records into events and back, :mod:`.checkpoint` is the checkpointer.
"""
