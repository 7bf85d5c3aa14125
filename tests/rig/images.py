"""The project's container images, built on this machine with buildah: no Docker, no registry.

What it is: every image the local cluster runs (:data:`IMAGES`), built from the repository's
own Dockerfiles, unchanged, and kept as OCI archives in ``$AGENTPERSISTENCE_CACHE/images``
that ``ctr images import`` takes under the exact names the manifests use. Nothing is pulled:

- the Python images (sidecar, operator, example agent, the e2e tier's Valkey) are built
  ``FROM`` a local Python base made of Debian packages: a :class:`rig.debian.DebianRoot` of the
  suite whose Python is the Dockerfiles' default (``ARG PYTHON_IMAGE=python:3.13-slim`` →
  trixie's ``python3.13``), committed as ``localhost/agentpersistence/python:3.13-trixie`` and
  passed as ``--build-arg PYTHON_IMAGE``;
- the pod sandbox image (``registry.k8s.io/pause:3.10``) is ``tests/rig/pause.c`` compiled
  static into a ``FROM scratch`` image.

Builds run ``buildah bud --network host`` with buildah's own storage under the cache (never
the system's), the host's CA bundle mounted read-only over the image's during ``RUN`` steps
only (HTTPS to the package index may be re-signed by a CA only the host trusts; no image
keeps it), and honour the ``<Dockerfile>.dockerignore`` beside each Dockerfile. An image is
rebuilt only when its inputs change: its stamp is a digest of its Dockerfile, the files its
``COPY`` lines read (git-tracked and untracked-not-ignored files under :attr:`ImageSpec.inputs`)
and the base image's recipe. With nothing changed, :func:`build` returns in well under a second.

What it is not: a registry, or a builder of multi-platform images (the host's platform only).
Everything here needs root (debootstrap, buildah's overlay storage, containerd), as CI has.

    IMAGES: tuple[ImageSpec, ...]                   # what is built, and from what
    SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"    # containerd's CRI sandbox_image
    build(say=print, only=None) -> list[BuiltImage] # fresh archives (ref, archive, seconds)
    import_into(address, images, say=print)         # ctr -n k8s.io images import, then verify

    python -m rig.images build [--only sidecar,pause]   # build; list refs, sizes, build times
    python -m rig.images import --address SOCKET        # into a running containerd (k8s.io)

(run from the repository root with ``PYTHONPATH=tests``). The e2e tier runs every image in
the local cluster. Delete ``$AGENTPERSISTENCE_CACHE/
images`` to rebuild everything; build logs stay in ``images/logs``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from rig import packages
from rig.cache import cache_home
from rig.debian import PYTHON_SUITES, DebianRoot, RootError

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "k8s.io"
"""containerd namespace of the kubelet's CRI: images imported elsewhere are invisible to pods."""
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""The host's bundle, mounted over the image's own during RUN steps (pip trusts it there)."""
PYTHON_DOCKERFILE = "docker/sidecar.Dockerfile"
"""Whose ``ARG PYTHON_IMAGE=python:3.X-slim`` default names the Python every image runs."""
BASE_REPOSITORY = "localhost/agentpersistence/python"
BASE_STRIP = (
    "./.agentpersistence-root.json",
    "./dev/*",
    "./proc/*",
    "./sys/*",
    "./tmp/*",
    "./etc/hostname",
    "./etc/resolv.conf",
    "./var/cache/apt/*",
    "./var/lib/apt/lists/*",
    "./var/cache/debconf/*-old",
    "./var/lib/dpkg/*-old",
    "./var/log/*",
)
"""Left out of the base image: the rig's stamp, device nodes, apt's caches and lists, the
build host's name and resolver (the runtime provides both), logs of the bootstrap."""
BASE_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)
BUILD_PACKAGES = ("buildah", "runc", "gcc", "libc6-dev")
"""What building the images needs from Debian (buildah only recommends a runtime for its RUN
steps; debootstrap comes with rig.debian)."""
PAUSE_CFLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror")
STORAGE_DRIVER = "overlay"
"""buildah's storage driver: overlay works as root on this ext4; vfs would copy every layer."""
BUILD_TIMEOUT_S = 1800.0  # the slowest image takes minutes (pip downloads its wheels)
PROGRESS_EVERY_S = 60.0

Say = Callable[[str], object]


class ImagesError(RuntimeError):
    """An image could not be built, imported or run; the message says what to do."""


def _say(say: Say, message: str) -> None:
    say(f"[rig.images] {message}")


