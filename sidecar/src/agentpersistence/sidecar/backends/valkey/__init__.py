"""The Valkey backends: checkpoints, the long-term store and the node cache.

Shared by all three: ``connection`` (batches in one round trip, scripts by SHA, cluster
clients, and the one error mapping of ``errors``) over ``resp`` (the lean RESP2 client of the
hot path on standalone servers) and valkey-py; ``schema`` (key escaping, the checkpoint and
cache key layouts) and ``scripts`` (the Lua scripts, read from this package's ``.lua`` files).

- Checkpoints: ``checkpoint`` (the ``CheckpointBackend``), ``records`` (messages to hash
  fields), ``listing`` (pages in the shared order).
- Store: ``store`` (the ``StoreBackend`` and its batches), ``store_schema`` (key layout and
  the search index the operator also provisions), ``store_records`` (items to hash fields),
  ``store_search`` (searches: walks in order, KNN through the index, exact in the sidecar).
- Cache: ``cache`` (the ``CacheBackend``).
"""
