"""``dockwright`` command line: ``serve`` with dockerd's flags and daemon.json keys, ``fsck`` for a stopped store."""

from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["main", "parse_host", "load_daemon_json", "TLSSettings", "resolve_tls", "server_tls_context",
           "insecure_tcp_warnings", "socket_gid"]

log = logging.getLogger("dockwright")

DEFAULT_SOCKET = "unix:///run/dockwright.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockwright"
DEFAULT_EXEC_ROOT = "/run/dockwright"
DEFAULT_CONFIG_FILE = "/etc/dockwright/daemon.json"
DEFAULT_TLS_HOST = "tcp://localhost:2376"  # dockerd's opts.DefaultTLSHost: -H unset and TLS on
DEFAULT_SOCKET_GROUP = "docker"  # dockerd's -G default; a missing "docker" group is only a warning

# the default bridge network: daemon.json key → (flag attribute, JSON type) as dockerd's Config fields
NETWORK_KEYS: dict[str, tuple[str, type]] = {
    "bridge": ("bridge", str), "bip": ("bip", str), "fixed-cidr": ("fixed_cidr", str), "mtu": ("mtu", int),
    "default-address-pools": ("default_address_pool", list), "iptables": ("iptables", bool),
    "ip-masq": ("ip_masq", bool), "ip-forward": ("ip_forward", bool), "icc": ("icc", bool),
    "userland-proxy": ("userland_proxy", bool), "ip": ("ip", str), "dns": ("dns", list),
    "dns-search": ("dns_search", list), "dns-opts": ("dns_opt", list), "host-gateway-ip": ("host_gateway_ip", str),
}
# daemon.json keys dockwright uses (dockerd's names)
KNOWN_KEYS = {"hosts", "data-root", "exec-root", "registry-mirrors", "insecure-registries",
              "max-concurrent-downloads", "max-concurrent-uploads", "log-level", "pidfile", "debug",
              "experimental", "labels", "registry-mirrors-by-host", "group", "tls", "tlsverify", "tlscacert",
              "tlscert", "tlskey", *NETWORK_KEYS}
# dockerd keys accepted without effect (no warning: they describe things dockwright does not have)
IGNORED_KEYS = {"storage-driver", "storage-opts", "ip6tables", "log-driver",
                "log-opts", "live-restore", "features", "builder", "default-runtime", "runtimes",
                "containerd", "userland-proxy-path",
                "cgroup-parent", "exec-opts", "default-ulimits", "ipv6", "fixed-cidr-v6",
                "seccomp-profile", "selinux-enabled", "userns-remap", "max-download-attempts", "shutdown-timeout",
                "debug-key"}
# the JSON type of the daemon.json keys whose type dockwright checks (dockerd's Config field types)
_KEY_TYPES: dict[str, type] = {"tls": bool, "tlsverify": bool, "tlscacert": str, "tlscert": str, "tlskey": str,
                               "group": str, **{k: t for k, (_, t) in NETWORK_KEYS.items()}}


_GO_TYPES = {bool: "bool", str: "string", int: "int", list: "[]string"}


class ConfigError(Exception):
    pass


