"""A real Kubernetes control plane (etcd + kube-apiserver) for tests, started on loopback.

What it is: the binaries built from source by ``tests/testenv/build.sh`` (no Docker, no images),
one etcd and one kube-apiserver per pytest session on free 127.0.0.1 ports, TLS everywhere
from a throw-away CA made with ``cryptography``, ``--authorization-mode=RBAC`` and an admin
client certificate in ``system:masters``.

What it is not: there is no controller manager, scheduler or kubelet. Nothing is
garbage-collected, deleted namespaces stay ``Terminating`` forever, no pod ever runs and no
service account or token is created for you. Tests clean up what they create (or use unique
names) and must not wait for anything a controller would do.

Use it from a conftest (the hook builds the binaries before the first test, outside any
test timeout; the fixtures build them on first use otherwise)::

    from rig.kube import kube_control_plane, pytest_collection_finish, testenv_bin_dir

    __all__ = ["kube_control_plane", "pytest_collection_finish", "testenv_bin_dir"]

or ``from rig.kube import *``, or ``pytest_plugins = ["rig.kube"]`` in the root conftest.

``kube_control_plane`` yields a :class:`KubeControlPlane` (kubeconfig, server URL, CA and admin
certificate paths, ``kubectl()``, ``make_user()`` for RBAC tests, ``issue_serving_cert()`` for
webhooks). :func:`host_webhook_server` runs an HTTPS admission webhook on the host and
:func:`mutating_webhook_configuration` builds the object that points the API server at it.
When a test that uses the control plane fails, the tail of the API server's log is added to
its report.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "AdmissionDecision",
    "CertificateAuthority",
    "HostWebhookServer",
    "KeyPair",
    "KubeControlPlane",
    "KubectlError",
    "UserCredentials",
    "host_webhook_server",
    "kube_control_plane",
    "mutating_webhook_configuration",
    "pytest_collection_finish",
    "testenv_bin_dir",
]

JsonObject = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tests" / "testenv" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl", "helm")
BIN_DIR_ENV = "AGENTPERSISTENCE_TESTENV_BIN"  # use prebuilt binaries from this directory
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 90.0  # kube-apiserver needs 5-15 s on 2 cores; leave room for a busy machine
STOP_TIMEOUT_S = 15.0
KUBECTL_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 60
ERROR_TEXT_LIMIT = 2000  # characters of kubectl stderr kept in an exception message


# --------------------------------------------------------------------------- binaries


def _run_build_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args], capture_output=True, text=True, check=False
    )


def _build_binaries(config: pytest.Config) -> int:
    """Runs build.sh with pytest's capture off, so its progress reaches the terminal."""
    capman = config.pluginmanager.getplugin("capturemanager")
    disabled = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
    with disabled:
        print(f"\n[testenv] building control-plane binaries with {BUILD_SCRIPT}", flush=True)
        return subprocess.run(["bash", str(BUILD_SCRIPT)], check=False).returncode


def prepare_binaries(config: pytest.Config) -> Path | str:
    """The directory holding etcd, kube-apiserver, kubectl and helm (built if missing or
    stale), or why it could not be had."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        missing = [name for name in BINARIES if not (Path(override) / name).is_file()]
        return f"{BIN_DIR_ENV}={override} lacks {missing}" if missing else Path(override)
    if _run_build_script("--check").returncode != 0:
        code = _build_binaries(config)
        if code != 0:
            return f"{BUILD_SCRIPT} failed with exit code {code} (its output is above)"
    located = _run_build_script("--print-bin-dir")
    if located.returncode != 0:
        return f"{BUILD_SCRIPT} --print-bin-dir failed: {located.stderr.strip()}"
    return Path(located.stdout.strip())


_BINARIES_KEY = pytest.StashKey[Path | str]()


def _binaries(config: pytest.Config) -> Path | str:
    if _BINARIES_KEY not in config.stash:
        config.stash[_BINARIES_KEY] = prepare_binaries(config)
    return config.stash[_BINARIES_KEY]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds the binaries before the first test starts, so a long first build is not
    counted against a test's timeout. Only when a selected test needs them."""
    if session.config.option.collectonly:
        return
    if any("testenv_bin_dir" in getattr(item, "fixturenames", ()) for item in session.items):
        _binaries(session.config)


