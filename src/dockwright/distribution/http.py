"""The one factory for every outbound HTTP client of the daemon (registries, ``fromSrc`` URLs, remote build contexts,
``ADD`` URLs): :func:`client_session` (timeouts, connection limits, User-Agent, proxies, default TLS), the proxy
rule of Go's ``ProxyFromEnvironment`` (:func:`environment_proxies`, :func:`select_proxy`) and certs.d TLS contexts.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
from yarl import URL

from ..errors import InvalidArgument

__all__ = [
    "DEFAULT_USER_AGENT",
    "client_session",
    "environment_proxies",
    "select_proxy",
    "certs_tls_context",
]

DEFAULT_USER_AGENT = "docker/28.5.2 go/go1.24 os/linux arch/amd64 dockwright"


def client_session(*, timeout: aiohttp.ClientTimeout, user_agent: str | None = None, limit: int = 100,
                   limit_per_host: int = 0, dns_cache_ttl: int | None = 10, trust_env: bool = True,
                   tls: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    """A new aiohttp session for outbound HTTP; call it inside the running loop, close it (``async with``) when done.

    * ``timeout``: the caller's (each differs), e.g. ``ClientTimeout(total=None, sock_connect=60)`` for a download
      of unknown length, ``ClientTimeout(total=60)`` for a probe.
    * ``user_agent``: the ``User-Agent`` header of every request; None leaves aiohttp's own
      (``Python/3.x aiohttp/…``). The registry client sends :data:`DEFAULT_USER_AGENT` or the engine's.
    * ``limit`` / ``limit_per_host`` / ``dns_cache_ttl``: the connection pool (0 is unlimited; aiohttp's defaults).
    * ``trust_env``: True applies ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` (and ``~/.netrc``) as aiohttp reads
      them, to every request that passes no ``proxy=``. False uses no proxy unless a request passes one: the
      registry client does that with :func:`select_proxy`, which keeps loopback direct as Go does.
    * ``tls``: the connector's default verification (a request's ``ssl=`` wins, as a certs.d context from
      :func:`certs_tls_context` or ``RegistryHosts.tls``).
    """
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=dns_cache_ttl,
                                     ssl=tls)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": user_agent} if user_agent is not None else None,
        trust_env=trust_env,
    )


def environment_proxies() -> dict[str, str]:
    """The proxy settings of the environment (``HTTP_PROXY``, ``https_proxy``, ``NO_PROXY``…) keyed by lower-case
    scheme (``"http"``, ``"https"``, and ``"no"`` for the exclusion list), read now."""
    return {k.lower(): v for k, v in urllib.request.getproxies_environment().items()}


def select_proxy(proxies: Mapping[str, str], url: URL | str) -> str | None:
    """The proxy of ``proxies`` (from :func:`environment_proxies`) for ``url``; never for loopback, as Go's
    ``ProxyFromEnvironment``, nor for a host ``NO_PROXY`` lists (or any host when it is ``*``)."""
    if not proxies:
        return None
    u = URL(str(url))
    host = u.host or ""
    if host in ("localhost", "::1") or host.startswith("127.") or host.endswith(".localhost"):
        return None
    no_proxy = proxies.get("no", "")
    if no_proxy:
        if no_proxy.strip() == "*":
            return None
        for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
            if entry and (host == entry or host.endswith("." + entry)):
                return None
    return proxies.get(u.scheme) or None


def certs_tls_context(files: Sequence[Path]) -> ssl.SSLContext:
    """A client TLS context from certs.d files (moby's ``ReadCertsDirectory``): the system CAs plus every ``*.crt``,
    and each ``*.cert``/``*.key`` pair as a client certificate. A lone ``.cert`` or ``.key`` is InvalidArgument."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    by_dir: dict[Path, set[str]] = {}
    for f in files:
        by_dir.setdefault(f.parent, set()).add(f.name)
    for f in files:
        names = by_dir[f.parent]
        if f.suffix == ".crt":
            try:
                ctx.load_verify_locations(cafile=str(f))
            except (ssl.SSLError, OSError) as exc:
                raise InvalidArgument(f"unable to load CA certificate {f}: {exc}") from exc
        elif f.suffix == ".cert":
            key = f.name[: -len(".cert")] + ".key"
            if key not in names:
                raise InvalidArgument(f"missing key {key} for client certificate {f.name}. CA certificates "
                                      "must use the extension .crt")
            try:
                ctx.load_cert_chain(str(f), str(f.parent / key))
            except (ssl.SSLError, OSError) as exc:
                raise InvalidArgument(f"unable to load client certificate {f}: {exc}") from exc
        elif f.suffix == ".key":
            cert = f.name[: -len(".key")] + ".cert"
            if cert not in names:
                raise InvalidArgument(f"missing client certificate {cert} for key {f.name}")
    return ctx