def parse_host(h: str) -> tuple[str, Any]:
    """``unix://PATH`` → ("unix", path); ``tcp://HOST:PORT`` → ("tcp", (host, port))."""
    if h.startswith("unix://"):
        path = h[len("unix://"):] or "/run/dockwright.sock"
        return "unix", path
    if h.startswith("tcp://") or h.startswith("http://"):
        # dockerd's opts.ParseTCPAddr: a missing host is localhost, a missing port 2375 (also with TLS)
        rest = h.split("://", 1)[1].rstrip("/")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]")
            port = port[1:] if port.startswith(":") else ""
        elif rest.count(":") == 1 or ":" not in rest:
            host, _, port = rest.partition(":")
        else:
            raise ConfigError(f"invalid bind address format: {h}")
        port = port or "2375"
        if not port.isdigit() or int(port) == 0 or int(port) > 65535:
            raise ConfigError(f"invalid bind address ({h}): invalid port: {port}")
        return "tcp", (host or "localhost", int(port))
    if h.startswith("/"):
        return "unix", h
    raise ConfigError(f"invalid bind address format: {h} (use unix://PATH or tcp://HOST:PORT)")


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def load_daemon_json(path: str, explicit: bool) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        if explicit:
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: open {path}: "
                              "no such file or directory")
        return {}
    try:
        data = json.loads(p.read_text() or "{}")
    except ValueError as exc:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: not a JSON object")
    for key, want in _KEY_TYPES.items():
        if data.get(key) is None:
            data.pop(key, None)  # JSON null leaves a Go field unset
        elif not isinstance(data[key], want):
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: json: cannot unmarshal "
                              f"{_json_type(data[key])} into Go struct field Config.{key} of type "
                              f"{_GO_TYPES[want]}")
    unknown = sorted(k for k in data if k not in KNOWN_KEYS and k not in IGNORED_KEYS)
    if unknown:
        log.warning("%s: ignoring unknown configuration keys: %s", path, ", ".join(unknown))
    return data


def _parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``, which pflag applies to ``--tls=false`` / ``--tlsverify=false``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockwright", description="The image service of the Docker Engine.")
    p.add_argument("--version", action="version", version=f"dockwright {__version__}")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the daemon (Docker Engine API)")
    s.add_argument("-H", "--host", action="append", default=None, help="unix://PATH or tcp://HOST:PORT (repeatable)")
    s.add_argument("-G", "--group", default=None,
                   help=f"group for the unix socket (default {DEFAULT_SOCKET_GROUP!r}, when that group exists)")
    s.add_argument("--tls", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="use TLS; implied by --tlsverify")
    s.add_argument("--tlsverify", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="use TLS and verify the remote (client certificates signed by --tlscacert)")
    s.add_argument("--tlscacert", default=None, help="trust certs signed only by this CA (default ~/.docker/ca.pem)")
    s.add_argument("--tlscert", default=None, help="path to TLS certificate file (default ~/.docker/cert.pem)")
    s.add_argument("--tlskey", default=None, help="path to TLS key file (default ~/.docker/key.pem)")
    s.add_argument("--data-root", default=None)
    s.add_argument("--exec-root", default=None)
    s.add_argument("--config-file", default=None)
    s.add_argument("--registry-mirror", action="append", default=None)
    s.add_argument("--insecure-registry", action="append", default=None)
    s.add_argument("--max-concurrent-downloads", type=int, default=None)
    s.add_argument("--max-concurrent-uploads", type=int, default=None)
    s.add_argument("--log-level", default=None, choices=["debug", "info", "warn", "error", "fatal"])
    s.add_argument("-D", "--debug", action="store_true", default=None)
    s.add_argument("--pidfile", default=None)
    s.add_argument("--experimental", action="store_true", default=None)
    s.add_argument("--no-fsync", action="store_true", help="do not fsync blobs (tests, tmpfs)")
    s.add_argument("--runtime", default=None, help="OCI runtime binary for containers (default: runc)")
    n = s.add_argument_group("networking (the default bridge network, as dockerd's flags)")
    n.add_argument("-b", "--bridge", default=None,
                   help="attach containers to this existing bridge; 'none' disables the bridge network "
                        "(default: dockwright0, created by the daemon)")
    n.add_argument("--bip", default=None, help="the bridge's address and subnet, e.g. 172.17.0.1/16")
    n.add_argument("--fixed-cidr", default=None, help="allocate container addresses from this range")
    n.add_argument("--mtu", type=int, default=None, help="MTU of the bridge and the containers' interfaces")
    n.add_argument("--default-address-pool", action="append", default=None, metavar="base=CIDR,size=N",
                   help="pools the bridge's subnet is chosen from (repeatable)")
    n.add_argument("--iptables", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="install packet-filter rules: NAT, forwarding, published ports (default true)")
    n.add_argument("--ip-masq", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="masquerade the bridge's traffic to other networks (default true)")
    n.add_argument("--ip-forward", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="enable net.ipv4.ip_forward (default true)")
    n.add_argument("--icc", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="allow traffic between containers (default true)")
    n.add_argument("--userland-proxy", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="proxy published ports for loopback clients (default true)")
    n.add_argument("--ip", default=None, help="default host address of published ports (default 0.0.0.0)")
    n.add_argument("--dns", action="append", default=None, help="DNS server for containers (repeatable)")
    n.add_argument("--dns-search", action="append", default=None, help="DNS search domain (repeatable)")
    n.add_argument("--dns-opt", action="append", default=None, help="DNS option (repeatable)")
    n.add_argument("--host-gateway-ip", default=None,
                   help="the address 'host-gateway' stands for in --add-host (default: the bridge's gateway)")
    f = sub.add_parser("fsck", help="check a data root (daemon stopped) and remove what a crash left behind")
    f.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    f.add_argument("--dry-run", action="store_true", help="report only")
    return p


