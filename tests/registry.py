"""Test registries for pull/push tests: the real Distribution registry (Debian's ``docker-registry``), a token
server, a fault-injecting proxy and helpers that push test images with plain HTTP (no dockwright involved).

Usage from a test module (tests/ is on sys.path, like conftest)::

    from registry import Registry, FaultProxy, push_image, push_index, registry, shared_registry  # noqa: F401

Importing the fixture functions into the test module is what makes pytest see them.

Everything listens on 127.0.0.1 only.  Test keys and certificates are made once per process with the
``openssl`` CLI (into a temp dir removed at exit); RS256 tokens are signed with ``openssl dgst``; the htpasswd
file is bcrypt (cost 4), made with Python's ``crypt`` module, or ``htpasswd -nbBC 4`` where ``crypt`` is missing.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

USER = "testuser"
PASSWORD = "testpassword"
SERVICE = "dockwright-test-registry"
ISSUER = "dockwright-test-issuer"

# -- media types ---------------------------------------------------------------------------------------------
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

BLOB_PATH_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$")


def registry_available() -> bool:
    return os.access(REGISTRY_BIN, os.X_OK)


def _require_registry() -> None:
    if not registry_available():
        pytest.skip("no docker-registry binary (apt-get install docker-registry)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- keys and certificates (once per process) -----------------------------------------------------------------
class PKI:
    """Test CA, a server cert for 127.0.0.1/::1/localhost, a client cert, and an RSA token-signing key+cert."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.ca_cert = base / "ca.pem"
        self.ca_key = base / "ca.key"
        self.server_cert = base / "server.pem"
        self.server_key = base / "server.key"
        self.client_cert = base / "client.pem"
        self.client_key = base / "client.key"
        self.token_cert = base / "token.pem"
        self.token_key = base / "token.key"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl("req", "-x509", *ec, "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "3650",
                      "-subj", "/CN=dockwright test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._leaf("server", self.server_cert, self.server_key,
                   "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        self._leaf("client", self.client_cert, self.client_key,
                   "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.token_key,
                      "-out", self.token_cert, "-days", "3650", "-subj", "/CN=dockwright test token issuer")
        der = subprocess.run([OPENSSL, "pkey", "-in", str(self.token_key), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.token_kid = libtrust_key_id(der)

    def _openssl(self, *args: Any) -> None:
        p = subprocess.run([OPENSSL, *map(str, args)], capture_output=True)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {p.stderr.decode(errors='replace')}")

    def _leaf(self, name: str, cert: Path, key: Path, ext: str) -> None:
        csr = self.base / f"{name}.csr"
        extfile = self.base / f"{name}.ext"
        extfile.write_text(ext)
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN={'localhost' if name == 'server' else name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                      "-set_serial", str(secrets.randbits(63)), "-days", "3650", "-out", cert, "-extfile", extfile)

    def sign_rs256(self, signing_input: bytes) -> bytes:
        p = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", str(self.token_key)], input=signing_input,
                           capture_output=True, check=True)
        return p.stdout


def libtrust_key_id(spki_der: bytes) -> str:
    """The key ID the registry derives for a trusted key (libtrust): base32 of SHA-256(SPKI)[:30], 4-char groups."""
    s = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


_pki: PKI | None = None
_pki_lock = threading.Lock()


def pki() -> PKI:
    global _pki
    with _pki_lock:
        if _pki is None:
            d = Path(tempfile.mkdtemp(prefix="dw-test-pki-"))
            atexit.register(shutil.rmtree, d, True)
            _pki = PKI(d)
        return _pki


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash (cost 4, so the registry checks Basic credentials fast)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if h and h.startswith("$2"):
            return h
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise RuntimeError("no bcrypt available: install apache2-utils (htpasswd)")
    out = subprocess.run([htpasswd, "-nbBC", "4", "u", password], capture_output=True, check=True).stdout.decode()
    return out.strip().split(":", 1)[1]


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
    return path


# -- token server ------------------------------------------------------------------------------------------
Policy = Callable[[str | None, str, str, list[str]], list[str]]


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:name:pull,push`` -> ("repository", "name", ["pull", "push"])."""
    typ, sep, rest = scope.partition(":")
    if not sep:
        return None
    name, sep, actions = rest.rpartition(":")
    if not sep:
        return None
    typ = typ.split("(", 1)[0]  # "repository(plugin)"
    return typ, name, [a for a in actions.split(",") if a]


class TokenServer:
    """A Docker token server (the registry's ``auth: token``) in a thread, on its own 127.0.0.1 port.

    GET /token?service=..&scope=..  (Basic credentials, or none for an anonymous token), and the OAuth2 form
    POST /token with grant_type=password (username/password) or grant_type=refresh_token.  Tokens are RS256
    JWTs signed by a test key whose self-signed cert is ``cert_path`` (the registry's rootcertbundle).

    ``policy(user | None, type, name, requested_actions) -> granted_actions``; the default grants everything
    requested to a known user and, if ``anonymous_pull``, "pull" to anonymous clients.
    ``requests`` records each token request (dicts with method, params, user, granted); ``fail_times``/
    ``fail_status`` make the next N token requests fail.
    """

    def __init__(self, users: dict[str, str] | None = None, *, service: str = SERVICE, issuer: str = ISSUER,
                 anonymous_pull: bool = False, ttl: int = 300, policy: Policy | None = None) -> None:
        self.users = dict(users if users is not None else {USER: PASSWORD})
        self.service = service
        self.issuer = issuer
        self.anonymous_pull = anonymous_pull
        self.ttl = ttl
        self.policy = policy
        self.pki = pki()
        self.requests: list[dict[str, Any]] = []
        self.refresh_tokens: dict[str, str] = {}
        self.fail_times = 0
        self.fail_status = 500
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --
    @property
    def cert_path(self) -> Path:
        return self.pki.token_cert

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def start(self) -> TokenServer:
        if self._server is not None:
            return self
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                outer._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="token-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --
    def grant(self, user: str | None, typ: str, name: str, actions: list[str]) -> list[str]:
        if self.policy is not None:
            return list(self.policy(user, typ, name, actions))
        if user is not None:
            return list(actions)
        if self.anonymous_pull and typ == "repository":
            return [a for a in actions if a == "pull"]
        return []

    def make_token(self, user: str | None, scopes: list[str], *, ttl: int | None = None,
                   audience: str | None = None, issuer: str | None = None) -> str:
        """A signed JWT for ``scopes`` (also usable directly in tests, e.g. to make expired tokens with ttl<0)."""
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            typ, name, actions = parsed
            granted = self.grant(user, typ, name, actions)
            access.append({"type": typ, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": issuer or self.issuer, "sub": user or "", "aud": audience or self.service,
                  "exp": now + (self.ttl if ttl is None else ttl), "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(16), "access": access}
        header = {"typ": "JWT", "alg": "RS256", "kid": self.pki.token_kid}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}".encode()
        return signing_input.decode() + "." + _b64url(self.pki.sign_rs256(signing_input))

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if method == "POST":
            n = int(h.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(h.rfile.read(n).decode(), keep_blank_values=True)
            for k, v in form.items():
                params.setdefault(k, []).extend(v)
        rec: dict[str, Any] = {"method": method, "path": url.path, "params": params,
                               "authorization": h.headers.get("Authorization")}
        with self._lock:
            self.requests.append(rec)
            failing = self.fail_times > 0
            if failing:
                self.fail_times -= 1
        if failing:
            rec["status"] = self.fail_status
            return self._reply(h, self.fail_status, {"errors": [{"code": "UNAVAILABLE", "message": "injected"}]})
        if url.path != "/token":
            rec["status"] = 404
            return self._reply(h, 404, {"error": "not found"})

        def first(k: str) -> str | None:
            v = params.get(k)
            return v[0] if v else None

        scopes = [s for v in params.get("scope", []) for s in v.split(" ") if s]
        user: str | None = None
        refresh: str | None = None
        if method == "POST":
            grant_type = first("grant_type")
            if grant_type == "password":
                user = first("username")
                if user not in self.users or self.users[user] != first("password"):
                    rec["status"] = 401
                    return self._reply(h, 401, {"error": "invalid_grant"})
                refresh = secrets.token_hex(16)
            elif grant_type == "refresh_token":
                user = self.refresh_tokens.get(first("refresh_token") or "")
                if user is None:
                    rec["status"] = 401
                    return self._reply(h, 401, {"error": "invalid_grant"})
                refresh = first("refresh_token")
            else:
                rec["status"] = 400
                return self._reply(h, 400, {"error": "unsupported_grant_type"})
        else:
            authz = h.headers.get("Authorization") or ""
            if authz.lower().startswith("basic "):
                try:
                    u, _, p = base64.b64decode(authz[6:].strip()).decode().partition(":")
                except ValueError:
                    u, p = "", ""
                if u not in self.users or self.users[u] != p:
                    rec["status"] = 401
                    return self._reply(h, 401, {"details": "incorrect username or password"},
                                       {"WWW-Authenticate": 'Basic realm="token"'})
                user = u
                if first("offline_token") == "true":
                    refresh = secrets.token_hex(16)
        if first("service") not in (None, self.service):
            rec["status"] = 400
            return self._reply(h, 400, {"error": "invalid service"})
        token = self.make_token(user, scopes)
        rec.update(user=user, scopes=scopes, status=200,
                   granted=json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["access"])
        body: dict[str, Any] = {"token": token, "access_token": token, "expires_in": self.ttl,
                                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if refresh is not None:
            with self._lock:
                self.refresh_tokens[refresh] = user or ""
            body["refresh_token"] = refresh
        if method == "POST":
            body["scope"] = " ".join(scopes)
        self._reply(h, 200, body)


# -- the registry ------------------------------------------------------------------------------------------
_live_registries: weakref.WeakSet[Registry] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for r in list(_live_registries):
        with contextlib.suppress(Exception):
            r.stop(signal.SIGKILL)


class Registry:
    """``docker-registry serve`` on a free 127.0.0.1 port with its own storage dir.

    auth: None, "htpasswd" (bcrypt file with ``users``) or "token" (a ``TokenServer``, made and owned here
    unless one is passed).  tls=True serves HTTPS with a cert for 127.0.0.1/::1/localhost signed by the test CA
    (``ca_cert_path``); tls_client_auth=True also requires a client cert signed by that CA
    (``client_cert_path``/``client_key_path``).  ``stop()``/``start()`` restart on the same port and storage.
    """

    def __init__(self, base: Path | str | None = None, *, auth: str | None = None, tls: bool = False,
                 tls_client_auth: bool = False, users: dict[str, str] | None = None,
                 token_server: TokenServer | None = None, port: int | None = None,
                 extra_config: dict[str, Any] | None = None) -> None:
        if auth not in (None, "htpasswd", "token"):
            raise ValueError(f"auth must be None, 'htpasswd' or 'token', not {auth!r}")
        self._own_base = base is None
        self.base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="dw-registry-"))
        self.base.mkdir(parents=True, exist_ok=True)
        self.storage = self.base / "storage"
        self.config_path = self.base / "config.yml"
        self.log_path = self.base / "registry.log"
        self.auth = auth
        self.tls = tls or tls_client_auth
        self.tls_client_auth = tls_client_auth
        self.users = dict(users if users is not None else {USER: PASSWORD})
        self._port_given = port is not None
        self.port = port or free_port()
        self.extra_config = extra_config or {}
        self._own_token_server = auth == "token" and token_server is None
        self.token_server = token_server if token_server is not None else (
            TokenServer(self.users) if auth == "token" else None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pki = pki() if self.tls or auth == "token" else None

    # -- addresses and credentials --
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.auth is None:
            return None
        user = next(iter(self.users))
        return user, self.users[user]

    @property
    def ca_cert_path(self) -> Path | None:
        return self.pki.ca_cert if self.tls and self.pki else None

    @property
    def client_cert_path(self) -> Path | None:
        return self.pki.client_cert if self.tls_client_auth and self.pki else None

    @property
    def client_key_path(self) -> Path | None:
        return self.pki.client_key if self.tls_client_auth and self.pki else None

    def install_certs_d(self, certs_d: Path | str, host: str | None = None) -> Path:
        """Lay out ``certs_d/<host>/ca.crt`` (+ client.cert/client.key), as dockerd's /etc/docker/certs.d."""
        d = Path(certs_d) / (host or self.host)
        d.mkdir(parents=True, exist_ok=True)
        if self.ca_cert_path:
            shutil.copy(self.ca_cert_path, d / "ca.crt")
        if self.client_cert_path and self.client_key_path:
            shutil.copy(self.client_cert_path, d / "client.cert")
            shutil.copy(self.client_key_path, d / "client.key")
        return d

    def blob_path(self, digest: str) -> Path:
        """Where the registry stores a blob (to corrupt or delete it behind its back)."""
        algo, _, hexd = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"

    def client(self, *, auth: tuple[str, str] | None | bool = True) -> RegistryClient:
        """A plain-HTTP client for this registry (auth=True: use ``credentials``; None/False: anonymous)."""
        creds = self.credentials if auth is True else (auth or None)
        return RegistryClient(self, auth=creds)

    # -- process --
    def _config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": "dockwright-test-secret",
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.tls:
            assert self.pki is not None
            tls: dict[str, Any] = {"certificate": str(self.pki.server_cert), "key": str(self.pki.server_key)}
            if self.tls_client_auth:
                tls["clientcas"] = [str(self.pki.ca_cert)]
            cfg["http"]["tls"] = tls
        if self.auth == "htpasswd":
            path = self.base / "htpasswd"
            if not path.exists():
                write_htpasswd(path, self.users)
            cfg["auth"] = {"htpasswd": {"realm": "dockwright-test", "path": str(path)}}
        elif self.auth == "token":
            assert self.token_server is not None
            cfg["auth"] = {"token": {"realm": self.token_server.realm, "service": self.token_server.service,
                                     "issuer": self.token_server.issuer,
                                     "rootcertbundle": str(self.token_server.cert_path)}}
        _deep_update(cfg, self.extra_config)
        return cfg

    def start(self, timeout: float = 15.0) -> Registry:
        if not registry_available():
            raise RuntimeError(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.token_server is not None and self.token_server._server is None:
            self.token_server.start()
        if self.token_server is not None and self.token_server.port == self.port and not self._port_given:
            # the token server took the port free_port() had found for the registry (it was free until then):
            # the registry could not bind it, and requests would reach the token server (404 "not found")
            self.port = free_port()
        self.config_path.write_text(json.dumps(self._config(), indent=1))
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config_path)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        finally:
            log.close()
        _live_registries.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}:\n{self.log()}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"docker-registry did not answer /v2/ within {timeout}s:\n{self.log()}")

    def _answers(self) -> bool:
        """True once GET /v2/ gets any HTTP answer (200, or 401 with auth)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                sock: socket.socket = raw
                if self.tls:
                    assert self.pki is not None
                    ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
                    if self.tls_client_auth:
                        ctx.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
                    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    piece = sock.recv(4096)
                    if not piece:
                        break
                    head += piece
                # the registry itself (not another server on the port) says which API it speaks on /v2/
                return head.startswith(b"HTTP/1.") and b"docker-distribution-api-version" in head.lower()
        except (OSError, ssl.SSLError):
            return False

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Kill the registry (SIGKILL by default: an abrupt stop, open connections are reset). Storage stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        _live_registries.discard(self)

    def restart(self) -> Registry:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the registry (and its own token server); remove its dir if it made one."""
        self.stop()
        if self._own_token_server and self.token_server is not None:
            self.token_server.stop()
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Registry:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Registry {self.url} auth={self.auth} running={self.running}>"


def _deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


# -- fault proxy -------------------------------------------------------------------------------------------
class FaultProxy:
    """An HTTP proxy (in threads, own 127.0.0.1 port) in front of a registry, injecting faults into blob GETs.

    Each client connection carries one request: it is forwarded upstream with ``Connection: close`` and the
    response is streamed back with ``Connection: close`` (the Host header is kept, so the registry's upload
    Locations point at the proxy).  Faults apply to GET responses (200/206) whose path matches ``match``
    (default: ``/v2/<name>/blobs/<digest>``):

    - ``corrupt_blobs``: flip one byte in the middle of the body (Content-Length unchanged);
      ``corrupt_times`` N = only the first N matching responses (None = every time).
    - ``cut_after_bytes=N``: close the connection after N body bytes; ``cut_times`` as above.
    - ``delay_per_chunk``: sleep that long before each ``chunk_size`` body chunk (throttle).
    - ``error_status``: answer matching GETs with this status without asking upstream; ``error_times``.

    Counters (all reset by ``reset()``): ``body_bytes[path]`` body bytes written to clients for GETs (exact,
    cuts included; a write broken by ``disconnect_all()`` is not counted),
    ``blob_bytes`` (the same for blob paths only), ``ranges`` [(path, Range header)], ``requests``
    [(method, path, status)], ``connections``.  All settings may be changed while running.
    """

    def __init__(self, upstream: Registry | str, *, corrupt_blobs: bool = False, corrupt_times: int | None = None,
                 cut_after_bytes: int | None = None, cut_times: int | None = None, delay_per_chunk: float = 0.0,
                 chunk_size: int = 16384, error_status: int | None = None, error_times: int | None = None,
                 match: str | re.Pattern[str] = BLOB_PATH_RE) -> None:
        if isinstance(upstream, Registry):
            self.upstream_host, self.upstream_port = "127.0.0.1", upstream.port
            self.upstream_ssl: ssl.SSLContext | None = None
            if upstream.tls:
                assert upstream.pki is not None
                self.upstream_ssl = ssl.create_default_context(cafile=str(upstream.pki.ca_cert))
                if upstream.tls_client_auth:
                    self.upstream_ssl.load_cert_chain(str(upstream.pki.client_cert), str(upstream.pki.client_key))
        else:
            h, _, p = upstream.rpartition(":")
            self.upstream_host, self.upstream_port = h, int(p)
            self.upstream_ssl = None
        self.corrupt_blobs = corrupt_blobs
        self.corrupt_times = corrupt_times
        self.cut_after_bytes = cut_after_bytes
        self.cut_times = cut_times
        self.delay_per_chunk = delay_per_chunk
        self.chunk_size = chunk_size
        self.error_status = error_status
        self.error_times = error_times
        self.match = re.compile(match) if isinstance(match, str) else match
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.port = 0
        self.reset()

    # -- counters --
    def reset(self) -> None:
        with self._lock:
            self.body_bytes: dict[str, int] = {}
            self.ranges: list[tuple[str, str]] = []
            self.requests: list[tuple[str, str, int]] = []
            self.connections = 0
            self.corrupted = 0
            self.cuts = 0
            self.errors = 0

    @property
    def blob_bytes(self) -> dict[str, int]:
        with self._lock:
            return {p: n for p, n in self.body_bytes.items() if BLOB_PATH_RE.match(p)}

    def bytes_for(self, digest: str) -> int:
        """Body bytes sent for blob GETs of ``digest`` (any repository)."""
        return sum(n for p, n in self.blob_bytes.items() if p.endswith("/blobs/" + digest))

    def ranges_for(self, digest: str) -> list[str]:
        with self._lock:
            return [r for p, r in self.ranges if p.endswith("/blobs/" + digest)]

    # -- addresses and lifecycle --
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> FaultProxy:
        if self._listener is not None:
            return self
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.port = ls.getsockname()[1]
        self._listener = ls
        self._thread = threading.Thread(target=self._accept_loop, args=(ls,), name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        ls, self._listener = self._listener, None
        if ls is not None:
            with contextlib.suppress(OSError):
                ls.shutdown(socket.SHUT_RDWR)
            ls.close()
        self.disconnect_all()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def disconnect_all(self) -> int:
        """Reset every open client connection now (e.g. together with ``Registry.stop()``: a kill of the
        registry alone may not cut a download short, the kernel's socket buffers can hold the whole rest)."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self, ls: socket.socket) -> None:
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _take(self, attr: str) -> bool:
        """Consume one use of a limited fault (``<x>_times``); True if the fault applies now."""
        with self._lock:
            left = getattr(self, attr)
            if left is None:
                return True
            if left <= 0:
                return False
            setattr(self, attr, left - 1)
            return True

    # -- one connection, one request --
    def _serve(self, conn: socket.socket) -> None:
        up: socket.socket | None = None
        try:
            conn.settimeout(60)
            rd = conn.makefile("rb")
            head = _read_head(rd)
            if head is None:
                return
            request_line, headers = head
            method, target, _version = (request_line.split(" ", 2) + ["", ""])[:3]
            path = urllib.parse.urlsplit(target).path
            rng = _get_header(headers, "Range")
            if rng is not None:
                with self._lock:
                    self.ranges.append((path, rng))
            faulty = method == "GET" and bool(self.match.match(path))
            if _get_header(headers, "Expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if faulty and self.error_status is not None and self._take("error_times"):
                msg = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected by FaultProxy"}]})
                with self._lock:
                    self.errors += 1
                    self.requests.append((method, path, self.error_status))
                conn.sendall(f"HTTP/1.1 {self.error_status} Injected\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(msg)}\r\nConnection: close\r\n\r\n{msg}".encode())
                return
            fwd = [(k, v) for k, v in headers
                   if k.lower() not in ("connection", "keep-alive", "proxy-connection", "expect")]
            fwd.append(("Connection", "close"))
            if self.upstream_ssl is not None:
                fwd.append(("X-Forwarded-Proto", "http"))
            up = socket.create_connection((self.upstream_host, self.upstream_port), timeout=60)
            if self.upstream_ssl is not None:
                up = self.upstream_ssl.wrap_socket(up, server_hostname=self.upstream_host)
            up.sendall((request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fwd) + "\r\n").encode("latin-1"))
            _relay_request_body(rd, up, headers)
            urd = up.makefile("rb")
            rhead = _read_head(urd)
            if rhead is None:
                return
            status_line, rheaders = rhead
            status = int(status_line.split(" ", 2)[1])
            with self._lock:
                self.requests.append((method, path, status))
            out = [(k, v) for k, v in rheaders if k.lower() not in ("connection", "keep-alive")]
            out.append(("Connection", "close"))
            conn.sendall((status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in out) + "\r\n").encode("latin-1"))
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                return
            clen = _get_header(rheaders, "Content-Length")
            remaining = int(clen) if clen is not None and _get_header(rheaders, "Transfer-Encoding") is None else None
            faulty = faulty and status in (200, 206)
            corrupt_at = -1
            if faulty and self.corrupt_blobs and self._take("corrupt_times"):
                corrupt_at = (remaining or 1) // 2
            cut_at = None
            if faulty and self.cut_after_bytes is not None and self._take("cut_times"):
                cut_at = self.cut_after_bytes
            delay = self.delay_per_chunk if faulty else 0.0
            sent = 0
            while remaining is None or remaining > 0:
                want = self.chunk_size if remaining is None else min(self.chunk_size, remaining)
                chunk = urd.read1(want) if want else b""
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                if sent <= corrupt_at < sent + len(chunk):
                    b = bytearray(chunk)
                    b[corrupt_at - sent] ^= 0xFF
                    chunk = bytes(b)
                    with self._lock:
                        self.corrupted += 1
                if cut_at is not None and sent + len(chunk) >= cut_at:
                    chunk = chunk[:cut_at - sent]
                    if delay:
                        time.sleep(delay)
                    self._send(conn, method, path, chunk)
                    sent += len(chunk)
                    with self._lock:
                        self.cuts += 1
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
                    return
                if delay:
                    time.sleep(delay)
                self._send(conn, method, path, chunk)
                sent += len(chunk)
        except (OSError, ValueError, IndexError):
            pass
        finally:
            if up is not None:
                with contextlib.suppress(OSError):
                    up.close()
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.discard(conn)

    def _send(self, conn: socket.socket, method: str, path: str, chunk: bytes) -> None:
        """Count, then write (so a client that got the bytes never sees a stale counter); uncount on failure."""
        self._count(method, path, len(chunk))
        try:
            conn.sendall(chunk)
        except OSError:
            self._count(method, path, -len(chunk))
            raise

    def _count(self, method: str, path: str, n: int) -> None:
        if method == "GET":
            with self._lock:
                self.body_bytes[path] = self.body_bytes.get(path, 0) + n


def _read_head(rd: Any) -> tuple[str, list[tuple[str, str]]] | None:
    first = rd.readline(65537)
    if not first:
        return None
    lines: list[tuple[str, str]] = []
    while True:
        line = rd.readline(65537)
        if not line or line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode("latin-1").partition(":")
        lines.append((k.strip(), v.strip()))
    return first.decode("latin-1").rstrip("\r\n"), lines


def _get_header(headers: list[tuple[str, str]], name: str, default: str | None = None) -> Any:
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return default


def _relay_request_body(rd: Any, up: socket.socket, headers: list[tuple[str, str]]) -> None:
    te = (_get_header(headers, "Transfer-Encoding") or "").lower()
    if "chunked" in te:
        while True:
            size_line = rd.readline(65537)
            up.sendall(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    t = rd.readline(65537)
                    up.sendall(t)
                    if t in (b"\r\n", b"\n", b""):
                        return
            left = size + 2  # data + CRLF
            while left:
                b = rd.read(min(left, 65536))
                if not b:
                    return
                up.sendall(b)
                left -= len(b)
    n = int(_get_header(headers, "Content-Length") or 0)
    while n > 0:
        b = rd.read(min(n, 65536))
        if not b:
            return
        up.sendall(b)
        n -= len(b)


# -- a plain HTTP client with registry auth ------------------------------------------------------------------
def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in re.finditer(r'([A-Za-z_]+)=(?:"([^"]*)"|([^,\s]*))', rest)}
    return scheme.lower(), params


class RegistryClient:
    """requests.Session against a registry, answering Basic and Bearer (token server) challenges."""

    def __init__(self, registry: Registry | str, *, auth: tuple[str, str] | None = None,
                 verify: str | Path | bool | None = None) -> None:
        if isinstance(registry, Registry):
            self.base = registry.url
            if verify is None and registry.ca_cert_path is not None:
                verify = str(registry.ca_cert_path)
            cert = (str(registry.client_cert_path), str(registry.client_key_path)) \
                if registry.client_cert_path else None
        else:
            self.base = registry if "://" in registry else f"http://{registry}"
            cert = None
        self.base = self.base.rstrip("/")
        self.auth = auth
        self.session = requests.Session()
        # passed on every request: a Session's own verify loses to REQUESTS_CA_BUNDLE from the environment
        self.verify: str | bool = str(verify) if isinstance(verify, Path) else (True if verify is None else verify)
        self.cert = cert
        self._authz: dict[str, str] = {}  # scope -> Authorization header
        self.token_fetches = 0

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, *, scope: str | None = None, **kw: Any) -> requests.Response:
        url = path if "://" in path else self.base + path
        headers = dict(kw.pop("headers", None) or {})
        key = scope or ""
        if key in self._authz:
            headers["Authorization"] = self._authz[key]
        kw.setdefault("timeout", 60)
        kw.setdefault("verify", self.verify)
        kw.setdefault("cert", self.cert)
        r = self.session.request(method, url, headers=headers, **kw)
        if r.status_code == 401 and "WWW-Authenticate" in r.headers:
            authz = self._authorize(r.headers["WWW-Authenticate"], scope)
            if authz is not None:
                self._authz[key] = authz
                headers["Authorization"] = authz
                r = self.session.request(method, url, headers=headers, **kw)
        return r

    def _authorize(self, challenge: str, scope: str | None) -> str | None:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if self.auth is None:
                return None
            return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        if scheme == "bearer":
            query: dict[str, str] = {}
            if "service" in params:
                query["service"] = params["service"]
            want = params.get("scope") or scope
            if want:
                query["scope"] = want
            self.token_fetches += 1
            r = self.session.get(params["realm"], params=query, auth=self.auth, timeout=30, verify=self.verify)
            if r.status_code != 200:
                return None
            body = r.json()
            return "Bearer " + (body.get("token") or body["access_token"])
        return None

    def token(self, scope: str) -> str:
        """A bearer token for ``scope`` from the registry's token server (via the /v2/ challenge)."""
        r = self.session.get(self.base + "/v2/", timeout=30, verify=self.verify, cert=self.cert)
        authz = self._authorize(r.headers.get("WWW-Authenticate", ""), scope)
        if authz is None:
            raise RuntimeError(f"no token for {scope}: {r.status_code} {r.headers}")
        return authz.split(" ", 1)[1]

    # -- registry operations --
    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull,push")
        return r.status_code == 200

    def push_blob(self, repo: str, data: bytes, digest: str | None = None) -> str:
        digest = digest or sha256_digest(data)
        scope = f"repository:{repo}:pull,push"
        if self.blob_exists(repo, digest):
            return digest
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope)
        if r.status_code != 202:
            raise RuntimeError(f"start upload {repo}: {r.status_code} {r.text}")
        loc = urllib.parse.urljoin(self.base + "/", r.headers["Location"])
        sep = "&" if "?" in loc else "?"
        r = self.request("PUT", f"{loc}{sep}digest={urllib.parse.quote(digest)}", scope=scope, data=data,
                         headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            raise RuntimeError(f"upload {digest} to {repo}: {r.status_code} {r.text}")
        return digest

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        r = self.request("PUT", f"/v2/{repo}/manifests/{ref}", scope=f"repository:{repo}:pull,push", data=data,
                         headers={"Content-Type": media_type})
        if r.status_code != 201:
            raise RuntimeError(f"put manifest {repo}:{ref}: {r.status_code} {r.text}")
        return r.headers.get("Docker-Content-Digest") or sha256_digest(data)

    def get_manifest(self, repo: str, ref: str, accept: str = MANIFEST_ACCEPT) -> requests.Response:
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", scope=f"repository:{repo}:pull",
                            headers={"Accept": accept})

    def get_blob(self, repo: str, digest: str, **kw: Any) -> requests.Response:
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", **kw)


def _client(registry: Registry | str | RegistryClient, auth: tuple[str, str] | None,
            verify: str | Path | bool | None) -> RegistryClient:
    if isinstance(registry, RegistryClient):
        return registry
    if isinstance(registry, Registry) and auth is None:
        auth = registry.credentials
    return RegistryClient(registry, auth=auth, verify=verify)


# -- building and pushing test images ---------------------------------------------------------------------------
def tar_of(files: dict[str, bytes], *, mtime: int = 1700000000) -> bytes:
    """A small deterministic tar with ``files`` (parent dirs added)."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in files.items():
            parts = name.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.mtime = mtime
                    tf.addfile(ti)
            ti = tarfile.TarInfo("/".join(parts))
            ti.size = len(content)
            ti.mode = 0o644
            ti.mtime = mtime
            tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def compress(data: bytes, compression: str = "gzip") -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def parse_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    out = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else "amd64"}
    if len(parts) > 2 and parts[2]:
        out["variant"] = parts[2]
    return out


def make_image(layers: list[bytes], config: dict[str, Any] | None = None, *, media: str = "docker",
               platform: str | None = None, compression: str = "gzip") -> dict[str, Any]:
    """Build (without pushing) blobs + config + manifest; see ``push_image`` for the result's keys."""
    if media not in ("docker", "oci"):
        raise ValueError("media must be 'docker' or 'oci'")
    if media == "docker" and compression != "gzip":
        raise ValueError("docker media type layers are gzip; use media='oci' for zstd/none")
    blobs = [compress(t, compression) for t in layers]
    diff_ids = [sha256_digest(t) for t in layers]
    cfg: dict[str, Any] = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
    }
    if platform is not None:
        cfg.update(parse_platform(platform))
    cfg.update(config or {})
    cfg.setdefault("rootfs", {"type": "layers", "diff_ids": diff_ids})
    cfg.setdefault("history", [{"created": cfg["created"], "created_by": f"test layer {i}"}
                               for i in range(len(layers))])
    config_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    if media == "docker":
        mt, cmt, lmt = DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP
    else:
        mt, cmt = OCI_MANIFEST, OCI_CONFIG
        lmt = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}[compression]
    manifest = {
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cmt, "size": len(config_bytes), "digest": sha256_digest(config_bytes)},
        "layers": [{"mediaType": lmt, "size": len(b), "digest": sha256_digest(b)} for b in blobs],
    }
    manifest_bytes = json.dumps(manifest, indent=3).encode()
    return {
        "manifest_digest": sha256_digest(manifest_bytes), "manifest": manifest, "manifest_bytes": manifest_bytes,
        "media_type": mt, "size": len(manifest_bytes),
        "config_digest": sha256_digest(config_bytes), "config": cfg, "config_bytes": config_bytes,
        "layer_digests": [sha256_digest(b) for b in blobs], "layer_sizes": [len(b) for b in blobs],
        "layer_blobs": blobs, "diff_ids": diff_ids,
    }


