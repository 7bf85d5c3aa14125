"""Debian root filesystems made with debootstrap, cached, and chroot sessions inside them.

What it is: :class:`DebianRoot` is ``debootstrap --variant=minbase --include=PACKAGES SUITE``
into ``$AGENTPERSISTENCE_CACHE/roots/<name>``. It is built once, into a temporary directory
renamed into place when complete (an interrupted build leaves nothing half-made), and built
again when its suite, packages or mirror change. :func:`session` mounts what programs inside
need (``/proc``, ``/dev`` with a fresh ``/dev/shm``, a fresh ``/tmp``, the caller's bind
mounts, the host's DNS and CA settings copied in for pip) and, on leaving, even after an
error or Ctrl-C, kills every process still running in the root, unmounts everything under
it and fails if anything is left. A session also clears what a killed run left behind, and
holds a lock so two runs never share a root.

What it is not: a container. The root shares this machine's network, users and kernel;
nothing isolates it. Everything here needs root (debootstrap, chroot, mount), as CI has.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rig import packages
from rig.cache import cache_home

MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT_S = 900.0  # about a minute here; the mirror may be slow
KILL_TIMEOUT_S = 10.0
STAMP = ".agentpersistence-root.json"
HOST_FILES = ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt")
"""Copied in at each session: pip inside reaches the package index as the host does."""

PYTHON_SUITES = {"3.13": "trixie", "3.14": "forky"}
"""The Debian suite that ships ``python3.X`` for each minor version the project tests."""

Say = Callable[[str], object]


class RootError(RuntimeError):
    """A root could not be built, entered or left clean; the message says what to do."""


def _say(say: Say, message: str) -> None:
    say(f"[rig.debian] {message}")


@dataclass(frozen=True)
class Bind:
    """A host path shown inside the root at ``target`` (the same path by default)."""

    source: Path
    target: str | None = None
    read_only: bool = True

    @property
    def inside(self) -> str:
        return self.target or str(self.source)


@dataclass(frozen=True)
class DebianRoot:
    name: str
    suite: str
    packages: tuple[str, ...]
    mirror: str = MIRROR

    @property
    def path(self) -> Path:
        return cache_home() / "roots" / self.name

    def _recipe(self) -> dict[str, object]:
        return {"suite": self.suite, "packages": sorted(self.packages), "mirror": self.mirror}

    def is_built(self) -> bool:
        try:
            stamp = json.loads((self.path / STAMP).read_text())
        except (OSError, ValueError):
            return False
        return bool(stamp.get("recipe") == self._recipe())

    def ensure(self, say: Say = print) -> Path:
        """The root, built first if it is missing or its recipe changed (needs root)."""
        with _locked(self.path, say):
            if not self.is_built():
                self._build(say)
        return self.path

    def _build(self, say: Say) -> None:
        _need_root(f"building the {self.name} root")
        debootstrap = _debootstrap(say)
        if self.path.exists():
            _say(say, f"{self.name}: its recipe changed; removing the old root")
            _remove_tree(self.path)
        staging = self.path.with_name(f".{self.name}.building.{os.getpid()}")
        _remove_tree(staging)
        staging.parent.mkdir(parents=True, exist_ok=True)
        log = staging.with_suffix(".log")
        cmd = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(self.packages)}",
            self.suite,
            str(staging),
            self.mirror,
            *_script_for(self.suite),
        ]
        _say(say, f"{self.name}: debootstrap {self.suite} with {', '.join(self.packages)} (once)")
        began = time.monotonic()
        with log.open("wb") as out:
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            _remove_tree(staging)
            raise RootError(
                f"`{' '.join(cmd)}` failed ({done.returncode}); the mirror must be reachable. "
                "Its log ends:\n" + "\n".join(tail)
            )
        log.unlink()
        (staging / STAMP).write_text(json.dumps({"recipe": self._recipe()}))
        staging.rename(self.path)
        _say(say, f"{self.name}: built in {time.monotonic() - began:.0f}s at {self.path}")


@dataclass
class Session:
    """A root with its mounts in place: run commands in it with :meth:`command`."""

    root: Path
    mounts: list[Path] = field(default_factory=list)

    def command(self, argv: Sequence[str], env: dict[str, str], cwd: str = "/") -> list[str]:
        """``argv`` run inside the root with exactly ``env`` and working directory ``cwd``."""
        pairs = [f"{k}={v}" for k, v in env.items()]
        return [
            packages.tool("chroot"),
            str(self.root),
            "/usr/bin/env",
            "-i",
            "-C",
            cwd,
            *pairs,
            *argv,
        ]


@contextlib.contextmanager
def session(root: DebianRoot, binds: Sequence[Bind] = (), say: Say = print) -> Iterator[Session]:
    """Enter ``root`` (built if needed) with its mounts; everything is undone on leaving."""
    path = root.ensure(say)
    with _locked(path, say):
        _need_root(f"entering the {root.name} root")
        _clear(path, say)
        for name in HOST_FILES:
            if os.path.exists(name):
                dest = path / name.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(name, dest)
        entered = Session(path)
        try:
            _mount(entered, ["-t", "proc", "proc"], path / "proc")
            _mount(entered, ["--bind", "/dev"], path / "dev")
            _mount(entered, ["-t", "tmpfs", "-o", "mode=1777", "shm"], path / "dev" / "shm")
            _mount(entered, ["-t", "tmpfs", "-o", "mode=1777", "tmp"], path / "tmp")
            for bind in binds:
                target = path / bind.inside.lstrip("/")
                _mount(entered, ["--bind", str(bind.source)], target)
                if bind.read_only:
                    _run([packages.tool("mount"), "-o", "remount,bind,ro", str(target)])
            yield entered
        finally:
            _clear(path, say)


def _mount(entered: Session, args: list[str], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    _run([packages.tool("mount"), *args, str(target)])
    entered.mounts.append(target)


def _clear(path: Path, say: Say) -> None:
    """Kill what runs in the root, unmount everything under it, and check."""
    stray = _processes_in(path)
    if stray:
        _say(say, f"stopping {len(stray)} process(es) still running in {path}")
        _kill(stray)
    for mount in sorted(_mounts_under(path), key=lambda p: len(p.parts), reverse=True):
        if (
            subprocess.run([packages.tool("umount"), str(mount)], capture_output=True).returncode
            != 0
        ):
            _kill(_processes_in(path))
            _run([packages.tool("umount"), str(mount)])
    left = _mounts_under(path)
    if left:
        raise RootError(f"could not unmount {', '.join(map(str, left))}; unmount them by hand")


def _processes_in(root: Path) -> list[int]:
    found = []
    real = os.path.realpath(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            where = os.readlink(entry / "root")
        except OSError:
            continue
        if where == real or where.startswith(real + "/"):
            found.append(int(entry.name))
    return found


def _kill(pids: list[int]) -> None:
    """SIGKILL each process and wait for it to exit (a pidfd turns readable when it has)."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise RootError(f"process {pid} did not exit after SIGKILL")
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)


def _mounts_under(root: Path) -> list[Path]:
    real = os.path.realpath(root)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == real or point.startswith(real + "/"):
            found.append(Path(point))
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _remove_tree(path: Path) -> None:
    """Delete a root, never crossing into a mount (a bind mount of the repository, say)."""
    if not path.exists():
        return
    if _mounts_under(path):
        raise RootError(f"{path} still has mounts; refusing to delete it")
    _run([packages.tool("rm"), "-rf", "--one-file-system", str(path)])


@contextlib.contextmanager
def _locked(path: Path, say: Say) -> Iterator[None]:
    """One run at a time per root (a second waits for the first)."""
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(say, f"waiting for another run to leave {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise RootError(f"{what} needs root (debootstrap, chroot and mount); run as root")


def _debootstrap(say: Say) -> str:
    packages.ensure(["debootstrap"], say)
    return packages.tool("debootstrap")


def _script_for(suite: str) -> list[str]:
    """debootstrap's script for ``suite``: its own, or sid's for a suite newer than this
    debootstrap (every current Debian suite bootstraps alike)."""
    scripts = Path("/usr/share/debootstrap/scripts")
    return [] if (scripts / suite).exists() else [str(scripts / "sid")]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RootError(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()}")