def _setup_logging(level: str) -> None:
    lv = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
          "fatal": logging.CRITICAL}.get(level, logging.INFO)
    logging.basicConfig(level=lv, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
                        force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if lv > logging.DEBUG else logging.DEBUG)


def _gofmt(v: Any) -> str:
    """A value as Go's ``%v`` prints it (dockerd's flag/file conflict message)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt(x) for x in v) + "]"
    return str(v)


# ---- TLS (dockerd's cmd/dockerd options.go setDefaultOptions, daemon.go loadDaemonCliConfig) ------------------

@dataclass(frozen=True)
class TLSSettings:
    """The API's TLS as dockerd resolves it. ``tls`` and ``verify`` stay None when neither a flag nor daemon.json
    mentions them, which is what decides the louder insecure-TCP warnings."""

    tls: bool | None = None
    verify: bool | None = None
    cacert: str = ""
    cert: str = ""
    key: str = ""

    @property
    def client_auth(self) -> bool:
        """TLS that requires and verifies a client certificate (dockerd's RequireAndVerifyClientCert)."""
        return bool(self.tls) and self.verify is not False

    def auth_ok(self) -> bool:
        """dockerd's checkTLSAuthOK: TCP without client auth was explicitly asked for (``--tls=false``,
        ``--tlsverify=false``), rather than left to the default."""
        if self.tls is None:
            return False  # dockerd's DefaultTLSValue
        return (not self.tls) or self.verify is not None


def default_cert_dir() -> str:
    """dockerd's default directory for ca.pem, cert.pem and key.pem: $DOCKER_CERT_PATH, else $DOCKER_CONFIG, else
    ~/.docker."""
    return (os.environ.get("DOCKER_CERT_PATH") or os.environ.get("DOCKER_CONFIG")
            or os.path.join(os.path.expanduser("~"), ".docker"))


def resolve_tls(tls: bool | None, tlsverify: bool | None, tlscacert: str | None, tlscert: str | None,
                tlskey: str | None, conf: dict[str, Any]) -> tuple[TLSSettings, bool | None]:
    """Flags (None when not given) and daemon.json → (the settings, the ``tls`` value dockerd's default ``-H``
    looks at, which is taken before a daemon.json ``tlsverify`` turns TLS on).

    As dockerd: ``--tlsverify`` (any value) implies ``--tls``; ``--tls`` alone verifies clients unless
    ``--tlsverify=false``; the default files under :func:`default_cert_dir` apply only when a TLS flag is given
    (the certificate and key only when they exist); daemon.json values win over those defaults (a key given both
    as a flag and in the file was refused before); ``tlsverify`` in daemon.json, true or false, turns TLS on.
    """
    cacert = cert = key = ""
    if tlsverify is not None or tls:
        d = default_cert_dir()
        cacert = tlscacert if tlscacert is not None else os.path.join(d, "ca.pem")
        cert = tlscert if tlscert is not None else _existing(os.path.join(d, "cert.pem"))
        key = tlskey if tlskey is not None else _existing(os.path.join(d, "key.pem"))
    use_tls, verify = tls, None
    if tlsverify is not None:
        use_tls, verify = True, tlsverify
    if "tls" in conf:
        use_tls = conf["tls"]
    if "tlsverify" in conf:
        verify = conf["tlsverify"]
    cacert = conf.get("tlscacert") or cacert
    cert = conf.get("tlscert") or cert
    key = conf.get("tlskey") or key
    hosts_tls = use_tls
    if tlsverify is not None or "tlsverify" in conf:
        use_tls = True
    if verify is None and use_tls is not None:
        verify = use_tls
    return TLSSettings(use_tls, verify, cacert, cert, key), hosts_tls


def _existing(path: str) -> str:
    return path if os.path.exists(path) else ""


# Go's tlsconfig.ServerDefault: TLS 1.2 at least; for TLS 1.2, ECDHE with AES-GCM, then the ECDHE CBC suites
_SERVER_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA"))


def _open_error(path: str, exc: OSError) -> str:
    """A failed open as Go words it (``open PATH: no such file or directory``)."""
    reason = (exc.strerror or str(exc)).lower()
    return f"open {path}: {reason}"


def server_tls_context(t: TLSSettings) -> ssl.SSLContext | None:
    """dockerd's newAPIServerTLSConfig (go-connections ``tlsconfig.Server``): None without TLS; raises
    :class:`ConfigError` ("invalid TLS configuration: …") when a file is missing or unusable."""
    if not t.tls:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_SERVER_CIPHERS)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    pair = f'(cert: "{t.cert}", key: "{t.key}")'
    for path in (t.cert, t.key):
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError as exc:
            raise ConfigError(f"invalid TLS configuration: could not load X509 key pair {pair}: "
                              f"{_open_error(path, exc)}") from None
        except OSError as exc:
            raise ConfigError(f"invalid TLS configuration: error reading X509 key pair - make sure the key is not "
                              f"encrypted {pair}: {_open_error(path, exc)}") from None
    try:
        ctx.load_cert_chain(t.cert, t.key, password=lambda: b"")  # an encrypted key fails instead of prompting
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"invalid TLS configuration: error reading X509 key pair - make sure the key is not "
                          f"encrypted {pair}: {exc}") from None
    if t.client_auth:
        ctx.verify_mode = ssl.CERT_REQUIRED  # without a CA file no client certificate verifies
        if t.cacert:
            try:
                with open(t.cacert, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f'invalid TLS configuration: could not read CA certificate "{t.cacert}": '
                                  f"{_open_error(t.cacert, exc)}") from None
            try:
                ctx.load_verify_locations(cafile=t.cacert)
            except (ssl.SSLError, ValueError):
                raise ConfigError(f'invalid TLS configuration: failed to append certificates from PEM file: '
                                  f'"{t.cacert}"') from None
    return ctx