@pytest.fixture(scope="session")
def testenv_bin_dir(pytestconfig: pytest.Config) -> Path:
    """The directory with the control-plane binaries (built on first use)."""
    found = _binaries(pytestconfig)
    if isinstance(found, str):
        pytest.fail(found, pytrace=False)
    return found


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key on disk."""

    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _subject_alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


class CertificateAuthority:
    """A throw-away CA that signs serving and client certificates into one directory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = self._self_signed()
        self.cert_path = directory / "ca.crt"
        self.cert_path.write_bytes(self.cert_pem)

    def _self_signed(self) -> x509.Certificate:
        name = _name("agentpersistence-test-ca")
        builder = _validity(x509.CertificateBuilder()).subject_name(name).issuer_name(name)
        builder = builder.public_key(self._key.public_key()).serial_number(
            x509.random_serial_number()
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
        )
        return builder.sign(self._key, hashes.SHA256())

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def bundle_b64(self) -> str:
        """The CA certificate as a webhook ``caBundle`` (base64 of the PEM)."""
        return base64.b64encode(self.cert_pem).decode("ascii")

    def issue(
        self,
        basename: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        hosts: Sequence[str] = (),
    ) -> KeyPair:
        """Signs a certificate: a serving one when ``hosts`` are given, else a client one."""
        key = ec.generate_private_key(ec.SECP256R1())
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = _validity(x509.CertificateBuilder()).subject_name(
            _name(common_name, organizations)
        )
        builder = builder.issuer_name(self._cert.subject).public_key(key.public_key())
        builder = builder.serial_number(x509.random_serial_number())
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        # Python 3.13's default TLS context is strict (X.509 RFC 5280): it wants the key ids.
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
            critical=False,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if hosts:
            builder = builder.add_extension(_subject_alt_names(hosts), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = KeyPair(self.directory / f"{basename}.crt", self.directory / f"{basename}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(pair.key, _key_pem(key))
        return pair

    def signing_key(self, basename: str) -> KeyPair:
        """A bare key pair (``cert`` holds the public key), e.g. for service-account tokens."""
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pair = KeyPair(self.directory / f"{basename}.pub", self.directory / f"{basename}.key")
        pair.cert.write_bytes(public)
        _write_private(pair.key, _key_pem(key))
        return pair


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """The environment for control-plane processes and clients: never proxy loopback."""
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost,::1"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A child process whose stdout and stderr go to a log file."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str, argv: Sequence[str], log_path: Path) -> ManagedProcess:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, env=child_env()
            )
        return cls(name, log_path, process)

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with code {code}; log tail:\n{log_tail(self.log_path)}"
            )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def wait_until_ready(process: ManagedProcess, probe: Callable[[], bool], timeout: float) -> None:
    """Polls ``probe`` until it is true; fails early if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        if probe():
            return
        time.sleep(0.2)
    raise TimeoutError(
        f"{process.name} not ready after {timeout:.0f}s; log tail:\n{log_tail(process.log_path)}"
    )


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except OSError:  # URLError, refused or reset connections, TLS errors, timeouts
        return False


def client_ssl_context(ca: Path, client: KeyPair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def start_etcd(binary: Path, work_dir: Path) -> tuple[ManagedProcess, str]:
    """Starts a single-member etcd on loopback (plain HTTP, data under ``work_dir``)."""
    client_url = f"http://{LOOPBACK}:{free_port()}"
    peer_url = f"http://{LOOPBACK}:{free_port()}"
    argv = [
        str(binary),
        f"--data-dir={work_dir / 'etcd-data'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        "--unsafe-no-fsync=true",  # test data: durability is not the point, speed is
        "--log-level=warn",
    ]
    process = ManagedProcess.start("etcd", argv, work_dir / "etcd.log")
    wait_until_ready(process, lambda: http_ok(f"{client_url}/health"), READY_TIMEOUT_S)
    return process, client_url


@dataclass(frozen=True)
class ApiServerFiles:
    """The certificates and keys kube-apiserver is started with."""

    ca: CertificateAuthority
    serving: KeyPair
    service_account: KeyPair
    admin: KeyPair


def make_apiserver_files(cert_dir: Path) -> ApiServerFiles:
    ca = CertificateAuthority(cert_dir)
    hosts = [LOOPBACK, "localhost", "10.0.0.1", "kubernetes", "kubernetes.default.svc"]
    return ApiServerFiles(
        ca=ca,
        serving=ca.issue("apiserver", "kube-apiserver", hosts=hosts),
        service_account=ca.signing_key("service-account"),
        admin=ca.issue("admin", "admin", organizations=["system:masters"]),
    )


def apiserver_argv(binary: Path, files: ApiServerFiles, etcd_url: str, port: int) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        f"--secure-port={port}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--tls-cert-file={files.serving.cert}",
        f"--tls-private-key-file={files.serving.key}",
        f"--client-ca-file={files.ca.cert_path}",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--disable-admission-plugins=ServiceAccount",
        f"--service-account-issuer=https://{LOOPBACK}:{port}",
        f"--service-account-key-file={files.service_account.cert}",
        f"--service-account-signing-key-file={files.service_account.key}",
        "--allow-privileged=true",
        "--endpoint-reconciler-type=none",  # a loopback address is not a valid endpoint
        "--profiling=false",
    ]


# --------------------------------------------------------------------------- clients


class KubectlError(RuntimeError):
    """kubectl exited non-zero; ``stderr`` says why."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_used = list(args)
        self.returncode = returncode
        self.stderr = stderr
        shown = stderr if len(stderr) <= ERROR_TEXT_LIMIT else stderr[:ERROR_TEXT_LIMIT] + "..."
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {shown}")


