"""The Lua scripts of the Valkey backend, read from this package's ``.lua`` files.

Each checkpoint script is ``keys.lua`` + ``common.lua`` + its own file; each store script is
``store_keys.lua`` + its own file (``store_*.lua``); the cache's is ``cache_clear.lua``
alone. A script is called with ``EVALSHA`` by the SHA1 of that text (computed here, so a
call never waits for ``SCRIPT LOAD``'s answer). What each script does and takes is written
at the top of its file. :data:`CHECKPOINT`, :data:`STORE` and :data:`CACHE` are what each
backend's connection loads.

Optional arguments follow one convention: ``""`` is none, ``"=" + value`` is a value
(:func:`optional`), so an empty string stays distinguishable from no string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

_PRELUDE = ("keys.lua", "common.lua")
_STORE_PRELUDE = ("store_keys.lua",)


@dataclass(frozen=True)
class Script:
    name: str
    source: bytes
    sha: str


_HERE = __name__.rpartition(".")[0]


def _read(filename: str, package: str = _HERE) -> bytes:
    return resources.files(package).joinpath(filename).read_bytes()


def _script(name: str, *, prelude: tuple[str, ...] = _PRELUDE) -> Script:
    return load(_HERE, name, prelude=prelude)


def load(package: str, name: str, *, prelude: tuple[str, ...] = ()) -> Script:
    """The script ``<name>.lua`` of ``package``, after these files of this package."""
    parts = [_read(f) for f in prelude]
    source = b"\n".join([*parts, _read(f"{name}.lua", package)])
    return Script(name, source, hashlib.sha1(source, usedforsecurity=False).hexdigest())


PUT = _script("put")
PUT_WRITES = _script("put_writes")
GET = _script("get")
LIST = _script("list")
DELETE_THREAD = _script("delete_thread")
DELETE_CHECKPOINTS = _script("delete_checkpoints")
PRUNE = _script("prune")
EXPORT = _script("export")
IMPORT = _script("import")
SWEEP_THREADS = _script("sweep_threads", prelude=())

CHECKPOINT = (
    PUT,
    PUT_WRITES,
    GET,
    LIST,
    DELETE_THREAD,
    DELETE_CHECKPOINTS,
    PRUNE,
    EXPORT,
    IMPORT,
    SWEEP_THREADS,
)

STORE_PUT = _script("store_put", prelude=_STORE_PRELUDE)
STORE_READ = _script("store_read", prelude=_STORE_PRELUDE)
STORE_SCAN = _script("store_scan", prelude=_STORE_PRELUDE)
STORE_TOUCH = _script("store_touch", prelude=_STORE_PRELUDE)
STORE_NAMESPACES = _script("store_namespaces", prelude=_STORE_PRELUDE)
STORE_SWEEP = _script("store_sweep", prelude=_STORE_PRELUDE)

STORE = (STORE_PUT, STORE_READ, STORE_SCAN, STORE_TOUCH, STORE_NAMESPACES, STORE_SWEEP)

CACHE_CLEAR = _script("cache_clear", prelude=())

CACHE = (CACHE_CLEAR,)


def optional(value: str | None) -> str:
    """An optional script argument: ``""`` for None, else ``"="`` and the value."""
    return "" if value is None else "=" + value