@dataclass(frozen=True)
class ImageSpec:
    """One image: its full name, its Dockerfile and what that Dockerfile copies.

    ``inputs`` are repository paths (files or folders) whose files the image is built from,
    besides its Dockerfile and that Dockerfile's ``.dockerignore``. ``python``: built FROM the
    local Python base (``--build-arg PYTHON_IMAGE``), with the repository root as context.
    ``compile_c``: a C file compiled static into an otherwise empty context, under its stem.
    """

    name: str
    ref: str
    dockerfile: str
    inputs: tuple[str, ...]
    python: bool = True
    compile_c: str | None = None

    @property
    def archive(self) -> Path:
        return _home() / f"{self.name}.oci.tar"

    @property
    def stamp(self) -> Path:
        return _home() / f"{self.name}.json"


@dataclass(frozen=True)
class BuiltImage:
    """An image's archive, ready for ``ctr images import``; ``seconds``: its last build."""

    ref: str
    archive: Path
    seconds: float
    rebuilt: bool

    @property
    def size(self) -> int:
        return self.archive.stat().st_size


CONSTRAINTS = "requirements/constraints.txt"
IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        "sidecar",
        "docker.io/agentpersistence/sidecar:0.1.0",
        "docker/sidecar.Dockerfile",
        (CONSTRAINTS, "client", "sidecar"),
    ),
    ImageSpec(
        "operator",
        "docker.io/agentpersistence/operator:0.1.0",
        "docker/operator.Dockerfile",
        (CONSTRAINTS, "client", "sidecar", "operator"),
    ),
    ImageSpec(
        "example-agent",
        "docker.io/agentpersistence/example-agent:0.1.0",
        "examples/agent/Dockerfile",
        (CONSTRAINTS, "client", "examples/agent/agent.py"),
    ),
    ImageSpec(
        "e2e-valkey",
        "docker.io/agentpersistence/e2e-valkey:0.1.0",
        "tests/e2e/images/valkey.Dockerfile",
        (CONSTRAINTS,),
    ),
    ImageSpec(
        "pause",
        SANDBOX_IMAGE,
        "tests/e2e/images/pause.Dockerfile",
        ("tests/rig/pause.c",),
        python=False,
        compile_c="tests/rig/pause.c",
    ),
)


# --- building --------------------------------------------------------------------------------


def build(say: Say = print, only: Sequence[str] | None = None) -> list[BuiltImage]:
    """Every image of :data:`IMAGES` (or those named in ``only``) as a fresh archive.

    An image whose inputs are unchanged since its archive was made is not rebuilt."""
    specs = _select(only)
    base = BaseImage.for_dockerfiles()
    wanted = {spec.name: _digest(spec, base) for spec in specs}
    stale = [spec for spec in specs if not _is_fresh(spec, wanted[spec.name])]
    if stale:
        packages.ensure(BUILD_PACKAGES, say)
        with _locked(say):
            _clear_leftovers()
            stale = [spec for spec in stale if not _is_fresh(spec, wanted[spec.name])]
            if any(spec.python for spec in stale):
                base.ensure(say)
            for spec in stale:
                _build_one(spec, base, wanted[spec.name], say)
    fresh = {spec.name for spec in stale}
    return [_built(spec, spec.name in fresh) for spec in specs]


def _select(only: Sequence[str] | None) -> list[ImageSpec]:
    if only is None:
        return list(IMAGES)
    names = [spec.name for spec in IMAGES]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ImagesError(f"no image named {', '.join(unknown)}; choose from {', '.join(names)}")
    return [spec for spec in IMAGES if spec.name in only]


def _is_fresh(spec: ImageSpec, digest: str) -> bool:
    try:
        stamp = json.loads(spec.stamp.read_text())
    except (OSError, ValueError):
        return False
    return bool(stamp.get("digest") == digest and spec.archive.exists())


def _built(spec: ImageSpec, rebuilt: bool) -> BuiltImage:
    stamp = json.loads(spec.stamp.read_text())
    return BuiltImage(spec.ref, spec.archive, float(stamp["seconds"]), rebuilt)


