"""The DynamoDB backend: checkpoints in one DynamoDB table, large payloads in S3.

``schema`` defines the table, the item layout and the bucket's configuration (once, for the
sidecar's ``--provision`` and the operator alike), ``provisioning`` creates them, ``clients``
owns the aiobotocore clients and sends every call through the one error mapping of
``errors``, ``payloads`` compresses and offloads blobs, ``records`` maps messages to items
and back, ``reading`` walks a thread's items newest first (get, list), ``writing`` batches
and transactions within DynamoDB's limits (a batch of writes too large for one transaction
committed by a marker), and ``checkpoint`` is the ``CheckpointBackend`` built on them, with
the sweep of what interrupted writes leave.
"""
