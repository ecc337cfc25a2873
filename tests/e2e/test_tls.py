"""The API over TCP with TLS, as dockerd's ``--tls``, ``--tlsverify``, ``--tlscacert``, ``--tlscert``, ``--tlskey``
(and the daemon.json keys of the same names): the real docker CLI and docker-py as clients, certificates made with
openssl (tests/registry.py's PKI). Only 127.0.0.1 is bound; the decision about the warnings for other addresses
(and dockerd's fifteen-second delay) is tested on the function that makes it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.tls
import pytest
import requests.exceptions

from dockwright.cli.config import TLSSettings, resolve_tls
from dockwright.cli.serve import insecure_tcp_warnings

from conftest import DOCKER, Daemon, small_tar
from registry import PKI, pki

INSECURE = ("Binding to IP address without --tlsverify is insecure and gives root access on this machine to "
            "everyone who has access to your network.")
SLOWED = "Startup is intentionally being slowed down"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, timeout: float = 20.0) -> None:
    """The unix socket comes first (Daemon.start waits for it); the TCP listener follows."""
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def tls_daemon(base: Path, port: int, *flags: str, daemon_json: dict[str, Any] | None = None) -> Daemon:
    d = Daemon(base, "-H", f"tcp://127.0.0.1:{port}", *flags)
    if daemon_json is not None:
        base.mkdir(parents=True, exist_ok=True)
        (base / "daemon.json").write_text(json.dumps(daemon_json))
    d.start()
    wait_tcp(port)
    return d


def server_flags(p: PKI, *first: str) -> tuple[str, ...]:
    return (*first, "--tlscacert", str(p.ca_cert), "--tlscert", str(p.server_cert), "--tlskey", str(p.server_key))


def cli(d: Daemon, port: int, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The docker CLI against tcp://127.0.0.1:port (``args`` start with the CLI's global TLS flags)."""
    if DOCKER is None:
        pytest.skip("no docker CLI")
    env = {**os.environ, "DOCKER_CONFIG": str(d.docker_config), "DOCKER_CLI_HINTS": "false"}
    for k in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(k, None)
    return subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{port}", *args], input=input, capture_output=True,
                          env=env, timeout=60)


def client_flags(p: PKI, *, cert: bool = True) -> list[str]:
    flags = ["--tlsverify", "--tlscacert", str(p.ca_cert)]
    if cert:
        flags += ["--tlscert", str(p.client_cert), "--tlskey", str(p.client_key)]
    return flags