def _is_loopback(host: str) -> bool:
    """``host`` names a loopback address (a name is resolved, as dockerd's net.ResolveIPAddr: its first
    address)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        log.error("Error looking up specified host address: %s host=%s", exc, host)
        return False
    return bool(infos) and ipaddress.ip_address(infos[0][4][0].split("%")[0]).is_loopback


def _tcp_name(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def insecure_tcp_warnings(host: str, port: int, t: TLSSettings) -> tuple[list[str], float]:
    """dockerd 28's loadListeners for one ``tcp://`` address: the warnings to log and the start-up delay (seconds).

    Nothing when TLS verifies client certificates. Otherwise three warnings and one second; and when TCP without
    client authentication was not explicitly asked for (neither ``tls`` nor ``tlsverify`` set) on an address that
    is not loopback, four more and fifteen seconds more.
    """
    if t.client_auth:
        return [], 0.0
    name = _tcp_name(host, port)
    msgs = [
        "Binding to IP address without --tlsverify is insecure and gives root access on this machine to everyone "
        "who has access to your network.",
        "Binding to an IP address, even on localhost, can also give access to scripts run in a browser. "
        "Be safe out there!",
        "[DEPRECATION NOTICE] In future versions this will be a hard failure preventing the daemon from starting! "
        "Learn more at: https://docs.docker.com/go/api-security/",
    ]
    delay = 1.0
    if not t.auth_ok() and host != "localhost" and not _is_loopback(host):
        msgs += [
            "Binding to an IP address without --tlsverify is deprecated. Startup is intentionally being slowed "
            "down to show this message",
            "Please consider generating tls certificates with client validation to prevent exposing "
            "unauthenticated root access to your network",
            "You can override this by explicitly specifying '--tls=false' or '--tlsverify=false'",
            "Support for listening on TCP without authentication or explicit intent to run without authentication "
            "will be removed in the next release",
        ]
        delay += 15.0
    return [f'{m} host="{name}"' for m in msgs], delay


# ---- listeners --------------------------------------------------------------------------------------------

def socket_gid(group: str) -> int:
    """dockerd's lookupGID: the group's id, else ``group`` as a number; :class:`LookupError` when neither."""
    import grp
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    try:
        return int(group)
    except ValueError:
        raise LookupError(f"group {group} not found") from None


def _resolve_socket_group(group: str) -> tuple[int, str | None]:
    """(gid for the unix sockets, the reason for a warning): a missing *default* group falls back to the daemon's
    own group with a warning, as dockerd; any other group that does not exist stops the daemon."""
    try:
        return socket_gid(group), None
    except LookupError as exc:
        if group and group != DEFAULT_SOCKET_GROUP:
            raise ConfigError(f"failed to load listeners: {exc}") from None
        return os.getgid(), (str(exc) if group else None)


def _bind_unix(path: str, gid: int) -> socket.socket:
    """go-connections' NewUnixSocket: bound, then ``0660`` and group ``gid`` before it listens (so that nobody can
    connect in between)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        try:
            os.chmod(path, 0)
            os.chown(path, -1, gid)  # the owner is the daemon (root)
            os.chmod(path, 0o660)
        except OSError:
            os.unlink(path)
            raise
    except OSError:
        sock.close()
        raise
    return sock