def write_kubeconfig(path: Path, server: str, ca: Path, user: str, client: KeyPair) -> Path:
    """Writes a kubeconfig (JSON, which kubectl reads like YAML) using file references."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "testenv", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "testenv", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass(frozen=True)
class UserCredentials:
    """A client identity signed by the control plane's CA, for RBAC tests."""

    name: str
    groups: tuple[str, ...]
    client: KeyPair
    kubeconfig: Path


@dataclass
class KubeControlPlane:
    """A running etcd + kube-apiserver; see the module docstring for what is missing."""

    server: str
    kubeconfig: Path
    ca_cert: Path
    admin_cert: Path
    admin_key: Path
    bin_dir: Path
    work_dir: Path
    apiserver_log: Path
    ca: CertificateAuthority = field(repr=False)
    processes: list[ManagedProcess] = field(default_factory=list, repr=False)

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def env(self) -> dict[str, str]:
        """An environment for other clients (helm, an operator) that talks to this cluster."""
        return child_env() | {"KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl against this cluster as admin (or as ``kubeconfig``'s user)."""
        argv = [
            str(self.kubectl_path),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.work_dir / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S,
            env=child_env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result.returncode, result.stderr)
        return result

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> JsonObject:
        """Runs ``kubectl ARGS -o json`` and parses the output."""
        output = self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout
        parsed: JsonObject = json.loads(output)
        return parsed

    def apply(self, manifest: Mapping[str, Any]) -> JsonObject:
        """Server-side applies one object as admin and returns the stored object."""
        output = self.kubectl(
            "apply",
            "--server-side",
            "--field-manager=testenv",
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(manifest),
        ).stdout
        stored: JsonObject = json.loads(output)
        return stored

    def make_user(self, name: str, groups: Sequence[str] = ()) -> UserCredentials:
        """A client certificate (CN=name, O=groups) and a kubeconfig that uses it."""
        user_dir = self.work_dir / "users" / name
        user_dir.mkdir(parents=True, exist_ok=True)
        client = self.ca.issue(f"user-{name}", name, organizations=groups)
        kubeconfig = write_kubeconfig(
            user_dir / "kubeconfig", self.server, self.ca_cert, name, client
        )
        return UserCredentials(name, tuple(groups), client, kubeconfig)

    def issue_serving_cert(
        self, basename: str, hosts: Sequence[str] = (LOOPBACK, "localhost")
    ) -> KeyPair:
        """A serving certificate from the cluster CA, e.g. for a webhook the API server calls."""
        return self.ca.issue(basename, hosts[0], hosts=hosts)

    def ssl_context(self, client: KeyPair | None = None) -> ssl.SSLContext:
        """An SSL context trusting the API server, presenting ``client`` (default: admin)."""
        return client_ssl_context(self.ca_cert, client or KeyPair(self.admin_cert, self.admin_key))

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.apiserver_log, lines)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_control_plane(bin_dir: Path, work_dir: Path) -> KubeControlPlane:
    """Starts etcd then kube-apiserver and waits for /readyz; stops both if that fails."""
    files = make_apiserver_files(work_dir / "pki")
    port = free_port()
    server = f"https://{LOOPBACK}:{port}"
    plane = KubeControlPlane(
        server=server,
        kubeconfig=write_kubeconfig(
            work_dir / "kubeconfig", server, files.ca.cert_path, "admin", files.admin
        ),
        ca_cert=files.ca.cert_path,
        admin_cert=files.admin.cert,
        admin_key=files.admin.key,
        bin_dir=bin_dir,
        work_dir=work_dir,
        apiserver_log=work_dir / "kube-apiserver.log",
        ca=files.ca,
    )
    try:
        etcd, etcd_url = start_etcd(bin_dir / "etcd", work_dir)
        plane.processes.append(etcd)
        argv = apiserver_argv(bin_dir / "kube-apiserver", files, etcd_url, port)
        apiserver = ManagedProcess.start("kube-apiserver", argv, plane.apiserver_log)
        plane.processes.append(apiserver)
        context = plane.ssl_context()
        wait_until_ready(apiserver, lambda: http_ok(f"{server}/readyz", context), READY_TIMEOUT_S)
    except BaseException:
        plane.stop()
        raise
    return plane


