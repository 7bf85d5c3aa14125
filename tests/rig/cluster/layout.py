"""Where the local cluster keeps its files: one directory tree under the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rig.cache import cache_home


@dataclass(frozen=True)
class Layout:
    """The cluster's directories under the cache (one cluster per machine)."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(cache_home() / "cluster")

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig handed to users and tests."""
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Pid files and the record of what ``up`` changed on the host."""
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.run / "host.json"

    @property
    def lock(self) -> Path:
        return cache_home() / ".cluster.lock"

    @property
    def data(self) -> Path:
        """Everything the components write; removed by ``down``."""
        return self.root / "data"

    def dir(self, name: str) -> Path:
        path = self.data / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def containerd_socket(self) -> Path:
        return self.data / "containerd" / "containerd.sock"
