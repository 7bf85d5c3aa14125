"""The ``agentcore-memory`` backends: checkpoints as events of a Bedrock AgentCore Memory, and
the long-term store as its memory records.

The memory itself is provisioned by the operator (or by hand); the sidecar only reads and
writes events and records in it. :mod:`.client` is the memory's ``bedrock-agentcore`` client,
shared by both. Checkpointer: :mod:`.identity` maps threads to actors and sessions,
:mod:`.events` turns records into events and back, :mod:`.checkpoint` is the checkpointer.
Store: :mod:`.items` lays items out as records, :mod:`.records` makes the record calls,
:mod:`.store` is the store (records mode) and :mod:`.conversation` its conversational mode.
"""