def _bind_tcp(host: str, port: int) -> socket.socket:
    """Go's net.Listen: one address (the first IPv4 one when a name has several)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


# the first bytes of a plain HTTP request, as Go's http server recognises one sent to a TLS port
_HTTP_HEADS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_HANDSHAKE_TIMEOUT = 60.0


def _tls_site(runner: "web.BaseRunner", sock: socket.socket, ctx: ssl.SSLContext) -> "web.BaseSite":
    from aiohttp import web

    class TLSSite(web.BaseSite):
        """TLS on an accepted socket; a plain HTTP request gets Go's answer ("Client sent an HTTP request to an
        HTTPS server.") instead of a failed handshake, so the docker CLI shows why it failed."""

        def __init__(self) -> None:
            super().__init__(runner, ssl_context=ctx)
            self._tasks: set[asyncio.Task[None]] = set()
            self._accepting: asyncio.Task[None] | None = None

        @property
        def name(self) -> str:
            host, port = sock.getsockname()[:2]
            return f"https://{_tcp_name(host, port)[len('tcp://'):]}"

        async def start(self) -> None:
            await super().start()
            sock.setblocking(False)
            sock.listen(self._backlog)
            self._accepting = asyncio.ensure_future(self._accept())

        async def stop(self) -> None:
            for t in [self._accepting, *self._tasks]:
                if t is not None:
                    t.cancel()
            sock.close()
            await super().stop()

        async def _accept(self) -> None:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    conn, addr = await loop.sock_accept(sock)
                except OSError as exc:
                    log.warning("accept on %s: %s", self.name, exc)
                    await asyncio.sleep(0.1)
                    continue
                t = asyncio.ensure_future(self._handshake(conn, addr))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)

        async def _handshake(self, conn: socket.socket, addr: Any) -> None:
            loop = asyncio.get_running_loop()
            try:
                first = await asyncio.wait_for(_peek(loop, conn), _HANDSHAKE_TIMEOUT)
                if first != b"\x16":  # not a TLS handshake record
                    head = b""
                    while first and len(head) < 5:
                        chunk = await asyncio.wait_for(loop.sock_recv(conn, 5 - len(head)), _HANDSHAKE_TIMEOUT)
                        if not chunk:
                            break
                        head += chunk
                    if head in _HTTP_HEADS:
                        await loop.sock_sendall(conn, b"HTTP/1.0 400 Bad Request\r\n\r\n"
                                                      b"Client sent an HTTP request to an HTTPS server.\n")
                        # read what the client sent, so that closing does not reset the connection before the
                        # client has read the answer
                        conn.shutdown(socket.SHUT_WR)
                        with contextlib.suppress(TimeoutError, OSError):
                            async with asyncio.timeout(2):
                                while await loop.sock_recv(conn, 65536):
                                    pass
                    conn.close()
                    return
                server = runner.server
                assert server is not None
                done = loop.create_future()
                protocol = _AlertingSSLProtocol(loop, server(), ctx, done, server_side=True,
                                                ssl_handshake_timeout=_HANDSHAKE_TIMEOUT)
                await loop.connect_accepted_socket(lambda: protocol, conn)
                await done
            except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
                log.debug("http: TLS handshake error from %s: %s", addr, exc)
                conn.close()

    return TLSSite()


