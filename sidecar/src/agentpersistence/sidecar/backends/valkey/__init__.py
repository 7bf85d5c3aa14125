"""The Valkey backend: checkpoints in Valkey (standalone, or cluster-ready key layout).

``schema`` defines the key layout (mirrored by ``keys.lua``), ``scripts`` loads the Lua
scripts that make each put and read one round trip, ``connection`` owns the pool and the
one error mapping of ``errors``, ``records`` maps messages to hash fields, ``listing`` pages
in the shared order, and ``checkpoint`` is the ``CheckpointBackend`` built on them.
"""