def serve_fails(tmp_path: Path, *args: str, daemon_json: dict[str, Any] | None = None,
                env: dict[str, str] | None = None) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps(daemon_json or {}))
    p = subprocess.run([sys.executable, "-m", "dockwright.cli.main", "serve", "-H", f"unix://{tmp_path}/s.sock",
                        "--data-root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "exec"),
                        "--config-file", str(cfg), *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 1, p.stderr
    assert not (tmp_path / "root").exists() and not (tmp_path / "s.sock").exists()  # refused before anything
    return p.stderr


# ---- --tlsverify -------------------------------------------------------------------------------------------

def test_tlsverify_with_the_docker_cli(tmp_path: Path) -> None:
    p, port = pki(), free_port()
    d = tls_daemon(tmp_path / "d", port, *server_flags(p, "--tlsverify"))
    try:
        ok = cli(d, port, *client_flags(p), "version", "--format", "{{.Server.Version}}")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.decode().strip() == d.out("version", "--format", "{{.Server.Version}}")
        imported = cli(d, port, *client_flags(p), "import", "-", "over/tls:1", input=small_tar({"f": b"x"}))
        assert imported.returncode == 0, imported.stderr
        assert d.out("images", "--format", "{{.Repository}}:{{.Tag}}") == "over/tls:1"

        no_cert = cli(d, port, *client_flags(p, cert=False), "version")
        assert no_cert.returncode != 0
        assert b"certificate required" in no_cert.stderr, no_cert.stderr

        other = PKI(tmp_path / "other-ca")  # a client certificate from a CA the daemon does not trust
        wrong = cli(d, port, "--tlsverify", "--tlscacert", str(p.ca_cert), "--tlscert", str(other.client_cert),
                    "--tlskey", str(other.client_key), "version")
        assert wrong.returncode != 0 and b"unknown certificate authority" in wrong.stderr, wrong.stderr

        plain = cli(d, port, "version")
        assert plain.returncode != 0
        assert b"Client sent an HTTP request to an HTTPS server." in plain.stderr, plain.stderr
        assert INSECURE not in d.log()  # client certificates verified: no warning
    finally:
        d.stop()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")  # offering TLS 1.0/1.1 on purpose
def test_tlsverify_with_docker_py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override docker-py's per-client CA (requests issue #3829)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    p, port = pki(), free_port()
    d = tls_daemon(tmp_path / "d", port, *server_flags(p, "--tlsverify"))
    try:
        tls = docker.tls.TLSConfig(client_cert=(str(p.client_cert), str(p.client_key)), ca_cert=str(p.ca_cert),
                                   verify=True)
        c = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls, version="auto", timeout=30)
        assert c.version()["Version"] == d.client().version()["Version"]
        assert c.ping() is True
        c.api.import_image_from_data(small_tar({"f": b"y"}), repository="py/tls", tag="1")
        assert [t for i in c.images.list() for t in i.tags] == ["py/tls:1"]
        c.close()

        without = docker.tls.TLSConfig(ca_cert=str(p.ca_cert), verify=True)
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            docker.APIClient(base_url=f"https://127.0.0.1:{port}", tls=without, version="1.51", timeout=10).ping()

        # the protocol floor is TLS 1.2 (go-connections' tlsconfig.ServerDefault)
        ctx = ssl.create_default_context(cafile=str(p.ca_cert))
        ctx.load_cert_chain(str(p.client_cert), str(p.client_key))
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError, match="(?i)protocol version"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                ctx.wrap_socket(raw, server_hostname="127.0.0.1").close()
        ctx = ssl.create_default_context(cafile=str(p.ca_cert))
        ctx.load_cert_chain(str(p.client_cert), str(p.client_key))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                assert s.version() in ("TLSv1.2", "TLSv1.3") and s.selected_alpn_protocol() in (None, "http/1.1")
    finally:
        d.stop()


def test_tls_alone_verifies_clients_unless_tlsverify_false(tmp_path: Path) -> None:
    """dockerd: ``--tls`` enables verification unless ``--tlsverify=false`` says otherwise."""
    p, port = pki(), free_port()
    d = tls_daemon(tmp_path / "d", port, *server_flags(p, "--tls"))
    try:
        assert cli(d, port, *client_flags(p), "version").returncode == 0
        assert b"certificate required" in cli(d, port, *client_flags(p, cert=False), "version").stderr
    finally:
        d.stop()
    port = free_port()
    d = tls_daemon(tmp_path / "e", port, *server_flags(p, "--tls", "--tlsverify=false"))
    try:
        ok = cli(d, port, *client_flags(p, cert=False), "version", "--format", "{{.Server.Version}}")
        assert ok.returncode == 0, ok.stderr  # TLS (the CLI verifies the server), no client certificate needed
        assert b"Client sent an HTTP request" in cli(d, port, "version").stderr
        log = d.log()
        assert INSECURE in log and f'host="tcp://127.0.0.1:{port}"' in log  # TLS without client auth: warned
        assert SLOWED not in log  # explicitly asked for (and loopback anyway)
    finally:
        d.stop()


def test_default_certificate_files_from_docker_cert_path(tmp_path: Path) -> None:
    """Without --tlscacert/--tlscert/--tlskey, dockerd reads ca.pem, cert.pem and key.pem from $DOCKER_CERT_PATH
    (else $DOCKER_CONFIG, else ~/.docker); a missing cert.pem/key.pem leaves the name empty."""
    p = pki()
    empty = tmp_path / "empty"
    empty.mkdir()
    err = serve_fails(tmp_path / "a", "--tlsverify", env={"DOCKER_CERT_PATH": str(empty)})
    assert 'invalid TLS configuration: could not load X509 key pair (cert: "", key: ""): ' \
           "open : no such file or directory" in err
    certs = tmp_path / "certs"
    certs.mkdir()
    for src, name in ((p.ca_cert, "ca.pem"), (p.server_cert, "cert.pem"), (p.server_key, "key.pem")):
        shutil.copy(src, certs / name)
    port = free_port()
    old = os.environ.get("DOCKER_CERT_PATH")
    os.environ["DOCKER_CERT_PATH"] = str(certs)  # the daemon subprocess inherits it
    try:
        d = tls_daemon(tmp_path / "d", port, "--tlsverify")
    finally:
        if old is None:
            del os.environ["DOCKER_CERT_PATH"]
        else:
            os.environ["DOCKER_CERT_PATH"] = old
    try:
        assert cli(d, port, *client_flags(p), "version").returncode == 0
        assert b"certificate required" in cli(d, port, *client_flags(p, cert=False), "version").stderr
    finally:
        d.stop()


def test_tlsverify_with_missing_files_refuses_to_start(tmp_path: Path) -> None:
    p = pki()
    err = serve_fails(tmp_path / "a", "--tlsverify", "--tlscacert", str(p.ca_cert), "--tlscert",
                      str(tmp_path / "nope.pem"), "--tlskey", str(p.server_key))
    assert (f'dockwright: invalid TLS configuration: could not load X509 key pair (cert: "{tmp_path}/nope.pem", '
            f'key: "{p.server_key}"): open {tmp_path}/nope.pem: no such file or directory') in err
    err = serve_fails(tmp_path / "b", "--tlsverify", "--tlscacert", str(tmp_path / "ca.pem"), "--tlscert",
                      str(p.server_cert), "--tlskey", str(p.server_key))
    assert (f'invalid TLS configuration: could not read CA certificate "{tmp_path}/ca.pem": '
            f"open {tmp_path}/ca.pem: no such file or directory") in err
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    err = serve_fails(tmp_path / "c", "--tlsverify", "--tlscacert", str(bad), "--tlscert", str(p.server_cert),
                      "--tlskey", str(p.server_key))
    assert f'invalid TLS configuration: failed to append certificates from PEM file: "{bad}"' in err
    err = serve_fails(tmp_path / "d", "--tlsverify", "--tlscacert", str(p.ca_cert), "--tlscert",
                      str(p.server_cert), "--tlskey", str(p.client_key))  # a key that does not match
    assert "invalid TLS configuration: error reading X509 key pair" in err


# ---- daemon.json ---------------------------------------------------------------------------------------------

def test_daemon_json_tlsverify_is_honoured(tmp_path: Path) -> None:
    p, port = pki(), free_port()
    d = tls_daemon(tmp_path / "d", port, daemon_json={
        "tlsverify": True, "tlscacert": str(p.ca_cert), "tlscert": str(p.server_cert), "tlskey": str(p.server_key)})
    try:
        ok = cli(d, port, *client_flags(p), "version", "--format", "{{.Server.Version}}")
        assert ok.returncode == 0, ok.stderr
        assert b"certificate required" in cli(d, port, *client_flags(p, cert=False), "version").stderr
        assert b"Client sent an HTTP request" in cli(d, port, "version").stderr
    finally:
        d.stop()
    # asked for in daemon.json without its files: refused (dockerd does not look in ~/.docker for these)
    err = serve_fails(tmp_path / "e", "-H", f"tcp://127.0.0.1:{free_port()}", daemon_json={"tlsverify": True})
    assert 'invalid TLS configuration: could not load X509 key pair (cert: "", key: "")' in err


def test_tls_flag_and_daemon_json_conflict(tmp_path: Path) -> None:
    p = pki()
    err = serve_fails(tmp_path / "a", *server_flags(p, "--tlsverify"), daemon_json={"tlsverify": True})
    assert ("the following directives are specified both as a flag and in the configuration file: "
            "tlsverify: (from flag: true, from file: true)") in err
    err = serve_fails(tmp_path / "b", "--tlsverify", "--tlscert", str(p.server_cert),
                      daemon_json={"tlscert": "/elsewhere/cert.pem"})
    assert f"tlscert: (from flag: {p.server_cert}, from file: /elsewhere/cert.pem)" in err
    err = serve_fails(tmp_path / "c", daemon_json={"tlsverify": "yes"})
    assert "cannot unmarshal string into Go struct field Config.tlsverify of type bool" in err


# ---- plain TCP ------------------------------------------------------------------------------------------------

def test_plain_tcp_on_loopback_warns_but_is_not_slowed_down(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    d = tls_daemon(tmp_path / "d", port)
    try:
        assert time.monotonic() - started < 10  # dockerd's 1 s, not its 15 s more
        ok = cli(d, port, "version", "--format", "{{.Server.Version}}")
        assert ok.returncode == 0, ok.stderr
        log = d.log()
        assert f'{INSECURE} host="tcp://127.0.0.1:{port}"' in log
        assert "Binding to an IP address, even on localhost, can also give access to scripts run in a browser." in log
        assert SLOWED not in log
    finally:
        d.stop()


def test_insecure_tcp_warnings_decision() -> None:
    """dockerd 28's loadListeners: which addresses get which warnings and how long start-up waits."""
    none = TLSSettings()  # neither tls nor tlsverify given
    msgs, delay = insecure_tcp_warnings("0.0.0.0", 2375, none)
    assert delay == 16.0 and len(msgs) == 7
    assert msgs[0] == f'{INSECURE} host="tcp://0.0.0.0:2375"'
    assert any(SLOWED in m for m in msgs)
    assert "You can override this by explicitly specifying '--tls=false' or '--tlsverify=false' " \
           'host="tcp://0.0.0.0:2375"' in msgs
    assert insecure_tcp_warnings("192.0.2.10", 2375, none)[1] == 16.0
    assert insecure_tcp_warnings("::", 2375, none)[0][0].endswith('host="tcp://[::]:2375"')
    for loopback in ("127.0.0.1", "127.8.9.10", "::1", "localhost"):
        msgs, delay = insecure_tcp_warnings(loopback, 2375, none)
        assert delay == 1.0 and len(msgs) == 3 and not any(SLOWED in m for m in msgs), loopback
    explicit = [TLSSettings(tls=False), TLSSettings(tls=True, verify=False, cert="c", key="k")]
    for t in explicit:  # an explicit choice: the three warnings and one second only
        msgs, delay = insecure_tcp_warnings("0.0.0.0", 2375, t)
        assert delay == 1.0 and len(msgs) == 3
    assert insecure_tcp_warnings("0.0.0.0", 2376, TLSSettings(tls=True, verify=True)) == ([], 0.0)


def test_tls_settings_resolution() -> None:
    """dockerd's flag and daemon.json rules (cmd/dockerd options.go, daemon.go)."""
    files = {"tlscacert": "/c/ca.pem", "tlscert": "/c/cert.pem", "tlskey": "/c/key.pem"}
    assert resolve_tls(None, None, None, None, None, {}) == (TLSSettings(), None)
    t, _ = resolve_tls(True, None, "/ca", "/cert", "/key", {})
    assert (t.tls, t.verify, t.client_auth) == (True, True, True)  # --tls implies verification
    t, _ = resolve_tls(True, False, "/ca", "/cert", "/key", {})
    assert (t.tls, t.verify, t.client_auth) == (True, False, False)
    t, _ = resolve_tls(None, True, "/ca", "/cert", "/key", {})
    assert (t.tls, t.verify, t.cacert, t.cert, t.key) == (True, True, "/ca", "/cert", "/key")
    t, hosts_tls = resolve_tls(None, None, None, None, None, {"tlsverify": False, **files})
    assert (t.tls, t.verify, t.client_auth, hosts_tls) == (True, False, False, None)  # tlsverify turns TLS on
    t, _ = resolve_tls(None, None, None, None, None, {"tls": True, **files})
    assert (t.tls, t.verify, t.cert) == (True, True, "/c/cert.pem")
    t, _ = resolve_tls(None, None, "/flag/ca", None, None, {"tlsverify": True})
    assert (t.cacert, t.cert, t.key) == ("", "", "")  # file paths given as flags count only with a TLS flag
    t, _ = resolve_tls(False, None, None, None, None, {})
    assert (t.tls, t.verify, t.auth_ok()) == (False, False, True)
