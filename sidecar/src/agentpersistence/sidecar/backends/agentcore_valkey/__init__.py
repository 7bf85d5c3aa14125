"""The ``agentcore-valkey`` checkpointer: the ``valkey`` backend's machinery in AgentCore's
data model (actors and sessions), reading what ``langgraph-checkpoint-aws``'s
``AgentCoreValkeySaver`` wrote. :mod:`.checkpoint` is the backend and documents the keys it
writes; :mod:`.saver_layout` (with ``saver_read.lua``) reads the saver's keys and formats.
"""