def _build_one(spec: ImageSpec, base: BaseImage, digest: str, say: Say) -> None:
    _say(say, f"{spec.name}: building {spec.ref} from {spec.dockerfile}")
    began = time.monotonic()
    log = _home() / "logs" / f"{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with tempfile.TemporaryDirectory(dir=_home(), prefix=f".{spec.name}.") as scratch:
        context = _compiled_context(spec, Path(scratch)) if spec.compile_c else REPO
        argv = ["bud", "--network", "host", "--pull-never", "--format", "oci"]
        if os.path.exists(CA_BUNDLE):
            argv += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        if spec.python:
            argv += ["--build-arg", f"PYTHON_IMAGE={base.ref}"]
        argv += ["-f", str(REPO / spec.dockerfile), "-t", spec.ref, str(context)]
        _buildah_logged(argv, log, say, spec.name)
    partial = spec.archive.with_name(spec.archive.name + ".partial")
    partial.unlink(missing_ok=True)
    _buildah(["push", "--quiet", spec.ref, f"oci-archive:{partial}:{spec.ref}"])
    partial.replace(spec.archive)
    # The archive is what is kept; the storage holds only the base between builds.
    _buildah(["rmi", spec.ref])
    seconds = time.monotonic() - began
    spec.stamp.write_text(json.dumps({"digest": digest, "ref": spec.ref, "seconds": seconds}))
    _say(say, f"{spec.name}: built in {seconds:.0f}s ({_size(spec.archive)} archive)")


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def _compiled_context(spec: ImageSpec, scratch: Path) -> Path:
    """A build context holding only ``spec.compile_c`` compiled static, named by its stem."""
    assert spec.compile_c is not None
    source = REPO / spec.compile_c
    binary = scratch / source.stem
    gcc = packages.tool("gcc")
    done = subprocess.run(
        [gcc, *PAUSE_CFLAGS, "-o", str(binary), str(source)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ImagesError(f"compiling {spec.compile_c} failed:\n{done.stderr.strip()}")
    return scratch


def _digest(spec: ImageSpec, base: BaseImage) -> str:
    """What the image is made of: its spec, the base's recipe and every input file."""
    h = hashlib.sha256()
    recipe = {"spec": asdict(spec), "cflags": PAUSE_CFLAGS, "storage": STORAGE_DRIVER}
    if spec.python:
        recipe["base"] = base.recipe()
    h.update(json.dumps(recipe, sort_keys=True).encode())
    for name in _input_files(spec):
        path = REPO / name
        with contextlib.suppress(FileNotFoundError):  # tracked, but deleted in the tree
            mode = "x" if os.access(path, os.X_OK) else "-"
            h.update(f"\0{name}\0{mode}\0".encode() + path.read_bytes())
    return h.hexdigest()[:24]


GIT_LS_FILES = (
    "git",
    "-C",
    str(REPO),
    "ls-files",
    "-z",
    "--cached",
    "--others",
    "--exclude-standard",
)
"""Tracked files and untracked ones git does not ignore: what a build may copy."""


def _input_files(spec: ImageSpec) -> list[str]:
    paths = [spec.dockerfile, f"{spec.dockerfile}.dockerignore", *spec.inputs]
    done = subprocess.run(
        [*GIT_LS_FILES, "--", *paths],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ImagesError(
            f"`git ls-files` failed in {REPO}: {done.stderr.strip()}; "
            "image stamps need a git checkout"
        )
    return sorted({name for name in done.stdout.split("\0") if name})


# --- the local Python base -------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImage:
    """Debian's ``python3.X`` as an image, standing in for ``python:3.X-slim``."""

    minor: str
    root: DebianRoot

    @classmethod
    def for_dockerfiles(cls) -> BaseImage:
        minor = python_minor()
        suite = PYTHON_SUITES.get(minor)
        if suite is None:
            raise ImagesError(
                f"{PYTHON_DOCKERFILE} defaults to Python {minor}, which no known Debian suite "
                f"ships as python{minor} (known: {', '.join(PYTHON_SUITES)}); add its suite "
                "to rig.debian.PYTHON_SUITES"
            )
        packages = (f"python{minor}", f"python{minor}-venv", "python-is-python3", "ca-certificates")
        return cls(minor, DebianRoot(f"image-{suite}-python{minor}", suite, packages))

    @property
    def ref(self) -> str:
        return f"{BASE_REPOSITORY}:{self.minor}-{self.root.suite}"

    @property
    def stamp(self) -> Path:
        return _home() / "base.json"

    def recipe(self) -> dict[str, object]:
        """What the base is made from, as JSON reads it back (for comparing with a stamp)."""
        recipe = {
            "ref": self.ref,
            "suite": self.root.suite,
            "packages": sorted(self.root.packages),
            "mirror": self.root.mirror,
            "strip": BASE_STRIP,
            "env": BASE_ENV,
        }
        loaded: dict[str, object] = json.loads(json.dumps(recipe))
        return loaded

    def ensure(self, say: Say) -> None:
        """The base in buildah's storage, made first if missing or its recipe changed."""
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.stamp.read_text()) == self.recipe() and _has_image(self.ref):
                return
        began = time.monotonic()
        try:
            path = self.root.ensure(say)
        except RootError as exc:
            raise ImagesError(f"the {self.ref} base needs its Debian root: {exc}") from exc
        self._check_python(path)
        _say(say, f"base: committing {path} as {self.ref}")
        container = _buildah(["from", "--pull-never", "scratch"]).strip()
        try:
            mounted = Path(_buildah(["mount", container]).strip())
            _copy_tree(path, mounted)
            config = ["config", "--cmd", '["python3"]', "--os", "linux"]
            config += [arg for env in BASE_ENV for arg in ("--env", env)]
            config += ["--label", f"org.opencontainers.image.description={self.description}"]
            _buildah([*config, container])
            _buildah(["commit", "--quiet", "--rm", "--format", "oci", container, self.ref])
        except BaseException:
            with contextlib.suppress(ImagesError):
                _buildah(["rm", container])
            raise
        self.stamp.write_text(json.dumps(self.recipe()))
        _say(say, f"base: {self.ref} ready in {time.monotonic() - began:.0f}s")

    @property
    def description(self) -> str:
        return f"Debian {self.root.suite} python{self.minor}, for the local builds of the images"

    def _check_python(self, path: Path) -> None:
        """``python`` and ``python3`` must be this minor (the Dockerfiles run ``python``)."""
        for name in ("python", "python3"):
            real = os.path.realpath(path / "usr" / "bin" / name)
            if Path(real).name != f"python{self.minor}":
                raise ImagesError(
                    f"in the {self.root.suite} root, /usr/bin/{name} is {Path(real).name}, not "
                    f"python{self.minor}; map Python {self.minor} to another suite in "
                    "rig.debian.PYTHON_SUITES"
                )


def python_minor() -> str:
    """The Python minor of the Dockerfiles' ``ARG PYTHON_IMAGE=python:3.X-slim`` default."""
    found = {}
    for spec in IMAGES:
        if spec.python:
            text = (REPO / spec.dockerfile).read_text()
            match = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim\s*$", text, re.M)
            found[spec.dockerfile] = match.group(1) if match else None
    minor = found[PYTHON_DOCKERFILE]
    if minor is None:
        raise ImagesError(
            f"{PYTHON_DOCKERFILE} has no `ARG PYTHON_IMAGE=python:3.X-slim` line; "
            "the base image's Python is read from it"
        )
    others = {name: seen for name, seen in found.items() if seen != minor}
    if others:
        raise ImagesError(
            f"the Dockerfiles disagree on PYTHON_IMAGE's default: {PYTHON_DOCKERFILE} says "
            f"{minor}, {', '.join(f'{k} says {v}' for k, v in others.items())}; align them"
        )
    return minor


def _copy_tree(source: Path, dest: Path) -> None:
    """``source`` into ``dest`` with owners, modes and xattrs, leaving out :data:`BASE_STRIP`."""
    keep = ["--numeric-owner", "--xattrs", "--xattrs-include=*"]
    excludes = ["--anchored", *(f"--exclude={pattern}" for pattern in BASE_STRIP)]
    with subprocess.Popen(
        ["tar", "-C", str(source), *keep, *excludes, "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as pack:
        unpack = subprocess.run(
            ["tar", "-C", str(dest), *keep, "-xpf", "-"],
            stdin=pack.stdout,
            capture_output=True,
            text=True,
        )
        assert pack.stderr is not None
        errors = pack.stderr.read().decode(errors="replace")
    if pack.returncode != 0 or unpack.returncode != 0:
        raise ImagesError(f"copying {source} into the base image failed: {errors}{unpack.stderr}")


# --- buildah, with its own storage -------------------------------------------------------------


def _home() -> Path:
    path = cache_home() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _buildah_env() -> dict[str, str]:
    """buildah's storage (and its temp files) under the cache, never the system's."""
    home = _home()
    conf = home / "storage.conf"
    text = (
        f'[storage]\ndriver = "{STORAGE_DRIVER}"\n'
        f'graphroot = "{home / "storage"}"\nrunroot = "{home / "runroot"}"\n'
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    (home / "tmp").mkdir(exist_ok=True)
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "TMPDIR": str(home / "tmp")}


def _buildah_argv(argv: Sequence[str]) -> list[str]:
    home = _home()
    storage = ["--root", str(home / "storage"), "--runroot", str(home / "runroot")]
    storage += ["--storage-driver", STORAGE_DRIVER]
    return [packages.tool("buildah"), *storage, *argv]


def _buildah(argv: Sequence[str]) -> str:
    done = subprocess.run(_buildah_argv(argv), capture_output=True, text=True, env=_buildah_env())
    if done.returncode != 0:
        raise ImagesError(
            f"`buildah {' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def _has_image(ref: str) -> bool:
    argv = _buildah_argv(["inspect", "--type", "image", "--format", "{{.FromImageID}}", ref])
    return subprocess.run(argv, capture_output=True, env=_buildah_env()).returncode == 0


def _buildah_logged(argv: Sequence[str], log: Path, say: Say, name: str) -> None:
    """A build with its output in ``log``, saying every minute which step it is at."""
    began = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            _buildah_argv(argv), stdout=out, stderr=subprocess.STDOUT, env=_buildah_env()
        )
        try:
            while True:
                try:
                    code = proc.wait(timeout=PROGRESS_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - began
                    if elapsed > BUILD_TIMEOUT_S:
                        raise ImagesError(
                            f"{name}: the build took over {BUILD_TIMEOUT_S:.0f}s; see {log}"
                        ) from None
                    _say(say, f"{name}: still building ({elapsed:.0f}s, {_last_step(log)})")
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise ImagesError(
            f"{name}: `buildah {' '.join(argv)}` failed ({code}); the log ({log}) ends:\n"
            + "\n".join(tail)
        )


def _last_step(log: Path) -> str:
    steps = [line for line in log.read_text(errors="replace").splitlines() if "STEP " in line]
    return steps[-1][:100] if steps else "starting"


def _clear_leftovers() -> None:
    """Working containers and dangling images a killed build left in the storage."""
    _buildah(["rm", "--all"])
    _buildah(["rmi", "--prune"])


@contextlib.contextmanager
def _locked(say: Say) -> Iterator[None]:
    """One build at a time per cache (a second waits for the first)."""
    with (_home() / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(say, "waiting for another build of the images to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- containerd --------------------------------------------------------------------------------


def import_into(address: str, images: Sequence[BuiltImage], say: Say = print) -> None:
    """Import ``images`` into the containerd on the unix socket ``address`` (namespace k8s.io),
    then check that each is there under its ref."""
    ctr = [packages.tool("ctr"), "--address", address, "-n", NAMESPACE]
    began = time.monotonic()
    for image in images:
        started = time.monotonic()
        done = subprocess.run(
            [*ctr, "images", "import", str(image.archive)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ImagesError(
                f"importing {image.archive} into containerd at {address} failed: "
                f"{done.stderr.strip()[-2000:]}; is containerd running there?"
            )
        _say(say, f"imported {image.ref} ({time.monotonic() - started:.1f}s)")
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True)
    missing = [image.ref for image in images if image.ref not in listed.stdout.split()]
    if listed.returncode != 0 or missing:
        raise ImagesError(
            f"after import, containerd at {address} lacks {', '.join(missing) or 'its list'} "
            f"({listed.stderr.strip()}); rebuild with `python -m rig.images build`"
        )
    elapsed = time.monotonic() - began
    _say(say, f"imported {len(images)} image(s) into {address} in {elapsed:.1f}s")


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rig.images",
        description="Build the project's images with buildah, import them into containerd.",
    )
    p.add_argument(
        "what",
        choices=["build", "import"],
        help="build the archives, or import them into the containerd at --address",
    )
    p.add_argument("--only", type=lambda s: [n for n in s.split(",") if n], default=None)
    p.add_argument("--address", help="containerd's socket (import)")
    return p


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so a build in progress is cleaned up


def _table(built: Sequence[BuiltImage]) -> None:
    for image in built:
        state = "built now" if image.rebuilt else "cached"
        size = _size(image.archive)
        print(f"  {image.ref:<48} {size:>7}  built in {image.seconds:>4.0f}s  ({state})")
        print(f"    {image.archive}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    args = _parser().parse_args(argv)
    began = time.monotonic()
    try:
        if args.what == "build":
            built = build(print, args.only)
            _say(print, f"{len(built)} image(s) in {time.monotonic() - began:.1f}s:")
            _table(built)
            return 0
        if not args.address:
            raise ImagesError("import needs --address (containerd's socket)")
        import_into(args.address, build(print, args.only), print)
    except ImagesError as exc:
        _say(print, f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