def push_image(registry: Registry | str | RegistryClient, repo: str, tag: str | None,
               layers: list[bytes], config: dict[str, Any] | None = None, *, media: str = "docker",
               auth: tuple[str, str] | None = None, platform: str | None = None, compression: str = "gzip",
               verify: str | Path | bool | None = None) -> dict[str, Any]:
    """Push an image made of ``layers`` (uncompressed tars) with plain HTTP; tag=None pushes by digest only.

    ``registry``: a Registry (its credentials and CA are used), a URL/host, or a RegistryClient.
    Returns a dict: manifest_digest, manifest, manifest_bytes, media_type, size, config_digest, config,
    config_bytes, layer_digests, layer_sizes, layer_blobs (compressed), diff_ids, repo, tag, reference
    (host/repo:tag or host/repo@digest).
    """
    img = make_image(layers, config, media=media, platform=platform, compression=compression)
    c = _client(registry, auth, verify)
    for blob in img["layer_blobs"]:
        c.push_blob(repo, blob)
    c.push_blob(repo, img["config_bytes"])
    c.put_manifest(repo, tag or img["manifest_digest"], img["manifest_bytes"], img["media_type"])
    host = urllib.parse.urlsplit(c.base).netloc
    img.update(repo=repo, tag=tag,
               reference=f"{host}/{repo}:{tag}" if tag else f"{host}/{repo}@{img['manifest_digest']}")
    return img


