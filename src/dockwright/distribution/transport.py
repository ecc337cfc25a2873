"""The registry client's core: one aiohttp session (from :func:`~dockwright.distribution.http.client_session`),
the :class:`~dockwright.distribution.auth.Authorizer` and the daemon's hosts, the ``/v2/`` pings that learn
challenges, and how an insecure registry's port is found to speak TLS or plain HTTP (remembered for a while).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any, Self

import aiohttp
from yarl import URL

from .auth import Authorizer
from .challenges import Challenge, parse_www_authenticate
from .errors import transport_error
from .hosts import Endpoint, RegistryHosts
from .http import DEFAULT_USER_AGENT, client_session, environment_proxies, select_proxy

__all__ = [
    "RegistryTransport",
    "MAX_ERROR_BODY",
    "PING_TIMEOUT",
    "PLAIN_HTTP_TTL",
    "TLS_GRACE",
    "READ_SIZE",
    "read_limited",
    "join_location",
    "with_query",
]

MAX_ERROR_BODY = 1 << 20
PING_TIMEOUT = 15.0
READ_SIZE = 1 << 20
PLAIN_HTTP_TTL = 60.0
TLS_GRACE = 0.5  # how long https alone may take before plain http is tried beside it (insecure registries)


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether there was more."""
    buf = bytearray()
    while len(buf) <= limit:
        data = await resp.content.read(min(READ_SIZE, limit + 1 - len(buf)))
        if not data:
            return bytes(buf), False
        buf += data
    return bytes(buf[:limit]), True


