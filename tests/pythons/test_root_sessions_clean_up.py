"""A chroot session leaves nothing behind: no process, no mount, and the host's files intact,
whether the work inside ends well, raises, or a killed run left debris for the next one.

These sessions are how ``make test-pythons`` runs the suite on Debian's Pythons (the root
is the 3.13 one, built on first use).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rig.debian import Bind, DebianRoot, session
from rig.packages import tool
from rig.pythons import PYTHONS, DebianPython

interpreter = PYTHONS["3.13"]
assert isinstance(interpreter, DebianPython)
ROOT: DebianRoot = interpreter.root


class Boom(Exception):
    pass


def _mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == real or p.startswith(real + "/")]


def _sleeper(argv: list[str]) -> subprocess.Popen[bytes]:
    """A process that prints one line once it runs inside the root, then sleeps."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    return proc


def test_an_error_inside_still_stops_processes_and_unmounts(tmp_path: Path) -> None:
    keep = tmp_path / "host-file"
    keep.write_text("still here")
    started: list[subprocess.Popen[bytes]] = []

    def work_then_fail() -> None:
        with session(ROOT, [Bind(tmp_path, "/mnt/host", read_only=False)]) as inside:
            script = "cat /mnt/host/host-file; echo; exec sleep 600"
            # It prints once it has read the host's file through the bind.
            started.append(_sleeper(inside.command(["/bin/sh", "-c", script], {})))
            assert len(_mounts_under(ROOT.path)) == 5  # proc, dev, dev/shm, tmp, the bind
            raise Boom

    with pytest.raises(Boom):
        work_then_fail()
    assert started[0].wait(timeout=10) == -9
    assert _mounts_under(ROOT.path) == []
    assert keep.read_text() == "still here"


def test_a_killed_runs_leftovers_are_cleared_by_the_next_session() -> None:
    ROOT.ensure()
    stray_mount = ROOT.path / "mnt" / "stray"
    stray_mount.mkdir(parents=True, exist_ok=True)
    subprocess.run([tool("mount"), "-t", "tmpfs", "stray", str(stray_mount)], check=True)
    stray = _sleeper([tool("chroot"), str(ROOT.path), "/bin/sh", "-c", "echo in; exec sleep 600"])
    try:
        with session(ROOT):
            assert stray.wait(timeout=10) == -9
            assert str(stray_mount) not in _mounts_under(ROOT.path)
        assert _mounts_under(ROOT.path) == []
    finally:
        if stray.poll() is None:
            stray.kill()
        if _mounts_under(stray_mount):
            subprocess.run([tool("umount"), str(stray_mount)], check=False)
