"""The ``bedrock-session`` checkpointer: checkpoints as invocation steps of Bedrock Agent
Runtime sessions, one session per thread.

:mod:`.client` is the ``bedrock-agent-runtime`` client and its calls, :mod:`.layout` names
every invocation and step deterministically and encodes their payloads, :mod:`.directory`
maps thread ids to sessions, :mod:`.checkpoint` is the checkpointer.
"""
