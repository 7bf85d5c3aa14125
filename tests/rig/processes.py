"""Stopping the rig's server processes the same way everywhere."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's memory from ``/proc/PID/status``, in KiB: ``VmRSS`` (resident now) or
    ``VmHWM`` (the most it was ever resident)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")