class _AlertingSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's server-side TLS, except that a failed handshake still sends OpenSSL's alert before the connection
    closes (asyncio drops it), so a client learns why, as from Go's server: "remote error: tls: certificate
    required", "… unknown certificate authority"."""

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            try:
                self._process_outgoing()
            except Exception:  # noqa: BLE001 - the alert is a courtesy; the connection closes anyway
                pass
        super()._on_handshake_complete(handshake_exc)


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first byte the client sent, left in the socket (b"" at EOF)."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        ready = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())


def _merge(args: argparse.Namespace) -> dict[str, Any]:
    cfg_path = args.config_file or DEFAULT_CONFIG_FILE
    conf = load_daemon_json(cfg_path, explicit=args.config_file is not None)
    both = []
    for flag, key in (("host", "hosts"), ("data_root", "data-root"), ("exec_root", "exec-root"),
                      ("registry_mirror", "registry-mirrors"), ("insecure_registry", "insecure-registries"),
                      ("max_concurrent_downloads", "max-concurrent-downloads"),
                      ("max_concurrent_uploads", "max-concurrent-uploads"), ("log_level", "log-level"),
                      ("pidfile", "pidfile"), ("group", "group"), ("tls", "tls"), ("tlsverify", "tlsverify"),
                      ("tlscacert", "tlscacert"), ("tlscert", "tlscert"), ("tlskey", "tlskey"),
                      *((flag, key) for key, (flag, _) in NETWORK_KEYS.items())):
        if getattr(args, flag) is not None and key in conf:
            both.append(f"{key}: (from flag: {_gofmt(getattr(args, flag))}, from file: {_gofmt(conf[key])})")
    if both:
        raise ConfigError("the following directives are specified both as a flag and in the configuration "
                          "file: " + ", ".join(both))

    def pick(flag: str, key: str, default: Any) -> Any:
        v = getattr(args, flag)
        if v is not None:
            return v
        return conf.get(key, default)

    tls, hosts_tls = resolve_tls(args.tls, args.tlsverify, args.tlscacert, args.tlscert, args.tlskey, conf)
    hosts = [h for h in pick("host", "hosts", []) if str(h).strip()]
    return {
        "hosts": hosts or [DEFAULT_TLS_HOST if hosts_tls else DEFAULT_SOCKET],
        "group": pick("group", "group", DEFAULT_SOCKET_GROUP),
        "tls": tls,
        "data_root": pick("data_root", "data-root", DEFAULT_DATA_ROOT),
        "exec_root": pick("exec_root", "exec-root", DEFAULT_EXEC_ROOT),
        "mirrors": pick("registry_mirror", "registry-mirrors", []),
        "insecure": pick("insecure_registry", "insecure-registries", []),
        "downloads": pick("max_concurrent_downloads", "max-concurrent-downloads", 3),
        "uploads": pick("max_concurrent_uploads", "max-concurrent-uploads", 5),
        "log_level": pick("log_level", "log-level", "debug" if (args.debug or conf.get("debug")) else "info"),
        "pidfile": pick("pidfile", "pidfile", None),
        "debug": bool(args.debug or conf.get("debug")),
        "experimental": bool(args.experimental or conf.get("experimental")),
        "labels": conf.get("labels", []),
        "mirrors_by_host": conf.get("registry-mirrors-by-host", {}),
        "certs_d": str(Path(cfg_path).parent / "certs.d"),
        "runtime": args.runtime or conf.get("default-runtime") or "runc",
        "network": _network_config(args, conf),
    }


