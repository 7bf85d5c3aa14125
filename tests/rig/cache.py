"""Where the rig keeps what it downloads and builds: ``$AGENTPERSISTENCE_CACHE``, by default
``~/.cache/agentpersistence`` (the Makefile exports it), never the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    root = os.environ.get("AGENTPERSISTENCE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "agentpersistence"
