"""Starts a real etcd + kube-apiserver on loopback so controller tests run against genuine API semantics
(schema validation, resourceVersion conflicts, watches, RBAC) instead of a fake. No pytest dependency:
`with ControlPlane() as plane: ...` works from any script. Set KUBECONFIG_E2E to use an existing cluster.
"""
from __future__ import annotations

import atexit
import base64
import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message carries the log tails."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; unlike CalledProcessError, str() includes its stderr and stdout."""

    def __str__(self) -> str:
        return (f"kubectl {' '.join(self.cmd[1:])} exited {self.returncode}\n"
                f"stderr: {self.stderr}\nstdout: {self.stdout}")


class ControlPlane:
    """etcd + kube-apiserver on free 127.0.0.1 ports, with an admin kubeconfig (client cert in system:masters).

    Attributes once started: `kubeconfig` (admin kubeconfig path), `kubectl` (kubectl binary path),
    `server` (https URL), `workdir` (temp dir holding certs, data and logs), `external` (True when
    KUBECONFIG_E2E supplied the cluster and nothing was started).
    """

    def __init__(self, bin_dir: str | os.PathLike | None = None, *, startup_timeout: float = 90.0,
                 extra_sans: tuple[str, ...] = (), extra_apiserver_args=None):
        # extra_sans: more IP addresses in the apiserver's serving certificate; extra_apiserver_args: a
        # function of the PKI dir returning `--flag=value`s that replace the defaults of the same name. The node
        # (tests/cluster/node.py) uses both; the apiserver-only tests use neither.
        self._extra_sans = tuple(extra_sans)
        self._extra_apiserver_args = extra_apiserver_args
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
        self.kubeconfig: str | None = None
        self.kubectl: str | None = None
        self.server: str | None = None
        self.external = False
        self._etcd: subprocess.Popen | None = None
        self._apiserver: subprocess.Popen | None = None
        self._apiserver_args: list[str] = []
        self._apiserver_starts = 0
        self._etcd_url = ""
        self._port = 0
        self._bins: Path | None = None
        self._ssl: ssl.SSLContext | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "ControlPlane":
        """Start etcd and kube-apiserver (or adopt KUBECONFIG_E2E) and wait until /readyz answers ok."""
        if self.workdir is not None:
            raise ControlPlaneError("ControlPlane.start() called twice; create a new ControlPlane instead")
        self.workdir = Path(tempfile.mkdtemp(prefix="modelrollout-k8s-"))
        atexit.register(self.stop)  # a caller that forgets stop() still leaves no servers or temp dir behind
        external = os.environ.get("KUBECONFIG_E2E")
        try:
            if external:
                self._adopt(external)
            else:
                self._start_local()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill kube-apiserver and etcd (apiserver first) and delete the data dir; safe to call twice."""
        atexit.unregister(self.stop)
        for proc in (self._apiserver, self._etcd):
            _terminate(proc)
        self._apiserver = self._etcd = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        if not self.external:
            self.kubeconfig = None  # its file is gone; _require() now says "call start() first"

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port against the same etcd (state survives)."""
        if self.external:
            raise ControlPlaneError("restart_apiserver() needs a local control plane, not KUBECONFIG_E2E")
        if self._apiserver is None:
            raise ControlPlaneError("restart_apiserver() called on a control plane that is not running")
        _terminate(self._apiserver)
        self._apiserver = None
        self._launch_apiserver()

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- clients ---------------------------------------------------------------------------------

    def api_client(self, kubeconfig: str | None = None):
        """A kubernetes.client.ApiClient for `kubeconfig` (default: the admin one)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=kubeconfig or self._require("kubeconfig"))

    def kubectl_env(self, kubeconfig: str | None = None) -> dict[str, str]:
        """Environment for running kubectl (or a kubectl plugin) against this plane."""
        env = dict(os.environ)
        env["KUBECONFIG"] = kubeconfig or self._require("kubeconfig")
        env["KUBECACHEDIR"] = str(self._require("workdir") / "kube-cache")  # no stale discovery across planes
        for var in ("NO_PROXY", "no_proxy"):  # an https_proxy meant for registries must not catch loopback
            env[var] = ",".join(filter(None, [env.get(var), "127.0.0.1", "localhost"]))
        return env

    def run_kubectl(self, *args: str, input: str | None = None, check: bool = True,
                    kubeconfig: str | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run the plane's kubectl with `args`; raises KubectlError (stderr included) if check and it fails."""
        cmd = [self._require("kubectl"), *map(str, args)]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                              env=self.kubectl_env(kubeconfig))
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def service_account_kubeconfig(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> str:
        """Kubeconfig authenticating only as ServiceAccount `namespace/name` (bearer token), so RBAC applies.

        Creates the namespace and the ServiceAccount if missing; the token comes from the TokenRequest API.
        """
        from kubernetes import client

        for what, value in (("namespace", namespace), ("name", name)):
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value or ""):
                raise ValueError(f"service_account_kubeconfig: {what}={value!r} is not a DNS-1123 label")
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            _create_if_missing(lambda: core.create_namespace({"metadata": {"name": namespace}}))
            _create_if_missing(lambda: core.create_namespaced_service_account(
                namespace, {"metadata": {"name": name}}))
            body = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds))
            token = core.create_namespaced_service_account_token(name, namespace, body).status.token
            cluster = _cluster_entry(api.configuration)
        path = self._require("workdir") / f"sa-{namespace}-{name}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{name}"
        _write_kubeconfig(path, cluster, user, {"token": token})
        return str(path)

    # ---- internals -------------------------------------------------------------------------------

    def _require(self, attr: str):
        value = getattr(self, attr)
        if value is None:
            raise ControlPlaneError(f"ControlPlane.{attr} is not set: call start() (or use `with`) first")
        return value

    def _adopt(self, kubeconfig: str) -> None:
        if not Path(kubeconfig).is_file():
            raise ControlPlaneError(f"KUBECONFIG_E2E={kubeconfig!r} is not a file; expected a kubeconfig path")
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise ControlPlaneError("KUBECONFIG_E2E is set but no 'kubectl' is on PATH")
        self.external, self.kubeconfig, self.kubectl = True, kubeconfig, kubectl
        with self.api_client() as api:
            self.server = api.configuration.host

    def _start_local(self) -> None:
        bins = _find_binaries(self._bin_dir)
        self.kubectl = str(bins / "kubectl")
        self._bins = bins
        pki = self.workdir / "pki"
        pki.mkdir()
        _write_pki(pki, self._extra_sans)
        self._ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._ssl.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        _retry_port_races(self._launch_etcd)

        def launch_apiserver() -> None:
            self._port = _free_port()
            self.server = f"https://127.0.0.1:{self._port}"
            self._apiserver_args = self._apiserver_command(pki)
            self._launch_apiserver()

        _retry_port_races(launch_apiserver)
        self.kubeconfig = str(self.workdir / "admin.kubeconfig")
        _write_kubeconfig(Path(self.kubeconfig),
                          {"server": self.server, "certificate-authority-data": _b64(pki / "ca.crt")},
                          "admin",
                          {"client-certificate-data": _b64(pki / "admin.crt"),
                           "client-key-data": _b64(pki / "admin.key")})

    def _launch_etcd(self) -> None:
        client_port, peer_port = _free_port(), _free_port()
        self._etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        data = self.workdir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        cmd = [str(self._bins / "etcd"), "--name=default", f"--data-dir={data}",
               f"--listen-client-urls={self._etcd_url}", f"--advertise-client-urls={self._etcd_url}",
               f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
               f"--initial-cluster=default={peer}", "--unsafe-no-fsync=true", "--log-level=warn"]
        log = self.workdir / "etcd.log"
        self._etcd = _spawn(cmd, log)
        self._wait(self._etcd, log, f"{self._etcd_url}/health", lambda body: b'"health":"true"' in body, "etcd")

    def _apiserver_command(self, pki: Path) -> list[str]:
        args = self._default_apiserver_args(pki)
        extra = self._extra_apiserver_args(pki) if self._extra_apiserver_args else []
        # an extra --flag=value replaces the default --flag=... (list flags would append otherwise)
        names = {a.split("=", 1)[0] for a in extra}
        return [a for a in args if a.split("=", 1)[0] not in names] + extra

    def _default_apiserver_args(self, pki: Path) -> list[str]:
        return [str(self._bins / "kube-apiserver"),
                f"--etcd-servers={self._etcd_url}", f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}", f"--secure-port={self._port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true", "--disable-admission-plugins=ServiceAccount",
                f"--service-account-issuer=https://127.0.0.1:{self._port}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--endpoint-reconciler-type=none",  # 1.37 refuses a loopback advertise address otherwise
                "--profiling=false"]

    def _launch_apiserver(self) -> None:
        self._apiserver_starts += 1
        log = self.workdir / f"kube-apiserver-{self._apiserver_starts}.log"
        self._apiserver = _spawn(self._apiserver_args, log)
        self._wait(self._apiserver, log, f"{self.server}/readyz", lambda body: body.strip() == b"ok",
                   "kube-apiserver")

    def _wait(self, proc: subprocess.Popen, log: Path, url: str, ok, name: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = _tail(log)
                if "address already in use" in text:
                    raise _PortRace(f"{name}: port already in use; log {log}:\n{text}")
                raise ControlPlaneError(f"{name} exited with code {proc.returncode} during startup; "
                                        f"log {log}:\n{text}")
            try:
                ctx = self._ssl if url.startswith("https") else None
                with _opener(ctx).open(url, timeout=5) as resp:
                    body = resp.read()
                if ok(body):
                    return
                last = body.decode(errors="replace")[:500]
            except (OSError, urllib.error.URLError) as e:
                last = getattr(e, "read", lambda: b"")().decode(errors="replace")[-2000:] or repr(e)
            time.sleep(0.2)
        _terminate(proc)
        raise ControlPlaneError(f"{name} not ready at {url} after {self.startup_timeout:.0f}s; last answer: "
                                f"{last}\nlog {log}:\n{_tail(log)}")


class _PortRace(ControlPlaneError):
    """A server exited because its probed-free port was taken before it could bind it."""


def _retry_port_races(launch, attempts: int = 3) -> None:
    # A port found free can be taken by another process before the server binds it: try fresh ports.
    for attempt in range(attempts):
        try:
            return launch()
        except _PortRace:
            if attempt == attempts - 1:
                raise


def _find_binaries(bin_dir: Path | None) -> Path:
    """Binaries from the argument, else MODELROLLOUT_K8S_BIN, else build.sh (fast when cached)."""
    source = "argument bin_dir"
    if bin_dir is None and os.environ.get("MODELROLLOUT_K8S_BIN"):
        bin_dir, source = Path(os.environ["MODELROLLOUT_K8S_BIN"]), "MODELROLLOUT_K8S_BIN"
    if bin_dir is None:
        source = str(BUILD_SCRIPT)
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode != 0:
            raise ControlPlaneError(f"{BUILD_SCRIPT} failed with code {proc.returncode}:\n"
                                    f"{proc.stderr[-4000:]}")
        bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{source}: {bin_dir} lacks executable {', '.join(missing)} "
                                f"(expected {', '.join(BINARIES)})")
    return bin_dir