def push_index(registry: Registry | str | RegistryClient, repo: str, tag: str | None,
               manifests: dict[str, str], *, media: str = "oci", auth: tuple[str, str] | None = None,
               verify: str | Path | bool | None = None) -> dict[str, Any]:
    """Push a multi-platform index/list over already pushed manifests ({"linux/arm64/v8": digest}).

    Returns {index_digest, index, index_bytes, media_type, size, repo, tag, reference}.
    """
    c = _client(registry, auth, verify)
    descs = []
    for platform, digest in manifests.items():
        r = c.get_manifest(repo, digest)
        if r.status_code != 200:
            raise RuntimeError(f"manifest {repo}@{digest}: {r.status_code} {r.text}")
        descs.append({"mediaType": r.headers["Content-Type"].split(";")[0], "size": len(r.content),
                      "digest": digest, "platform": parse_platform(platform)})
    mt = OCI_INDEX if media == "oci" else DOCKER_MANIFEST_LIST
    index = {"schemaVersion": 2, "mediaType": mt, "manifests": descs}
    data = json.dumps(index, indent=3).encode()
    digest = sha256_digest(data)
    c.put_manifest(repo, tag or digest, data, mt)
    host = urllib.parse.urlsplit(c.base).netloc
    return {"index_digest": digest, "index": index, "index_bytes": data, "media_type": mt, "size": len(data),
            "repo": repo, "tag": tag, "reference": f"{host}/{repo}:{tag}" if tag else f"{host}/{repo}@{digest}"}


