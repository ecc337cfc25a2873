"""Which URLs serve a registry domain, and with what TLS: mirrors, insecure registries and certs.d.

A port of moby's ``registry/config.go`` (mirrors, ``--insecure-registry`` host names and CIDRs, 127.0.0.0/8 and
::1 insecure by default), ``registry/service_v2.go`` (``lookupV2Endpoints``: Docker Hub's mirrors, then
``https://registry-1.docker.io``; any other registry over https, and, when insecure, https without verification
followed by plain http) and ``registry/registry.go`` (``certs.d/<host[:port]>/``: ``*.crt`` extra CAs on top of the
system ones, ``*.cert``/``*.key`` client certificate pairs).

Beyond dockerd: ``mirrors_by_host`` gives pull mirrors for registries other than Docker Hub, and several certs
directories are read (``/etc/docker/certs.d`` and ``/etc/dockwright/certs.d`` by default).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from ..errors import InvalidArgument
from .http import certs_tls_context

__all__ = [
    "Endpoint",
    "RegistryHosts",
    "DEFAULT_CERTS_DIRS",
    "INDEX_NAME",
    "INDEX_HOSTNAME",
    "DEFAULT_REGISTRY_HOST",
    "DEFAULT_V2_REGISTRY",
    "validate_mirror",
    "split_host_port",
]

INDEX_NAME = "docker.io"
INDEX_HOSTNAME = "index.docker.io"
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
DEFAULT_V2_REGISTRY = "https://" + DEFAULT_REGISTRY_HOST
DEFAULT_CERTS_DIRS: tuple[Path, ...] = (Path("/etc/docker/certs.d"), Path("/etc/dockwright/certs.d"))
_DEFAULT_INSECURE_CIDRS = ("::1/128", "127.0.0.0/8")
_RESOLVE_TTL = 60.0

# distribution/reference DomainRegexp (host, optional port), as validHostPortRegex
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_PORT_RE = re.compile(
    r"(?:" + _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?", re.ASCII)


_SSLContext = ssl.SSLContext  # the field below is named ``ssl``


@dataclass(frozen=True)
class Endpoint:
    """One base URL that serves a registry: ``https://registry-1.docker.io``, ``http://127.0.0.1:5000``.

    ``ssl`` is what aiohttp's ``ssl=`` takes: ``None`` for default verification against the system CAs, an
    SSLContext when certs.d adds CAs or a client certificate, ``False`` to skip verification (an insecure
    registry over https). ``host`` is ``host[:port]`` as in the URL (certs.d and credentials are keyed by it).
    """

    url: str
    mirror: bool = False
    ssl: _SSLContext | bool | None = None
    host: str = ""

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return self.url.split("://", 1)[0]

    @property
    def ssl_arg(self) -> _SSLContext | bool:
        """The value to pass to aiohttp (``True`` for default verification)."""
        return True if self.ssl is None else self.ssl

    def __str__(self) -> str:
        return self.url


def validate_mirror(mirror: str) -> str:
    """moby's ``ValidateMirror``: an http(s) URL without query, fragment or credentials; normalised with ``/``."""
    scheme, sep, _ = mirror.partition("://")
    if not sep or not scheme:
        raise InvalidArgument(f"invalid mirror: no scheme specified for \"{mirror}\": must use either "
                              "'https://' or 'http://'")
    try:
        u = URL(mirror)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid mirror: \"{mirror}\" is not a valid URI") from exc
    if u.scheme not in ("http", "https"):
        raise InvalidArgument(f"invalid mirror: unsupported scheme \"{u.scheme}\" in \"{mirror}\": must use "
                              "either 'https://' or 'http://'")
    if u.raw_query_string or u.raw_fragment:
        raise InvalidArgument(f"invalid mirror: query or fragment at end of the URI \"{mirror}\"")
    if u.user is not None or u.password is not None:
        raise InvalidArgument(f"invalid mirror: username/password not allowed in URI "
                              f"\"{u.with_password('xxxxx') if u.password is not None else u}\"")
    return mirror.rstrip("/") + "/"