class ApiServerLogReporter:
    """A pytest plugin adding the API server's log tail to failed tests that used it."""

    def __init__(self, plane: KubeControlPlane) -> None:
        self.plane = plane

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed and "kube_control_plane" in getattr(item, "fixturenames", ()):
            report.sections.append(("kube-apiserver log (tail)", self.plane.log_tail()))
        return report


@pytest.fixture(scope="session")
def kube_control_plane(
    testenv_bin_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[KubeControlPlane]:
    """etcd + kube-apiserver for the whole session; torn down at the end."""
    plane = start_control_plane(testenv_bin_dir, tmp_path_factory.mktemp("kube"))
    reporter = ApiServerLogReporter(plane)
    pytestconfig.pluginmanager.register(reporter, "agentpersistence-apiserver-log")
    try:
        yield plane
    finally:
        pytestconfig.pluginmanager.unregister(reporter)
        plane.stop()


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class AdmissionDecision:
    """What a host webhook answers: allow or deny, optionally with a JSON patch."""

    allowed: bool = True
    patch: Sequence[Mapping[str, Any]] = ()
    message: str = ""


AdmissionHandler = Callable[[JsonObject], AdmissionDecision]


def admission_response(uid: str, decision: AdmissionDecision) -> JsonObject:
    """The AdmissionReview (admission.k8s.io/v1) that answers request ``uid``."""
    response: JsonObject = {"uid": uid, "allowed": decision.allowed}
    if decision.patch:
        patch = json.dumps(list(decision.patch)).encode()
        response |= {"patchType": "JSONPatch", "patch": base64.b64encode(patch).decode("ascii")}
    if decision.message:
        response["status"] = {"message": decision.message, "code": 200 if decision.allowed else 403}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def _handler_class(
    handler: AdmissionHandler, received: list[JsonObject]
) -> type[BaseHTTPRequestHandler]:
    class AdmissionRequestHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            request: JsonObject = review.get("request", {})
            received.append(request)
            body = json.dumps(admission_response(request.get("uid", ""), handler(request))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: requests carry object payloads that do not belong in logs."""

    return AdmissionRequestHandler


@dataclass
class HostWebhookServer:
    """An HTTPS admission webhook on 127.0.0.1, trusted through the cluster CA."""

    url: str
    ca_bundle: str
    requests: list[JsonObject]


@contextlib.contextmanager
def host_webhook_server(
    plane: KubeControlPlane, handler: AdmissionHandler, path: str = "/mutate"
) -> Iterator[HostWebhookServer]:
    """Serves ``handler`` at https://127.0.0.1:<free port><path> until the block ends."""
    received: list[JsonObject] = []
    serving = plane.issue_serving_cert(f"webhook-{uuid.uuid4().hex[:8]}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(serving.cert), str(serving.key))
    httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler_class(handler, received))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="host-webhook", daemon=True)
    thread.start()
    try:
        yield HostWebhookServer(
            f"https://{LOOPBACK}:{httpd.server_address[1]}{path}", plane.ca.bundle_b64, received
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=STOP_TIMEOUT_S)


def mutating_webhook_configuration(
    name: str,
    url: str,
    ca_bundle: str,
    *,
    rules: Sequence[Mapping[str, Any]],
    namespace_selector: Mapping[str, Any] | None = None,
    object_selector: Mapping[str, Any] | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
) -> JsonObject:
    """A MutatingWebhookConfiguration with one webhook calling ``url`` (no side effects)."""
    webhook: JsonObject = {
        "name": f"{name}.agentpersistence.test" if "." not in name else name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": [dict(rule) for rule in rules],
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
        "reinvocationPolicy": "Never",
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = dict(namespace_selector)
    if object_selector is not None:
        webhook["objectSelector"] = dict(object_selector)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def helm(
    bin_dir: Path, home: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the testenv's helm with its caches and config under ``home`` (never the user's)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(
        [str(bin_dir / "helm"), *args], capture_output=True, text=True, env=env, check=check
    )