def push_multiplatform(registry: Registry | str | RegistryClient, repo: str, tag: str | None,
                       platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"), *, media: str = "oci",
                       auth: tuple[str, str] | None = None,
                       verify: str | Path | bool | None = None) -> dict[str, Any]:
    """One small image per platform (file /platform says which), pushed by digest, then an index tagged ``tag``.

    Returns push_index's dict plus ``images``: {platform: push_image result}.
    """
    c = _client(registry, auth, verify)
    images = {}
    for p in platforms:
        images[p] = push_image(c, repo, None, [tar_of({"platform": p.encode() + b"\n"})], platform=p, media=media)
    out = push_index(c, repo, tag, {p: img["manifest_digest"] for p, img in images.items()}, media=media)
    out["images"] = images
    return out


def busybox_image(registry: Registry | str | RegistryClient, repo: str = "library/busybox", tag: str = "latest",
                  **kw: Any) -> dict[str, Any]:
    """Push a runnable one-layer busybox image (needs conftest.make_rootfs_tar and /bin/busybox)."""
    from conftest import make_rootfs_tar
    return push_image(registry, repo, tag, [make_rootfs_tar()], **kw)


# -- pytest fixtures (import them into a test module, or list this module in a root conftest's pytest_plugins) --
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    _require_registry()
    with Registry(tmp_path / "registry") as r:
        yield r


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    _require_registry()
    with Registry(tmp_path / "auth-registry", auth="htpasswd") as r:
        yield r


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    _require_registry()
    with Registry(tmp_path / "tls-registry", tls=True) as r:
        yield r


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry with ``auth: token``; its TokenServer is ``.token_server``."""
    _require_registry()
    with Registry(tmp_path / "token-registry", auth="token") as r:
        yield r


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _require_registry()
    with Registry(tmp_path_factory.mktemp("shared-registry")) as r:
        yield r


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A FaultProxy (no faults set yet) in front of the ``registry`` fixture."""
    with FaultProxy(registry) as p:
        yield p
