"""What the local cluster changes on the host, recorded first so that teardown undoes exactly it.

``up`` writes a :class:`HostRecord` before it changes anything: the sysctls it will set and
their old values, which of the components' fixed host paths already existed, the network
namespaces already present. ``down`` reads it back, even after a run that was killed, and
undoes each change: it kills every process in the cluster's cgroups and every containerd shim
of its socket, unmounts everything under its directories and the namespaces it made, deletes
its bridges and iptables chains, puts the sysctls back and removes the paths it created.

A machine that already runs Kubernetes (its iptables chains exist) is refused: teardown
removes ``KUBE-*`` and ``CNI-*`` chains, which must then be ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rig import packages
from rig.cluster import plan
from rig.cluster.layout import Layout

Say = Callable[[str], object]

PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "iproute2",
)
"""What the node runs on, from Debian."""
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
OWN_CHAIN_PREFIXES = ("KUBE-", "CNI-", "AP-")
TABLES = ("filter", "nat", "mangle")
KILL_TIMEOUT_S = 5.0
"""How long a component may take to stop on SIGTERM (the cluster's data is discarded)."""


class HostError(RuntimeError):
    """The host cannot hold the cluster, or could not be put back; the message says why."""


def say_host(say: Say, message: str) -> None:
    say(f"[rig.cluster] {message}")


# --------------------------------------------------------------------------- the record


@dataclass
class HostRecord:
    sysctls: dict[str, str] = field(default_factory=dict)
    """Old value of each sysctl ``up`` sets."""
    created_paths: list[str] = field(default_factory=list)
    """Fixed host paths that did not exist before ``up``."""
    netns_before: list[str] = field(default_factory=list)

    def save(self, layout: Layout) -> None:
        layout.run.mkdir(parents=True, exist_ok=True)
        layout.state_file.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, layout: Layout) -> HostRecord | None:
        try:
            return cls(**json.loads(layout.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def record_host(layout: Layout) -> HostRecord:
    """What the host looks like before ``up`` changes it; refuses a host running Kubernetes."""
    foreign = [c for c in _chains() if c.split(":", 1)[1].startswith(("KUBE-", "CNI-"))]
    if foreign:
        raise HostError(
            "this machine already has Kubernetes iptables chains "
            f"({', '.join(sorted(foreign)[:4])}...): the local cluster would share them. "
            "Stop that Kubernetes first, or run `make cluster-down` if they are this rig's."
        )
    record = HostRecord(
        sysctls={key: _read_sysctl(key) for key in SYSCTLS},
        created_paths=[p for p in plan.FIXED_HOST_PATHS if not os.path.exists(p)],
        netns_before=sorted(_netns()),
    )
    record.save(layout)
    return record


# --------------------------------------------------------------------------- packages


def ensure_packages(say: Say) -> None:
    packages.ensure(PACKAGES, say)


# --------------------------------------------------------------------------- network


def setup_network(say: Say) -> None:
    """The node's address on its own bridge, forwarding, and the egress guard."""
    _ip("link", "add", plan.NODE_BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{plan.NODE_IP}/32", "dev", plan.NODE_BRIDGE)
    _ip("link", "set", plan.NODE_BRIDGE, "up")
    for key, value in SYSCTLS.items():
        _write_sysctl(key, value)
    _iptables("filter", "-N", plan.GUARD_CHAIN)
    for allowed in (plan.POD_CIDR, f"{plan.NODE_IP}/32"):
        _iptables("filter", "-A", plan.GUARD_CHAIN, "-d", allowed, "-j", "RETURN")
    _iptables("filter", "-A", plan.GUARD_CHAIN, "-j", "DROP")
    _iptables("filter", "-I", "FORWARD", "1", "-s", plan.POD_CIDR, "-j", plan.GUARD_CHAIN)
    say_host(
        say, f"node {plan.NODE_IP} on {plan.NODE_BRIDGE}; pods {plan.POD_CIDR}; egress guarded"
    )


def dropped_egress() -> int | None:
    """Packets from pods that tried to leave the cluster (the guard's DROP counter)."""
    done = subprocess.run(
        ["iptables", "-w", "-t", "filter", "-L", plan.GUARD_CHAIN, "-v", "-x", "-n"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "DROP":
            return int(fields[0])
    return None


def teardown_network(record: HostRecord | None) -> list[str]:
    """Remove the bridges, the chains and the sysctls ``up`` set; what could not be undone."""
    problems: list[str] = []
    for link in (plan.POD_BRIDGE, plan.NODE_BRIDGE):
        if Path(f"/sys/class/net/{link}").exists():
            with _noting(problems):
                _ip("link", "delete", link)
    with _noting(problems):
        _remove_own_chains()
    for key, value in (record.sysctls if record else {}).items():
        with _noting(problems):
            _write_sysctl(key, value)
    return problems


def _remove_own_chains() -> None:
    """Delete every rule that jumps to one of our chains, then the chains themselves."""
    problems: list[str] = []
    for table in TABLES:
        with _noting(problems):
            _remove_own_chains_in(table)
    if problems:
        raise HostError("; ".join(problems))


def _remove_own_chains_in(table: str) -> None:
    dump = subprocess.run(
        ["iptables-save", "-t", table], capture_output=True, text=True, check=True
    ).stdout
    own = {
        line[1:].split()[0]
        for line in dump.splitlines()
        if line.startswith(":") and line[1:].startswith(OWN_CHAIN_PREFIXES)
    }
    for line in dump.splitlines():
        if line.startswith("-A "):
            words = shlex.split(line)  # comments are quoted, with escaped quotes inside
            if words[1] not in own and _target(words) in own:
                _iptables(table, "-D", *words[1:])
    for chain in own:
        _iptables(table, "-F", chain)
    for chain in own:
        _iptables(table, "-X", chain)


def _target(words: list[str]) -> str | None:
    for flag in ("-j", "-g"):
        if flag in words:
            return words[words.index(flag) + 1]
    return None


def _chains() -> list[str]:
    found = []
    for table in TABLES:
        dump = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        lines = dump.stdout.splitlines()
        found += [f"{table}:{line[1:].split()[0]}" for line in lines if line.startswith(":")]
    return found


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _iptables(table: str, *args: str) -> None:
    _run(["iptables", "-w", "-t", table, *args])


def _read_sysctl(key: str) -> str:
    return Path("/proc/sys", key).read_text().strip()


def _write_sysctl(key: str, value: str) -> None:
    try:
        Path("/proc/sys", key).write_text(value)
    except OSError as exc:
        raise HostError(f"cannot set {key.replace('/', '.')}={value}: {exc}") from None


def _netns() -> set[str]:
    path = Path("/var/run/netns")
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


# --------------------------------------------------------------------------- cgroups


def cgroup_dirs() -> list[Path]:
    """The cluster's cgroup in every mounted hierarchy (v1 controllers and v2)."""
    dirs = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind = line.split()[:3]
        if kind in ("cgroup", "cgroup2"):
            dirs.append(Path(point) / plan.CGROUP_PARENT)
    return dirs


def create_cgroups() -> None:
    for path in cgroup_dirs():
        path.mkdir(exist_ok=True)


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for root in cgroup_dirs():
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(x) for x in procs.read_text().split()}
    return pids


def remove_cgroups(problems: list[str]) -> None:
    for root in cgroup_dirs():
        if not root.is_dir():
            continue
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=_depth, reverse=True):
            with _noting(problems):
                path.rmdir()
        with _noting(problems):
            root.rmdir()


def _depth(path: Path) -> int:
    return len(path.parts)


# --------------------------------------------------------------------------- processes


def kill_everything(layout: Layout, pids_first: Iterable[int]) -> None:
    """SIGTERM ``pids_first`` (the components, newest first), then SIGKILL what is left of
    them, of the pods' processes and of containerd's shims."""
    stop_pids(list(pids_first))
    shims = _shims(layout)
    for _ in range(3):  # a dying shim may have started a process a moment ago
        stray = _cgroup_pids() | shims
        if not stray:
            break
        stop_pids(sorted(stray), signal.SIGKILL)
        shims = _shims(layout)


def stop_pids(pids: list[int], sig: int = signal.SIGTERM) -> None:
    """Signal each process and wait for it to exit; SIGKILL whatever outlives the timeout.
    Children of this process are reaped."""
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            fds[pid] = os.pidfd_open(pid)
            os.kill(pid, sig)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    for pid, fd in fds.items():
        try:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], remaining)[0]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                select.select([fd], [], [], KILL_TIMEOUT_S)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        finally:
            os.close(fd)


def _shims(layout: Layout) -> set[int]:
    """containerd-shim processes started by this cluster's containerd."""
    address = str(layout.containerd_socket)
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and b"containerd-shim" in argv[0] and address.encode() in argv:
                found.add(int(entry.name))
    return found


# --------------------------------------------------------------------------- mounts and paths


def unmount_all(layout: Layout, record: HostRecord | None, problems: list[str]) -> None:
    """Unmount what the kubelet and containerd mounted, and the network namespaces they made."""
    before = set(record.netns_before) if record else set()
    made_netns = [Path("/var/run/netns", n) for n in sorted(_netns() - before)]
    roots = [os.path.realpath(layout.root), *(os.path.realpath(p) for p in made_netns)]
    for _ in range(3):
        mounts = [m for m in _mount_points() if any(_under(m, r) for r in roots)]
        if not mounts:
            break
        for mount in sorted(mounts, key=lambda m: m.count("/"), reverse=True):
            subprocess.run(["umount", mount], capture_output=True)
    left = [m for m in _mount_points() if any(_under(m, r) for r in roots)]
    for mount in left:
        done = subprocess.run(["umount", "-l", mount], capture_output=True, text=True)
        if done.returncode != 0:
            problems.append(f"cannot unmount {mount}: {done.stderr.strip()}")
    for netns in made_netns:
        with contextlib.suppress(FileNotFoundError), _noting(problems):
            netns.unlink()


def remove_created_paths(record: HostRecord | None, problems: list[str]) -> None:
    for path in record.created_paths if record else []:
        if os.path.lexists(path):
            done = subprocess.run(
                ["rm", "-rf", "--one-file-system", path], capture_output=True, text=True
            )
            if done.returncode != 0:
                problems.append(f"cannot remove {path}: {done.stderr.strip()}")


def mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    return [m for m in _mount_points() if _under(m, real)]


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
            point = point.replace(code, char)
        points.append(point)
    return points


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _noting(problems: list[str]) -> Iterator[None]:
    """Teardown goes on past a failed step; the step's error is kept for the report."""
    try:
        yield
    except (OSError, HostError, subprocess.CalledProcessError) as exc:
        problems.append(str(exc))


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise HostError(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()}")
