"""``dockwright serve``: the API listeners as dockerd's loadListeners (unix sockets with their group, TCP with
its insecure-TCP warnings, TLS with Go's server defaults and Go's answer to plain HTTP on a TLS port), the engine's
start and the loop that runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import grp
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

from aiohttp import web

from .. import __version__
from ..api.app import make_app
from ..engine.config import EngineConfig
from ..engine.engine import Engine
from ..errors import InvalidArgument, Unavailable
from .config import DEFAULT_SOCKET_GROUP, ConfigError, DaemonOptions, TLSSettings, parse_host

__all__ = ["serve", "server_tls_context", "insecure_tcp_warnings", "socket_gid", "TLSSite"]

log = logging.getLogger("dockwright")

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
    return bool(infos) and ipaddress.ip_address(str(infos[0][4][0]).split("%")[0]).is_loopback


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
_HANDSHAKE_TIMEOUT = 60  # seconds


class TLSSite(web.BaseSite):
    """TLS on an accepted socket; a plain HTTP request gets Go's answer ("Client sent an HTTP request to an
    HTTPS server.") instead of a failed handshake, so the docker CLI shows why it failed."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        super().__init__(runner, ssl_context=ctx)
        self._sock = sock
        self._ctx = ctx
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """``https://host:port`` of the socket."""
        host, port = self._sock.getsockname()[:2]
        return f"https://{_tcp_name(host, port)[len('tcp://'):]}"

    async def start(self) -> None:
        """Listen, and accept in a task."""
        await super().start()
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)
        self._accepting = asyncio.ensure_future(self._accept())

    async def stop(self) -> None:
        """Stop accepting, drop the handshakes under way, close the socket."""
        for t in [self._accepting, *self._tasks]:
            if t is not None:
                t.cancel()
        self._sock.close()
        await super().stop()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self._sock)
            except OSError as exc:
                log.warning("accept on %s: %s", self.name, exc)
                await asyncio.sleep(0.1)
                continue
            t = asyncio.ensure_future(self._handshake(conn, addr))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _handshake(self, conn: socket.socket, addr: object) -> None:
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
            server = self._runner.server
            assert server is not None
            done = loop.create_future()
            protocol = _AlertingSSLProtocol(loop, server(), self._ctx, done, server_side=True,
                                            ssl_handshake_timeout=_HANDSHAKE_TIMEOUT)
            await loop.connect_accepted_socket(lambda: protocol, conn)
            await done
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
            log.debug("http: TLS handshake error from %s: %s", addr, exc)
            conn.close()


class _AlertingSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's server-side TLS, except that a failed handshake still sends OpenSSL's alert before the connection
    closes (asyncio drops it), so a client learns why, as from Go's server: "remote error: tls: certificate
    required", "… unknown certificate authority"."""

    # set by SSLProtocol.__init__ (3.11+): the TLS records OpenSSL wrote and asyncio has not sent yet
    _outgoing: ssl.MemoryBIO

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            try:
                self._send_pending_alert()
            except Exception:  # noqa: BLE001 - the alert is a courtesy; the connection closes anyway
                pass
        super()._on_handshake_complete(handshake_exc)

    def _send_pending_alert(self) -> None:
        """Write what OpenSSL left in the outgoing BIO (the handshake's alert) to the socket, as asyncio's
        ``_process_outgoing`` would."""
        data = self._outgoing.read()
        transport = self._transport
        if data and isinstance(transport, asyncio.WriteTransport):
            transport.write(data)


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first byte the client sent, left in the socket (b"" at EOF)."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())


def _wake(ready: asyncio.Future[None]) -> None:
    """The reader callback of :func:`_peek`: resolve its future (once)."""
    if not ready.done():
        ready.set_result(None)


def _socket_in_use(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


async def serve(opts: DaemonOptions, fsync: bool) -> int:
    """Start the engine and the listeners of ``opts``, run until SIGTERM or SIGINT, then stop; the exit status."""
    os.umask(0o022)  # dockerd's setDefaultUmask
    hosts = [parse_host(h) for h in opts["hosts"]]
    for h in opts["insecure"]:
        if not isinstance(h, str):
            raise ConfigError(f"invalid insecure registry: {h!r}")
    tls = opts["tls"]
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
        for _, where in hosts:
            if isinstance(where, str):  # unix://PATH
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
                site = TLSSite(runner, sock, tls_ctx) if tls_ctx is not None else web.SockSite(runner, sock)
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