def _network_config(args: argparse.Namespace, conf: dict[str, Any]) -> Any:
    """The default bridge's settings from the flags and daemon.json (the same names as dockerd's)."""
    from ..engine.config import NetworkConfig
    from ..network.ipam import parse_address_pools

    values: dict[str, Any] = {}
    for key, (flag, _) in NETWORK_KEYS.items():
        v = getattr(args, flag)
        if v is None:
            v = conf.get(key)
        if v is not None:
            values[key] = v
    pools = values.get("default-address-pools", [])  # the flag's base=CIDR,size=N or daemon.json's objects
    try:
        parse_address_pools(pools)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"invalid default-address-pools: {exc}") from exc
    mtu = int(values.get("mtu") or 1500)
    if not 68 <= mtu <= 65535:
        raise ConfigError(f"invalid MTU {mtu}: it must be between 68 and 65535")
    return NetworkConfig(
        bridge=str(values.get("bridge") or "dockwright0"), bip=str(values.get("bip") or ""),
        fixed_cidr=str(values.get("fixed-cidr") or ""), mtu=mtu, default_address_pools=list(pools),
        iptables=bool(values.get("iptables", True)), ip_masq=bool(values.get("ip-masq", True)),
        ip_forward=bool(values.get("ip-forward", True)), icc=bool(values.get("icc", True)),
        userland_proxy=bool(values.get("userland-proxy", True)), ip=str(values.get("ip") or ""),
        dns=[str(x) for x in values.get("dns", [])], dns_search=[str(x) for x in values.get("dns-search", [])],
        dns_opts=[str(x) for x in values.get("dns-opts", [])],
        host_gateway_ip=str(values.get("host-gateway-ip") or ""))