def split_host_port(hostport: str) -> tuple[str, str | None]:
    """Go's ``net.SplitHostPort``, falling back to ``(hostport, None)`` when there is no port."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1:]
            if rest.startswith(":") and rest[1:].isdigit():
                return hostport[1:end], rest[1:]
            if not rest:
                return hostport, None
        return hostport, None
    if hostport.count(":") == 1:
        host, port = hostport.split(":")
        return host, port
    return hostport, None


def _validate_host_port(s: str) -> None:
    host, port = split_host_port(s)
    try:
        ipaddress.ip_address(host.strip("[]"))
        is_ip = True
    except ValueError:
        is_ip = False
    if not _HOST_PORT_RE.fullmatch(s) and not is_ip:
        raise InvalidArgument(f"insecure registry {s} is not valid: invalid host \"{host}\"")
    if port is not None:
        if not port.isdigit() or int(port) > 65535:
            raise InvalidArgument(f"insecure registry {s} is not valid: invalid port \"{port}\"")


def _normalize_index_name(name: str) -> str:
    return INDEX_NAME if name == INDEX_HOSTNAME else name


class RegistryHosts:
    """The daemon's registry configuration: mirrors, insecure registries, certificate directories."""

    def __init__(self, *, mirrors: Sequence[str] = (), insecure: Sequence[str] = (),
                 certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS,
                 mirrors_by_host: dict[str, list[str]] | None = None, insecure_loopback: bool = True) -> None:
        """``insecure_loopback=False`` drops dockerd's built-in 127.0.0.0/8 and ::1 insecure ranges (for tests of
        TLS verification against a registry on 127.0.0.1; dockerd has no such switch)."""
        seen: dict[str, None] = {}
        for m in mirrors:
            seen.setdefault(validate_mirror(m), None)
        self.mirrors: list[str] = list(seen)
        self.mirrors_by_host: dict[str, list[str]] = {
            _normalize_index_name(host): [validate_mirror(m) for m in ms]
            for host, ms in (mirrors_by_host or {}).items()}
        self.certs_dirs: list[Path] = [Path(p) for p in certs_dirs]
        self._insecure_names: set[str] = set()
        cidrs: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, None] = {}
        for r in [*insecure, *(_DEFAULT_INSECURE_CIDRS if insecure_loopback else ())]:
            r = _normalize_index_name(r)
            if r.startswith("-") or r.endswith("-"):
                raise InvalidArgument(f"invalid index name ({r}). Cannot begin or end with a hyphen")
            scheme, sep, rest = r.partition("://")
            if sep:
                if scheme.lower() not in ("http", "https"):
                    raise InvalidArgument(f"insecure registry {r} should not contain '://'")
                r = rest
            if "/" in r:
                try:
                    cidrs.setdefault(ipaddress.ip_network(r, strict=False), None)
                    continue
                except ValueError:
                    pass
            _validate_host_port(r)
            self._insecure_names.add(r)
        self._insecure_names.discard(INDEX_NAME)  # Docker Hub is always secure
        self.insecure_cidrs = list(cidrs)
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[float, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]] = {}
        self._tls_cache: dict[str, tuple[tuple[tuple[str, int, int], ...], ssl.SSLContext | None]] = {}

    # ---- insecure registries ---------------------------------------------------------------------------------
    def is_insecure(self, host: str) -> bool:
        """moby's ``!isSecureIndex``: a configured name, or an address in one of the insecure CIDRs."""
        host = _normalize_index_name(host)
        if host == INDEX_NAME:
            return False
        if host in self._insecure_names:
            return True
        if not self.insecure_cidrs:
            return False
        name, _ = split_host_port(host)
        name = name.strip("[]")
        try:
            addrs = [ipaddress.ip_address(name)]
        except ValueError:
            addrs = self._resolve(name)
        for addr in addrs:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            for net in self.insecure_cidrs:
                if addr.version == net.version and addr in net:
                    return True
        return False

    def _resolve(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(name)
            if hit is not None and hit[0] > now:
                return hit[1]
        addrs: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        if name == "localhost" or name.endswith(".localhost"):  # as the resolver's /etc/hosts answers
            addrs = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        else:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError):
                infos = []
            for info in infos:
                try:
                    addrs.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                except ValueError:
                    pass
        with self._lock:
            self._resolved[name] = (now + _RESOLVE_TTL, addrs)
        return addrs

    # ---- TLS ------------------------------------------------------------------------------------------------
    def tls(self, host: str, *, secure: bool = True) -> ssl.SSLContext | bool | None:
        """aiohttp's ``ssl=`` for ``host``: a context from certs.d, None (defaults), or False (insecure, no certs.d).

        As dockerd, certs.d is read for insecure registries too: their client certificates are presented, only the
        server's certificate is not verified."""
        files: list[Path] = []
        for d in self.certs_dirs:
            hostdir = d / host
            try:
                entries = sorted(hostdir.iterdir())
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise InvalidArgument(str(exc)) from exc
            files.extend(e for e in entries if e.suffix in (".crt", ".cert", ".key"))
        if not files:
            return None if secure else False
        signature = tuple((str(f), int(st.st_mtime_ns), st.st_size) for f in files for st in (f.stat(),))
        key = f"{host}#{'secure' if secure else 'insecure'}"
        with self._lock:
            hit = self._tls_cache.get(key)
            if hit is not None and hit[0] == signature:
                return hit[1]
        ctx = certs_tls_context(files)
        if not secure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with self._lock:
            self._tls_cache[key] = (signature, ctx)
        return ctx

    # ---- endpoints ------------------------------------------------------------------------------------------
    def _mirror_endpoint(self, mirror: str) -> Endpoint:
        u = URL(mirror)
        host = u.raw_authority
        secure = not self.is_insecure(host)
        tls = self.tls(host, secure=secure) if u.scheme == "https" else None
        return Endpoint(mirror.rstrip("/"), True, tls, host)

    def endpoints(self, domain: str, *, push: bool = False) -> list[Endpoint]:
        """The endpoints to try for ``domain``, in order (moby's ``lookupV2Endpoints``).

        Docker Hub: the mirrors (not for push), then ``https://registry-1.docker.io``. Another domain: its
        ``mirrors_by_host`` (not for push), then ``https://domain``, and for an insecure registry ``https://``
        without verification followed by ``http://``. May resolve the host name (for the insecure CIDRs): call
        it from a thread in async code, or use :meth:`RegistryClient.repository`, which does.
        """
        domain = _normalize_index_name(domain)
        out: list[Endpoint] = []
        if domain == INDEX_NAME:
            if not push:
                for m in [*self.mirrors, *self.mirrors_by_host.get(INDEX_NAME, [])]:
                    out.append(self._mirror_endpoint(m))
            out.append(Endpoint(DEFAULT_V2_REGISTRY, False, None, DEFAULT_REGISTRY_HOST))
            return out
        if not push:
            for m in self.mirrors_by_host.get(domain, []):
                out.append(self._mirror_endpoint(m))
        secure = not self.is_insecure(domain)
        tls = self.tls(domain, secure=secure)
        out.append(Endpoint(f"https://{domain}", False, tls, domain))
        if not secure:
            out.append(Endpoint(f"http://{domain}", False, None, domain))
        return out

    def __repr__(self) -> str:
        return (f"RegistryHosts(mirrors={self.mirrors!r}, insecure={sorted(self._insecure_names)!r}, "
                f"cidrs={[str(c) for c in self.insecure_cidrs]!r}, "
                f"certs_dirs={[os.fspath(d) for d in self.certs_dirs]!r})")