def join_location(base: str, location: str) -> str:
    """A Location header resolved against the request URL, keeping its encoding (presigned URLs)."""
    return str(URL(base, encoded=True).join(URL(location, encoded=True)))


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` appended to its query string."""
    sep = "&" if "?" in url else "?"
    return url + sep + urllib.parse.urlencode(params)


class RegistryTransport:
    """One HTTP session, one authorizer and the registry configuration, shared by all repositories.

    :class:`~dockwright.distribution.client.RegistryClient` adds repositories, login and search to it."""

    def __init__(self, hosts: RegistryHosts, *, user_agent: str = DEFAULT_USER_AGENT, timeout: float = 60.0,
                 limit: int = 64, limit_per_host: int = 16) -> None:
        self.hosts = hosts
        self.user_agent = user_agent
        self.timeout = timeout
        self.authorizer = Authorizer(user_agent=user_agent)
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._plain_http: dict[str, float] = {}  # host → until when https is known not to answer
        self._proxies = environment_proxies()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def session(self) -> aiohttp.ClientSession:
        """The shared aiohttp session (created on first use, inside the running loop)."""
        if self._session is None or self._session.closed:
            self._session = client_session(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout, 30.0),
                                              sock_read=self.timeout),
                user_agent=self.user_agent, limit=self._limit, limit_per_host=self._limit_per_host,
                dns_cache_ttl=60, trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the session (a later call opens a new one)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # ---- plumbing shared by repositories, login and search ----------------------------------------------
    def proxy_for(self, url: URL | str) -> str | None:
        """The proxy from the environment for ``url`` (never for loopback, as Go's ProxyFromEnvironment)."""
        return select_proxy(self._proxies, url)

    def https_known_dead(self, host: str) -> bool:
        """``host`` was found to speak plain HTTP a short while ago: its https endpoint is skipped."""
        until = self._plain_http.get(host)
        return until is not None and until > time.monotonic()

    def remember_plain_http(self, host: str) -> None:
        """``host`` answered plain HTTP after https failed: skip its https endpoint for a while."""
        self._plain_http[host] = time.monotonic() + PLAIN_HTTP_TTL

    async def ping(self, ep: Endpoint) -> None:
        """``GET /v2/`` once per endpoint, to learn its challenges (PingV2Registry): any answer will do."""
        base = ep.url
        if self.authorizer.known(base):
            return
        async with self.authorizer.lock(("ping", base)):
            if self.authorizer.known(base):
                return
            challenges = await self.ping_challenges(ep)
            self.authorizer.set_challenges(base, challenges)

    async def settle_insecure(self, endpoints: list[Endpoint]) -> None:
        """Find out fast whether an insecure registry's port speaks TLS or plain HTTP.

        dockerd tries https (unverified) and then http, one after the other. A plain-HTTP server that stays
        silent on a TLS handshake makes that first attempt last until the ping timeout. A host:port speaks one
        protocol, so when https has not answered within a short grace, http is probed beside it: an answer
        other than 400 (which is what a TLS port gives a plain request: "Client sent an HTTP request to an
        HTTPS server") shows a plain-HTTP port, and https is then skipped for that host for a while. If https
        answers, it is kept, as in dockerd.
        """
        for https_ep in endpoints:
            if https_ep.scheme != "https" or https_ep.mirror or self.authorizer.known(https_ep.url) \
                    or self.https_known_dead(https_ep.host):
                continue
            http_ep = next((e for e in endpoints if e.scheme == "http" and not e.mirror
                            and e.host == https_ep.host), None)
            if http_ep is None:
                continue
            if self.authorizer.known(http_ep.url):  # it answered plain HTTP before
                self.remember_plain_http(https_ep.host)
                continue
            t_https: asyncio.Future[None] = asyncio.ensure_future(self.ping(https_ep))
            tasks: set[asyncio.Future[Any]] = {t_https}
            try:
                done, _ = await asyncio.wait(tasks, timeout=TLS_GRACE)
                if done:
                    continue  # answered or failed fast: the endpoints are then tried in order
                t_http: asyncio.Future[bool] = asyncio.ensure_future(self._probe_plain(http_ep))
                tasks.add(t_http)
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if t_http in done and not t_https.done() and t_http.exception() is None and t_http.result():
                    self.remember_plain_http(https_ep.host)
                elif not t_https.done():
                    await asyncio.wait({t_https})  # plain HTTP did not answer: https decides, in dockerd's order
            finally:
                for t in tasks:
                    if not t.done():
                        t.cancel()
                for t in tasks:
                    try:
                        await t
                    except BaseException:  # noqa: BLE001 - outcomes are read from the authorizer
                        pass

    async def _probe_plain(self, ep: Endpoint) -> bool:
        """GET /v2/ over plain http: True (and the challenges learnt) if the port answered as plain HTTP."""
        session = await self.session()
        url = ep.url.rstrip("/") + "/v2/"
        try:
            async with session.get(url, proxy=self.proxy_for(url), allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as resp:
                await read_limited(resp, MAX_ERROR_BODY)
                if resp.status == 400:
                    return False
                challenges = parse_www_authenticate(resp.headers.getall("WWW-Authenticate", [])) \
                    if resp.status == 401 else []
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        self.authorizer.set_challenges(ep.url, challenges)
        return True

    async def ping_challenges(self, ep: Endpoint) -> list[Challenge]:
        """``GET /v2/`` on ``ep`` now: the challenges of a 401, none for another answer; a failure to connect (or a
        TLS port answering plain http) is a transport error."""
        session = await self.session()
        url = ep.url.rstrip("/") + "/v2/"
        try:
            async with session.get(url, ssl=ep.ssl_arg, proxy=self.proxy_for(url), allow_redirects=True,
                                   timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as resp:
                body, _ = await read_limited(resp, MAX_ERROR_BODY)
                if resp.status == 400 and ep.scheme == "http" and b"HTTPS server" in body:
                    # a TLS port answering a plain request: not a plain-HTTP registry (do not remember it as one)
                    raise transport_error("GET", url, aiohttp.ClientError(
                        "client sent an HTTP request to an HTTPS server"))
                if resp.status == 401:
                    return parse_www_authenticate(resp.headers.getall("WWW-Authenticate", []))
                return []
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error("GET", url, exc) from exc