def _socket_in_use(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


async def _serve(opts: dict[str, Any], fsync: bool) -> int:
    from aiohttp import web

    from ..api.app import make_app
    from ..engine.config import EngineConfig
    from ..engine.engine import Engine
    from ..errors import InvalidArgument, Unavailable

    os.umask(0o022)  # dockerd's setDefaultUmask
    hosts = [parse_host(h) for h in opts["hosts"]]
    for h in opts["insecure"]:
        if not isinstance(h, str):
            raise ConfigError(f"invalid insecure registry: {h!r}")
    tls: TLSSettings = opts["tls"]
    tls_ctx = server_tls_context(tls)  # refuses to start on missing/bad files, before the data root is touched
    gid, group_warning = _resolve_socket_group(str(opts["group"]))
    config = EngineConfig(
        data_root=Path(opts["data_root"]), exec_root=Path(opts["exec_root"]),
        registry_mirrors=list(opts["mirrors"]), insecure_registries=list(opts["insecure"]),
        max_concurrent_downloads=int(opts["downloads"]), max_concurrent_uploads=int(opts["uploads"]),
        labels=list(opts["labels"]), debug=opts["debug"], experimental=opts["experimental"], fsync=fsync,
        registry_mirrors_by_host={str(k): list(v) for k, v in dict(opts["mirrors_by_host"]).items()},
        certs_dirs=[Path(opts["certs_d"]), Path("/etc/docker/certs.d"), Path("/etc/dockwright/certs.d")],
        runtime=str(opts["runtime"]), network=opts["network"])
    try:
        engine = Engine(config)
    except Unavailable as exc:
        print(f"dockwright: {exc}", file=sys.stderr)
        return 1
    try:
        await engine.start()
    except InvalidArgument as exc:  # a networking configuration dockerd refuses too
        print(f"dockwright: failed to start daemon: {exc}", file=sys.stderr)
        await engine.aclose()
        return 1
    pidfile = opts["pidfile"]
    app = make_app(engine)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0, access_log=None)
    await runner.setup()
    sockets: list[str] = []
    try:
        for kind, where in hosts:
            if kind == "unix":
                if os.path.exists(where):
                    if _socket_in_use(where):
                        raise ConfigError(f"{where}: address already in use by another daemon")
                    os.unlink(where)
                Path(where).parent.mkdir(parents=True, exist_ok=True)
                if group_warning:
                    log.warning("could not change group %s to %s: %s", where, opts["group"], group_warning)
                sock = _bind_unix(where, gid)
                sockets.append(where)
                site: web.BaseSite = web.SockSite(runner, sock)
                await site.start()
                print(f"dockwright {__version__}: API listening on unix://{where}", file=sys.stderr)
                print(f"  export DOCKER_HOST=unix://{where}", file=sys.stderr)
            else:
                host, port = where
                warnings, delay = insecure_tcp_warnings(host, port, tls)
                for w in warnings:
                    log.warning("%s", w)
                if delay:
                    await asyncio.sleep(delay)
                sock = _bind_tcp(host, port)
                site = _tls_site(runner, sock, tls_ctx) if tls_ctx is not None else web.SockSite(runner, sock)
                await site.start()
                mode = ("TLS, client certificates verified" if tls.client_auth else "TLS, no client verification") \
                    if tls_ctx is not None else "no TLS"
                print(f"dockwright {__version__}: API listening on {_tcp_name(host, port)} ({mode})", file=sys.stderr)
                print(f"  export DOCKER_HOST={_tcp_name(host, port)}"
                      + (" DOCKER_TLS_VERIFY=1" if tls_ctx is not None else ""), file=sys.stderr)
    except (OSError, ConfigError) as exc:
        print(f"dockwright: failed to load listeners: {exc}", file=sys.stderr)
        await runner.cleanup()
        await engine.aclose()
        for path in sockets:
            _unlink(path)
        return 1
    if pidfile:
        Path(pidfile).parent.mkdir(parents=True, exist_ok=True)
        Path(pidfile).write_text(str(os.getpid()))
    print(f"dockwright: data root {config.data_root}; ready", file=sys.stderr)
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.shutdown()
    await runner.cleanup()
    await engine.aclose()
    for path in sockets:
        _unlink(path)
    if pidfile:
        _unlink(pidfile)
    return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsck(args: argparse.Namespace) -> int:
    from ..engine.config import EngineConfig
    from ..engine.engine import Engine
    from ..errors import Unavailable

    try:
        engine = Engine.__new__(Engine)
        Engine.__init__(engine, EngineConfig(data_root=Path(args.data_root)))
    except Unavailable as exc:
        print(f"dockwright fsck: {exc}", file=sys.stderr)
        return 1
    rep = engine.startup_report
    print(f"orphan blobs removed: {len(rep['orphan_blobs'])}")
    print(f"unfinished ingests removed: {len(rep['ingests'])}")
    print(f"missing blobs: {len(rep['missing_blobs'])}")
    for d in rep["missing_blobs"]:
        print(f"  missing {d}")
    engine.close()
    return 1 if rep["missing_blobs"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "fsck":
        _setup_logging("info")
        return _fsck(args)
    try:
        _setup_logging("info")
        opts = _merge(args)
        _setup_logging(opts["log_level"])
        return asyncio.run(_serve(opts, fsync=not args.no_fsync))
    except ConfigError as exc:
        print(f"dockwright: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