def _opener(ctx: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    # Straight to loopback: an http(s)_proxy in the environment must not intercept readiness probes.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # If the test process is SIGKILLed, take the servers down with it instead of leaving them running.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _terminate(proc: subprocess.Popen | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(could not read {path}: {e})"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _create_if_missing(create) -> None:
    from kubernetes.client.rest import ApiException

    try:
        create()
    except ApiException as e:
        if e.status != 409:
            raise


def _cluster_entry(cfg) -> dict:
    """The kubeconfig `cluster` stanza for the server a client Configuration points at."""
    cluster = {"server": cfg.host}
    if not cfg.verify_ssl:
        cluster["insecure-skip-tls-verify"] = True
    elif cfg.ssl_ca_cert:
        cluster["certificate-authority-data"] = _b64(Path(cfg.ssl_ca_cert))
    return cluster


def _write_kubeconfig(path: Path, cluster: dict, user: str, credentials: dict) -> None:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "modelrollout-test",
           "clusters": [{"name": "modelrollout-test", "cluster": cluster}],
           "users": [{"name": user, "user": credentials}],
           "contexts": [{"name": "modelrollout-test", "context": {"cluster": "modelrollout-test", "user": user}}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


# ---- PKI ---------------------------------------------------------------------------------------------

def _write_pki(d: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """CA, apiserver serving cert (localhost/127.0.0.1), admin client cert, service-account key pair."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelrollout-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    _write_cert(d / "ca", ca, ca_key)

    def leaf(name: x509.Name, usage, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + dt.timedelta(days=7))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                            critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    serving, serving_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
         x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
         *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips)])
    _write_cert(d / "apiserver", serving, serving_key)
    admin, admin_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                   x509.NameAttribute(NameOID.COMMON_NAME, "admin")]), ExtendedKeyUsageOID.CLIENT_AUTH)
    _write_cert(d / "admin", admin, admin_key)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "sa.key").write_bytes(sa_key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption()))
    (d / "sa.pub").write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))


def _write_cert(stem: Path, cert: x509.Certificate, key) -> None:
    stem.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = stem.with_suffix(".key")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
