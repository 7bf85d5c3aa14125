"""The Debian packages the rig needs, installed on first use (apt-get, as root, as CI runs),
and the admin tools it calls, found by absolute path (``/usr/sbin`` is often off PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable

Say = Callable[[str], object]


class PackagesError(RuntimeError):
    """A package could not be installed or a tool is missing; the message says what to do."""


def ensure(packages: Iterable[str], say: Say = print) -> None:
    """Install those of ``packages`` that are not installed yet."""
    missing = sorted(p for p in set(packages) if not _installed(p))
    if not missing:
        return
    say(f"[rig.packages] installing {', '.join(missing)} (apt-get, once)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise PackagesError(
                f"`{' '.join(cmd)}` failed ({done.returncode}; it needs root and Debian's "
                f"package archive): {done.stderr.strip()[-2000:]}"
            )


def tool(name: str) -> str:
    """The absolute path of an installed command."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise PackagesError(f"{name} is not installed (apt-get install the package providing it)")
    return found


def _installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Status}", package], capture_output=True, text=True
    )
    return done.returncode == 0 and done.stdout.endswith(" installed")
