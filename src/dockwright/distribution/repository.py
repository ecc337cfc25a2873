"""The core of a repository: which endpoints of its domain to try and in what order, falling through them as
moby's ``continueOnError``, and one authorized request (challenges, a 401 relearnt once, redirects, error bodies).

Falling through to the next endpoint: any failure of a mirror falls through (a 404 too); for the registry itself, a
failure to connect, an unexpected answer or a missing credential falls through, while an error the registry itself
reported (MANIFEST_UNKNOWN, DENIED…) is final. As dockerd does, plain http is not tried for a host whose https
endpoint answered HTTP. The operations (manifests, blob reads, uploads) are subclasses of :class:`RepositoryCore`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from ..errors import DataCorrupted, DockwrightError, InvalidArgument, SystemError_
from ..reference import Reference
from .auth import AuthConfig, repository_scope
from .errors import registry_info, response_error, transport_error, url_error
from .hosts import Endpoint
from .transport import MAX_ERROR_BODY, RegistryTransport, join_location, read_limited

__all__ = ["RepositoryCore"]

T = TypeVar("T")


class RepositoryCore:
    """One repository of one registry, reached through the endpoints of its domain (the operations are in the
    subclasses that make :class:`~dockwright.distribution.client.Repository`)."""

    def __init__(self, client: RegistryTransport, ref: Reference, auth: AuthConfig | None, *,
                 push: bool = False) -> None:
        self.client = client
        self.ref = ref.name_only()
        self.auth = auth if auth is not None and not auth.is_empty else None
        self.push = push
        self.scope = repository_scope(self.ref.path, ["pull", "push"] if push else ["pull"])
        self._endpoints: list[Endpoint] | None = None
        self._good: Endpoint | None = None

    # ---- endpoints --------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> Endpoint:
        """The endpoint that answered last (before any call: the first one to be tried)."""
        if self._good is not None:
            return self._good
        if self._endpoints is None:
            self._endpoints = self.client.hosts.endpoints(self.ref.domain, push=self.push)
        return self._endpoints[0]

    @endpoint.setter
    def endpoint(self, ep: Endpoint) -> None:
        self._good = ep

    async def endpoints(self) -> list[Endpoint]:
        """The endpoints in the order they will be tried now."""
        if self._endpoints is None:
            self._endpoints = await asyncio.to_thread(self.client.hosts.endpoints, self.ref.domain,
                                                      push=self.push)
        eps = list(self._endpoints)
        good = self._good
        if good is not None and good in eps:
            eps.remove(good)
            eps.insert(0, good)
            if not good.mirror:  # its port speaks good.scheme: the other scheme of that host cannot answer
                eps = [e for e in eps if e.mirror or e.host != good.host or e.scheme == good.scheme]
        else:
            hosts_with_http = {e.host for e in eps if e.scheme == "http" and not e.mirror}
            eps = [e for e in eps if not (e.scheme == "https" and not e.mirror and e.host in hosts_with_http
                                          and self.client.https_known_dead(e.host))]
        return eps

    @staticmethod
    def _falls_through(exc: DockwrightError, ep: Endpoint) -> bool:
        if ep.mirror:
            return True
        info = registry_info(exc)
        if info is None:
            return isinstance(exc, DataCorrupted) or not isinstance(exc, InvalidArgument)
        return not info.errors

    async def _run(self, op: Callable[[Endpoint], Awaitable[T]]) -> T:
        last: DockwrightError | None = None
        answered: dict[str, str] = {}  # host → the scheme it answered HTTP on
        https_failed: set[str] = set()
        if self._good is None:
            await self.client.settle_insecure(await self.endpoints())
        for ep in await self.endpoints():
            if not ep.mirror and answered.get(ep.host, ep.scheme) != ep.scheme:
                continue  # dockerd: "Skipping non-TLS endpoint for host/port that appears to use TLS"
            try:
                result = await op(ep)
            except DockwrightError as exc:
                info = registry_info(exc)
                if not ep.mirror:
                    if info is not None and info.transport:
                        if ep.scheme == "https":
                            https_failed.add(ep.host)
                    else:  # the registry answered on this scheme
                        answered[ep.host] = ep.scheme
                if not self._falls_through(exc, ep):
                    raise
                last = exc
                continue
            if ep.scheme == "http" and ep.host in https_failed:
                self.client.remember_plain_http(ep.host)
            self._good = ep
            return result
        if last is None:
            raise SystemError_(f"no endpoints found for {self.ref.familiar_name}")
        raise last

    def _url(self, ep: Endpoint, suffix: str) -> str:
        return f"{ep.url}/v2/{self.ref.path}/{suffix}"

    # ---- one authorized request -------------------------------------------------------------------------
    async def _send(self, ep: Endpoint, method: str, url: str, *, headers: dict[str, str] | None = None,
                    data: Any = None, scopes: list[str] | None = None, replayable: bool = True,
                    follow: bool | None = None, decompress: bool = True,
                    timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """Send with authorization; the caller releases the response. A 401 relearns and retries once."""
        client = self.client
        session = await client.session()
        await client.ping(ep)
        scopes = scopes or [self.scope]
        if follow is None:
            follow = method in ("GET", "HEAD")
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            from_cache = client.authorizer.cached(ep.url, scopes, self.auth)
            try:
                authz = await client.authorizer.authorize(session, ep.url, self.auth, scopes, ssl=ep.ssl_arg)
            except DockwrightError as exc:
                raise url_error(method, url, exc) from exc
            if authz:
                hdrs["Authorization"] = authz
            resp = await self._raw(ep, method, url, hdrs, data, follow, decompress, timeout)
            if resp.status == 401 and attempt == 0 and replayable:
                changed = client.authorizer.add_response(ep.url, resp.status, resp.headers)
                stale = from_cache and authz is not None and authz.startswith("Bearer ") and not (
                    self.auth is not None and self.auth.registrytoken)
                if changed or stale:
                    client.authorizer.invalidate(ep.url, scopes, self.auth)
                    resp.release()
                    continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _raw(self, ep: Endpoint, method: str, url: str, headers: dict[str, str], data: Any, follow: bool,
                   decompress: bool, timeout: aiohttp.ClientTimeout | None) -> aiohttp.ClientResponse:
        session = await self.client.session()
        current = URL(url, encoded=True)
        origin = (current.scheme, current.host, current.port)
        for _ in range(11):
            kwargs: dict[str, Any] = {}
            if timeout is not None:
                kwargs["timeout"] = timeout
            for attempt in (0, 1):
                try:
                    resp = await session.request(method, current, headers=headers, data=data, ssl=ep.ssl_arg,
                                                 allow_redirects=False, proxy=self.client.proxy_for(current),
                                                 auto_decompress=decompress, **kwargs)
                    break
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError) as exc:
                    # a kept-alive connection the server had closed: aiohttp replays idempotent requests
                    # itself; replay a byte body once too
                    if attempt == 0 and isinstance(data, (bytes, type(None))):
                        continue
                    raise transport_error(method, str(current), exc) from exc
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise transport_error(method, str(current), exc) from exc
            location = resp.headers.get("Location")
            if follow and resp.status in (301, 302, 303, 307, 308) and location:
                resp.release()
                nxt = URL(join_location(str(current), location), encoded=True)
                if (nxt.scheme, nxt.host, nxt.port) != origin:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if resp.status == 303 and method != "HEAD":
                    method, data = "GET", None
                current = nxt
                continue
            return resp
        raise SystemError_(f"{method.title()} \"{url}\": stopped after 10 redirects")

    async def _error(self, resp: aiohttp.ClientResponse, method: str, url: str) -> DockwrightError:
        try:
            body, _ = await read_limited(resp, MAX_ERROR_BODY) if method != "HEAD" else (b"", False)
        except (aiohttp.ClientError, TimeoutError, OSError):
            body = b""
        finally:
            resp.release()
        return response_error(resp.status, resp.reason or "", resp.headers, body, method=method, url=url)
