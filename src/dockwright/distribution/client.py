"""The registry v2 / OCI distribution client on aiohttp: resolve, fetch, push, mount, tags, login and search.

:class:`RegistryClient` holds one aiohttp session (connection pool sized for concurrent layer transfers), the
:class:`~dockwright.distribution.auth.Authorizer` (challenges and token cache) and the daemon's
:class:`~dockwright.distribution.hosts.RegistryHosts`. :meth:`RegistryClient.repository` gives a
:class:`Repository`, which tries the endpoints of its domain in dockerd's order (mirrors, https, then http for an
insecure registry) and remembers the one that answered.

Falling through to the next endpoint follows moby's ``continueOnError``: any failure of a mirror falls through (a
404 too); for the registry itself, a failure to connect, an unexpected answer or a missing credential falls
through, while an error the registry itself reported (MANIFEST_UNKNOWN, DENIED…) is final. As dockerd does, plain
http is not tried for a host whose https endpoint answered HTTP.

Nothing here knows a store: manifests come back as bytes with their descriptor, blobs as async streams of chunks,
and uploads take async iterators (a blob whose digest is known only at its end, a layer compressed while it is
sent, is PATCHed as it is made and closed with ``PUT ?digest=``). Errors are dockwright errors worded like
dockerd's (see :mod:`dockwright.distribution.errors`), each with a ``registry`` attribute describing the failure.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http
import json
import random
import ssl
import time
import urllib.parse
import urllib.request
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import aiohttp
from yarl import URL

from ..errors import (
    DataCorrupted,
    DockwrightError,
    InvalidArgument,
    SystemError_,
    Unauthorized,
)
from ..oci.descriptor import Descriptor
from ..oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
)
from ..reference import Reference
from .auth import AuthConfig, Authorizer, repository_scope
from .errors import (
    RegistryErrorInfo,
    registry_info,
    response_error,
    schema1_error,
    transport_error,
    url_error,
)
from .hosts import INDEX_HOSTNAME, INDEX_NAME, Endpoint, RegistryHosts

__all__ = [
    "RegistryClient",
    "Repository",
    "DEFAULT_USER_AGENT",
    "MANIFEST_ACCEPT",
    "MAX_MANIFEST_SIZE",
    "manifest_media_type",
]

DEFAULT_USER_AGENT = "docker/28.5.2 go/go1.24 os/linux arch/amd64 dockwright"
MANIFEST_ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_MANIFEST_V1_SIGNED,
                   DOCKER_MANIFEST_V1)
MAX_MANIFEST_SIZE = 4 << 20
_MAX_ERROR_BODY = 1 << 20
_PING_TIMEOUT = 15.0
_READ_SIZE = 1 << 20
_YIELD_MIN = 256 << 10
_FETCH_ATTEMPTS = 5
_BACKOFF_BASE = 0.25
_BACKOFF_MAX = 4.0
_PLAIN_HTTP_TTL = 60.0
_TLS_GRACE = 0.5  # how long https alone may take before plain http is tried beside it (insecure registries)
_SCHEMA1 = (DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED)
_SEARCH_LIMIT_DEFAULT = 25

T = TypeVar("T")


def manifest_media_type(content_type: str | None, body: bytes) -> str:
    """The media type of a manifest: its Content-Type, or what the body says when the header is generic."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream", "binary/octet-stream"):
        return ct
    try:
        doc = json.loads(body)
    except ValueError:
        return ct
    if isinstance(doc, dict):
        mt = doc.get("mediaType")
        if isinstance(mt, str) and mt:
            return mt
        if doc.get("schemaVersion") == 1:
            return DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc or ct == "application/json" else DOCKER_MANIFEST_V1
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc or "layers" in doc:
            return OCI_MANIFEST
    return ct


def _hash(algorithm: str, data: bytes) -> str:
    try:
        h = hashlib.new(algorithm)
    except ValueError as exc:
        raise InvalidArgument(f"unsupported digest algorithm: {algorithm}") from exc
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"


def _verify(digest: str, data: bytes) -> None:
    algorithm = digest.split(":", 1)[0]
    if _hash(algorithm, data) != digest:
        raise DataCorrupted(f"manifest verification failed for digest {digest}")


def _is_digest(reference: str) -> bool:
    return ":" in reference


def _status_text(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether there was more."""
    buf = bytearray()
    while len(buf) <= limit:
        data = await resp.content.read(min(_READ_SIZE, limit + 1 - len(buf)))
        if not data:
            return bytes(buf), False
        buf += data
    return bytes(buf[:limit]), True


def _backoff(failures: int) -> float:
    delay = min(_BACKOFF_MAX, _BACKOFF_BASE * float(2 ** max(0, failures - 1)))
    return delay * (0.75 + random.random() * 0.5)


def _transient(exc: BaseException) -> bool:
    """Worth retrying the same request: no answer, or a 5xx / 408 answer (but not 429: dockerd does not retry)."""
    info = registry_info(exc)
    if info is None:
        return False
    if info.transport:
        return True
    if info.wrapped and isinstance(exc.__cause__, DockwrightError):
        return _transient(exc.__cause__)  # the token server, not the registry, failed
    if info.errors and info.errors[0].code in ("TOOMANYREQUESTS", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
                                               "NAME_UNKNOWN", "BLOB_UNKNOWN"):
        return False
    return info.status is not None and (info.status >= 500 or info.status == 408)


def _join(base: str, location: str) -> str:
    """A Location header resolved against the request URL, keeping its encoding (presigned URLs)."""
    return str(URL(base, encoded=True).join(URL(location, encoded=True)))


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + urllib.parse.urlencode(params)


class RegistryClient:
    """One HTTP session, one authorizer and the registry configuration, shared by all repositories."""

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
        self._proxies = {k.lower(): v for k, v in urllib.request.getproxies_environment().items()}

    async def __aenter__(self) -> "RegistryClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def session(self) -> aiohttp.ClientSession:
        """The shared aiohttp session (created on first use, inside the running loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit_per_host,
                                             ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout, 30.0),
                                              sock_read=self.timeout),
                headers={"User-Agent": self.user_agent},
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def repository(self, ref: Reference, auth: AuthConfig | None, *, push: bool = False) -> "Repository":
        """The repository ``ref`` names (its tag and digest are ignored), with these credentials."""
        return Repository(self, ref, auth, push=push)

    # ---- plumbing shared by repositories, login and search ----------------------------------------------
    def proxy_for(self, url: URL | str) -> str | None:
        """The proxy from the environment for ``url`` (never for loopback, as Go's ProxyFromEnvironment)."""
        if not self._proxies:
            return None
        u = URL(str(url))
        host = u.host or ""
        if host in ("localhost", "::1") or host.startswith("127.") or host.endswith(".localhost"):
            return None
        no_proxy = self._proxies.get("no", "")
        if no_proxy:
            if no_proxy.strip() == "*":
                return None
            for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
                if entry and (host == entry or host.endswith("." + entry)):
                    return None
        return self._proxies.get(u.scheme) or None

    def _https_known_dead(self, host: str) -> bool:
        until = self._plain_http.get(host)
        return until is not None and until > time.monotonic()

    async def ping(self, ep: Endpoint) -> None:
        """``GET /v2/`` once per endpoint, to learn its challenges (PingV2Registry): any answer will do."""
        base = ep.url
        if self.authorizer.known(base):
            return
        async with self.authorizer.lock(("ping", base)):
            if self.authorizer.known(base):
                return
            challenges = await self._ping_challenges(ep)
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
                    or self._https_known_dead(https_ep.host):
                continue
            http_ep = next((e for e in endpoints if e.scheme == "http" and not e.mirror
                            and e.host == https_ep.host), None)
            if http_ep is None:
                continue
            if self.authorizer.known(http_ep.url):  # it answered plain HTTP before
                self._plain_http[https_ep.host] = time.monotonic() + _PLAIN_HTTP_TTL
                continue
            t_https: asyncio.Future[None] = asyncio.ensure_future(self.ping(https_ep))
            tasks: set[asyncio.Future[Any]] = {t_https}
            try:
                done, _ = await asyncio.wait(tasks, timeout=_TLS_GRACE)
                if done:
                    continue  # answered or failed fast: the endpoints are then tried in order
                t_http: asyncio.Future[bool] = asyncio.ensure_future(self._probe_plain(http_ep))
                tasks.add(t_http)
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if t_http in done and not t_https.done() and t_http.exception() is None and t_http.result():
                    self._plain_http[https_ep.host] = time.monotonic() + _PLAIN_HTTP_TTL
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
        from .auth import parse_www_authenticate

        session = await self.session()
        url = ep.url.rstrip("/") + "/v2/"
        try:
            async with session.get(url, proxy=self.proxy_for(url), allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=_PING_TIMEOUT)) as resp:
                await _read_limited(resp, _MAX_ERROR_BODY)
                if resp.status == 400:
                    return False
                challenges = parse_www_authenticate(resp.headers.getall("WWW-Authenticate", [])) \
                    if resp.status == 401 else []
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        self.authorizer.set_challenges(ep.url, challenges)
        return True

    async def _ping_challenges(self, ep: Endpoint) -> list[Any]:
        from .auth import parse_www_authenticate

        session = await self.session()
        url = ep.url.rstrip("/") + "/v2/"
        try:
            async with session.get(url, ssl=ep.ssl_arg, proxy=self.proxy_for(url), allow_redirects=True,
                                   timeout=aiohttp.ClientTimeout(total=_PING_TIMEOUT)) as resp:
                body, _ = await _read_limited(resp, _MAX_ERROR_BODY)
                if resp.status == 400 and ep.scheme == "http" and b"HTTPS server" in body:
                    # a TLS port answering a plain request: not a plain-HTTP registry (do not remember it as one)
                    raise transport_error("GET", url, aiohttp.ClientError(
                        "client sent an HTTP request to an HTTPS server"))
                if resp.status == 401:
                    return parse_www_authenticate(resp.headers.getall("WWW-Authenticate", []))
                return []
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error("GET", url, exc) from exc

    # ---- login (POST /auth) -------------------------------------------------------------------------------
    async def login(self, auth: AuthConfig) -> tuple[str, str]:
        """dockerd's ``/auth``: ``("Login Succeeded", identity token or "")``.

        The server address (Docker Hub when empty) is pinged at ``/v2/`` on each of its endpoints (no mirrors),
        then asked again with the credentials: a bearer token with ``offline_token`` (whose refresh token is the
        identity token returned) or basic. A token server refusing the credentials is Unauthorized
        (``Get "https://…/v2/": unauthorized: incorrect username or password``) and stops; any other failure
        tries the next endpoint and the last one is raised (``login attempt to http://…/v2/ failed with status:
        401 Unauthorized``, as dockerd answers for a basic-auth registry, is a SystemError_).
        """
        host = INDEX_HOSTNAME
        if auth.serveraddress:
            address = auth.serveraddress
            if not address.startswith(("http://", "https://")):
                address = "https://" + address
            try:
                host = URL(address).raw_authority
            except (ValueError, TypeError) as exc:
                raise InvalidArgument(f"unable to parse server address: {exc}") from exc
        endpoints = await asyncio.to_thread(self.hosts.endpoints, host, push=True)
        await self.settle_insecure(endpoints)
        endpoints = [e for e in endpoints if not (e.scheme == "https" and self._https_known_dead(e.host)
                                                  and any(o.scheme == "http" and o.host == e.host
                                                          for o in endpoints))]
        last: DockwrightError | None = None
        for ep in endpoints:
            try:
                token = await self._login_v2(ep, auth)
            except Unauthorized:
                raise
            except DockwrightError as exc:
                last = exc
                continue
            return "Login Succeeded", token
        assert last is not None
        raise last

    async def _login_v2(self, ep: Endpoint, auth: AuthConfig) -> str:
        session = await self.session()
        endpoint_str = ep.url.rstrip("/") + "/v2/"
        challenges = await self._ping_challenges(ep)
        identity = auth.identitytoken
        headers: dict[str, str] = {}
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        try:
            if bearer is not None:
                token, _, refresh = await self.authorizer.fetch_token(session, bearer.params, auth, [],
                                                                      ssl=ep.ssl_arg, offline=True)
                if refresh:
                    identity = refresh
                headers["Authorization"] = f"Bearer {token}"
            elif basic is not None:
                if not (auth.username and auth.password):
                    raise SystemError_("no basic auth credentials")
                import base64

                headers["Authorization"] = "Basic " + base64.b64encode(
                    f"{auth.username}:{auth.password}".encode()).decode()
        except DockwrightError as exc:
            err = url_error("GET", endpoint_str, exc)
            info = registry_info(exc)
            if (info is not None and len(info.errors) == 1 and not info.is_list
                    and info.errors[0].code == "UNAUTHORIZED"):
                out: DockwrightError = Unauthorized(str(err))
            else:
                out = SystemError_(str(err))
            out.registry = registry_info(err)  # type: ignore[attr-defined]
            raise out from exc
        try:
            async with session.get(endpoint_str, headers=headers, ssl=ep.ssl_arg,
                                   proxy=self.proxy_for(endpoint_str), allow_redirects=True,
                                   timeout=aiohttp.ClientTimeout(total=_PING_TIMEOUT)) as resp:
                await _read_limited(resp, _MAX_ERROR_BODY)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error("GET", endpoint_str, exc) from exc
        if status == 200:
            return identity
        err = SystemError_(f"login attempt to {endpoint_str} failed with status: {status} {_status_text(status)}")
        err.registry = RegistryErrorInfo(status=status, method="GET", url=endpoint_str)  # type: ignore[attr-defined]
        raise err

    # ---- search (GET /images/search) -------------------------------------------------------------------------
    async def search(self, term: str, limit: int, auth: AuthConfig | None) -> list[dict[str, Any]]:
        """The v1 search of dockerd (``searchUnfiltered``): ``[{name, description, star_count, is_official,
        is_automated}]`` as the index returns them (dockerd's filters, and forcing ``is_automated`` to false,
        are the caller's).

        ``host/term`` searches that registry's ``/v1/search``; anything else searches Docker Hub
        (``https://index.docker.io/v1/``). ``limit`` 0 means 25; outside [1, 100] is InvalidArgument.
        """
        if "://" in term:
            raise InvalidArgument(f"invalid repository name: repository name ({term}) should not have a scheme")
        index_name, remote = _split_repos_search_term(term)
        index_name = INDEX_NAME if index_name == INDEX_HOSTNAME else index_name
        official = index_name == INDEX_NAME
        if official and remote.startswith("library/"):
            remote = remote[len("library/"):]
        if limit == 0:
            limit = _SEARCH_LIMIT_DEFAULT
        if limit < 1 or limit > 100:
            raise InvalidArgument(f"limit {limit} is outside the range of [1, 100]")
        session = await self.session()
        tls: ssl.SSLContext | bool | None = None
        if official:
            base = "https://index.docker.io"
        else:
            secure = not await asyncio.to_thread(self.hosts.is_insecure, index_name)
            tls = await asyncio.to_thread(self.hosts.tls, index_name, secure=secure)
            base = await self._v1_endpoint(index_name, secure, True if tls is None else tls)
        ep = Endpoint(base, False, tls if base.startswith("https://") else None, index_name)
        ssl_arg = ep.ssl_arg
        headers = {"X-Docker-Token": "true"}
        if auth is not None and auth.identitytoken and auth.username:
            await self.ping(ep)
            try:
                authz = await self.authorizer.authorize(session, ep.url, auth, ["registry:catalog:search"],
                                                        ssl=ep.ssl_arg)
            except DockwrightError as exc:
                raise SystemError_(str(url_error("GET", base + "/v1/search", exc))) from exc
            if authz:
                headers["Authorization"] = authz
        elif auth is not None and not official and base.startswith("https://"):
            headers["Authorization"] = _basic_header(auth.username, auth.password)  # standalone private registry
        elif auth is not None and auth.username:
            headers["Authorization"] = _basic_header(auth.username, auth.password)
        url = (f"{base}/v1/search?q={urllib.parse.quote_plus(remote)}"
               f"&n={urllib.parse.quote_plus(str(limit))}")
        try:
            async with session.get(URL(url, encoded=True), headers=headers, ssl=ssl_arg,
                                   proxy=self.proxy_for(url), allow_redirects=True) as resp:
                body, _ = await _read_limited(resp, 16 << 20)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            err = transport_error("GET", url, exc)
            out = SystemError_(str(err))
            out.registry = registry_info(err)  # type: ignore[attr-defined]
            raise out from exc
        if status != 200:
            err2 = SystemError_(f"unexpected status code {status}")
            err2.registry = RegistryErrorInfo(status=status, method="GET", url=url)  # type: ignore[attr-defined]
            raise err2
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise SystemError_(f"error decoding registry search results: {exc}") from exc
        results = data.get("results") if isinstance(data, dict) else None
        out_list: list[dict[str, Any]] = []
        for r in results or []:
            if not isinstance(r, dict):
                continue
            star = r.get("star_count")
            out_list.append({
                "name": str(r.get("name") or ""),
                "description": str(r.get("description") or ""),
                "star_count": star if isinstance(star, int) else 0,
                "is_official": bool(r.get("is_official")),
                "is_automated": bool(r.get("is_automated")),
            })
        return out_list

    async def _v1_endpoint(self, index_name: str, secure: bool, ssl_arg: Any) -> str:
        """moby's ``newV1Endpoint``: ping ``https://host/v1/_ping``, falling back to http when insecure."""
        session = await self.session()

        plain_400: list[bool] = []

        async def ping(scheme: str) -> DockwrightError | None:
            url = f"{scheme}://{index_name}/v1/_ping"
            try:
                async with session.get(url, ssl=ssl_arg if scheme == "https" else True, proxy=self.proxy_for(url),
                                       allow_redirects=True,
                                       timeout=aiohttp.ClientTimeout(total=_PING_TIMEOUT)) as resp:
                    await _read_limited(resp, _MAX_ERROR_BODY)
                    if scheme == "http" and resp.status == 400:
                        plain_400.append(True)  # maybe a TLS port answering a plain request
                return None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return transport_error("GET", url, exc)

        t_https = asyncio.ensure_future(ping("https"))
        if not secure:  # as settle_insecure: a silent plain-HTTP port must not cost the whole https timeout
            done, _ = await asyncio.wait({t_https}, timeout=_TLS_GRACE)
            if not done:
                t_http = asyncio.ensure_future(ping("http"))
                done, _ = await asyncio.wait({t_https, t_http}, return_when=asyncio.FIRST_COMPLETED)
                if t_http in done and t_http.result() is None and not plain_400 and t_https not in done:
                    t_https.cancel()
                    try:
                        await t_https
                    except asyncio.CancelledError:
                        pass
                    return f"http://{index_name}"
                if not t_http.done():
                    t_http.cancel()
                try:
                    await t_http
                except asyncio.CancelledError:
                    pass
        err = await t_https
        if err is None:
            return f"https://{index_name}"
        if secure:
            raise InvalidArgument(
                f"invalid registry endpoint https://{index_name}/v1/: {err}. If this private registry supports "
                f"only HTTP or HTTPS with an unknown CA certificate, please add `--insecure-registry "
                f"{index_name}` to the daemon's arguments. In the case of HTTPS, if you have access to the "
                f"registry's CA certificate, no need for the flag; simply place the CA certificate at "
                f"/etc/docker/certs.d/{index_name}/ca.crt")
        err2 = await ping("http")
        if err2 is not None:
            raise InvalidArgument(f"invalid registry endpoint \"http://{index_name}/v1/\". HTTPS attempt: {err}. "
                                  f"HTTP attempt: {err2}")
        return f"http://{index_name}"


def _basic_header(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _split_repos_search_term(name: str) -> tuple[str, str]:
    """moby's ``splitReposSearchTerm``."""
    parts = name.split("/", 1)
    if len(parts) == 1 or ("." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost"):
        return INDEX_NAME, name
    return parts[0], parts[1]


class Repository:
    """One repository of one registry, reached through the endpoints of its domain."""

    def __init__(self, client: RegistryClient, ref: Reference, auth: AuthConfig | None, *, push: bool = False):
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
                                          and self.client._https_known_dead(e.host))]
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
                self.client._plain_http[ep.host] = time.monotonic() + _PLAIN_HTTP_TTL
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
                nxt = URL(_join(str(current), location), encoded=True)
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
            body, _ = await _read_limited(resp, _MAX_ERROR_BODY) if method != "HEAD" else (b"", False)
        except (aiohttp.ClientError, TimeoutError, OSError):
            body = b""
        finally:
            resp.release()
        return response_error(resp.status, resp.reason or "", resp.headers, body, method=method, url=url)

    # ---- manifests --------------------------------------------------------------------------------------
    async def _get_manifest(self, ep: Endpoint, reference: str) -> tuple[bytes, str, str]:
        """GET a manifest: ``(body, Content-Type, Docker-Content-Digest)``."""
        url = self._url(ep, f"manifests/{reference}")
        resp = await self._send(ep, "GET", url, headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
        if not 200 <= resp.status < 300:
            raise await self._error(resp, "GET", url)
        try:
            body, more = await _read_limited(resp, MAX_MANIFEST_SIZE)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error("GET", url, exc) from exc
        finally:
            resp.release()
        if more:
            raise DataCorrupted(f"manifest {reference} is larger than the {MAX_MANIFEST_SIZE} bytes allowed")
        return body, resp.headers.get("Content-Type", ""), resp.headers.get("Docker-Content-Digest", "")

    def _check(self, reference: str, body: bytes, content_type: str, header_digest: str) -> Descriptor:
        mt = manifest_media_type(content_type, body)
        if mt in _SCHEMA1:
            ref = self.ref.with_digest(reference) if _is_digest(reference) else self.ref.with_tag(reference)
            raise schema1_error(ref)
        if _is_digest(reference):
            _verify(reference, body)
            digest = reference
        else:
            digest = _hash("sha256", body)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise DataCorrupted(f"manifest verification failed for digest {header_digest}")
        return Descriptor(media_type=mt, digest=digest, size=len(body))

    async def _resolve_on(self, ep: Endpoint, reference: str) -> tuple[Descriptor, bytes]:
        if not _is_digest(reference):
            url = self._url(ep, f"manifests/{reference}")
            resp = await self._send(ep, "HEAD", url, headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
            status, digest = resp.status, resp.headers.get("Docker-Content-Digest", "")
            resp.release()
            if 200 <= status < 300 and digest and _is_digest(digest):
                body, ctype, _ = await self._get_manifest(ep, digest)
                mt = manifest_media_type(ctype, body)
                if mt in _SCHEMA1:
                    raise schema1_error(self.ref.with_tag(reference))
                _verify(digest, body)
                return Descriptor(media_type=mt, digest=digest, size=len(body)), body
            # no digest from HEAD, or an error: GET by tag (an error answer then carries its details)
        body, ctype, header_digest = await self._get_manifest(ep, reference)
        return self._check(reference, body, ctype, header_digest), body

    async def resolve(self, reference: str) -> tuple[Descriptor, bytes]:
        """The manifest (or index) a tag or digest names: its descriptor and raw bytes, digest verified.

        For a tag: HEAD for the digest then GET by digest (dockerd's traffic), or GET by tag when HEAD gives no
        digest. Schema 1 manifests are refused with moby's message (InvalidArgument).
        """
        return await self._run(lambda ep: self._resolve_on(ep, reference))

    async def fetch_manifest(self, digest: str) -> bytes:
        """The manifest with this digest, verified."""
        async def op(ep: Endpoint) -> bytes:
            body, _, _ = await self._get_manifest(ep, digest)
            _verify(digest, body)
            return body
        return await self._run(op)

    async def get_manifest_descriptor(self, reference: str) -> Descriptor:
        """The descriptor of what a tag or digest names (``GET /distribution/{name}/json``)."""
        desc, _ = await self.resolve(reference)
        return desc

    async def put_manifest(self, reference: str, media_type: str, raw: bytes) -> str:
        """PUT a manifest under a tag or digest; returns its digest (sha256 of ``raw``)."""
        async def op(ep: Endpoint) -> str:
            url = self._url(ep, f"manifests/{reference}")
            resp = await self._send(ep, "PUT", url, headers={"Content-Type": media_type}, data=raw)
            if not 200 <= resp.status < 300:
                raise await self._error(resp, "PUT", url)
            resp.release()
            return _hash("sha256", raw)
        return await self._run(op)

    async def list_tags(self, *, page_size: int | None = None) -> list[str]:
        """All tags (``/tags/list``, following ``Link: <…>; rel="next"``; ``page_size`` asks ``?n=``)."""
        async def op(ep: Endpoint) -> list[str]:
            url = self._url(ep, "tags/list")
            if page_size:
                url = _with_query(url, n=str(page_size))
            tags: list[str] = []
            for _ in range(10000):
                resp = await self._send(ep, "GET", url)
                if not 200 <= resp.status < 300:
                    raise await self._error(resp, "GET", url)
                try:
                    body, _ = await _read_limited(resp, 64 << 20)
                finally:
                    resp.release()
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise SystemError_(f"invalid tags list from {url}: {exc}") from exc
                if isinstance(data, dict):
                    tags.extend(t for t in (data.get("tags") or []) if isinstance(t, str))
                link = resp.headers.get("Link", "")
                if not link:
                    return tags
                target = link.split(";", 1)[0].strip().strip("<>")
                url = _join(url, target)
            return tags
        return await self._run(op)

    # ---- blobs ------------------------------------------------------------------------------------------
    async def blob_exists(self, digest: str) -> int | None:
        """HEAD the blob: its size, or None when the registry does not have it."""
        async def op(ep: Endpoint) -> int | None:
            url = self._url(ep, f"blobs/{digest}")
            resp = await self._send(ep, "HEAD", url)
            if resp.status == 404:
                resp.release()
                return None
            if not 200 <= resp.status < 300:
                raise await self._error(resp, "HEAD", url)
            length = resp.headers.get("Content-Length")
            resp.release()
            return int(length) if length and length.isdigit() else 0
        return await self._run(op)

    async def _open_blob(self, ep: Endpoint, digest: str, position: int) -> tuple[aiohttp.ClientResponse, int, str]:
        url = self._url(ep, f"blobs/{digest}")
        headers = {"Accept-Encoding": "identity"}
        if position > 0:
            headers["Range"] = f"bytes={position}-"
        resp = await self._send(ep, "GET", url, headers=headers, decompress=False)
        if resp.status == 206:
            crange = resp.headers.get("Content-Range", "")
            start = position
            try:
                start = int(crange.split(" ", 1)[1].split("-", 1)[0]) if crange else position
            except (IndexError, ValueError):
                pass
            if start > position:
                resp.release()
                raise SystemError_(f"registry answered range {crange!r} to a request for bytes={position}-")
            return resp, position - start, url
        if resp.status == 200:
            return resp, position, url  # no range support: skip what we have
        raise await self._error(resp, "GET", url)

    async def fetch_blob(self, digest: str, *, offset: int = 0, size: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset``, in chunks of 256 KiB to 1 MiB (the digest is not checked here).

        Uses ``Range: bytes=offset-`` (a 200 answer to it is skipped client-side), follows redirects without the
        registry's Authorization on another host, retries with backoff on failed connections and 5xx, and
        resumes from where it was when the stream breaks. With ``size``, a short stream is resumed and a longer
        one is DataCorrupted. Gives up with Unavailable.
        """
        if size is not None and offset >= size:
            return
        position = offset
        failures = 0
        while True:
            try:
                resp, skip, url = await self._run(functools.partial(self._open_blob, digest=digest,
                                                                    position=position))
            except DockwrightError as exc:
                if _transient(exc) and failures + 1 < _FETCH_ATTEMPTS:
                    failures += 1
                    await asyncio.sleep(_backoff(failures))
                    continue
                raise
            expected_len = resp.headers.get("Content-Length")
            expected_end = None
            if expected_len is not None and expected_len.isdigit():
                expected_end = position - skip + int(expected_len) if resp.status == 206 \
                    else int(expected_len)
            progressed = False
            try:
                buf = bytearray()
                while True:
                    data = await resp.content.read(_READ_SIZE)
                    if not data:
                        break
                    if skip:
                        if len(data) <= skip:
                            skip -= len(data)
                            continue
                        data = data[skip:]
                        skip = 0
                    buf += data
                    if len(buf) >= _YIELD_MIN:
                        chunk = bytes(buf)
                        buf.clear()
                        if size is not None and position + len(chunk) > size:
                            raise DataCorrupted(f"blob {digest} is larger than its size {size}")
                        position += len(chunk)
                        progressed = True
                        yield chunk
                if buf:
                    chunk = bytes(buf)
                    if size is not None and position + len(chunk) > size:
                        raise DataCorrupted(f"blob {digest} is larger than its size {size}")
                    position += len(chunk)
                    progressed = True
                    yield chunk
                short = (size is not None and position < size) or (
                    size is None and expected_end is not None and position < expected_end)
                if not short:
                    return
                failure: BaseException = aiohttp.ClientPayloadError("stream ended early")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failure = exc
            finally:
                resp.release()
            if progressed:
                failures = 0
            failures += 1
            if failures >= _FETCH_ATTEMPTS:
                raise transport_error("GET", url, failure) from failure
            await asyncio.sleep(_backoff(failures))

    async def mount_blob(self, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: True when the registry mounted it (201); on 202 the upload it started is
        cancelled and False is returned. ``from_repo`` is a path in the same registry ("library/busybox")."""
        if "/" in from_repo and from_repo.split("/", 1)[0] == self.ref.domain:
            from_repo = from_repo.split("/", 1)[1]
        scopes = [self.scope, repository_scope(from_repo, ["pull"])]

        async def op(ep: Endpoint) -> bool:
            url = _with_query(self._url(ep, "blobs/uploads/"), mount=digest, **{"from": from_repo})
            resp = await self._send(ep, "POST", url, data=b"", scopes=scopes,
                                    headers={"Content-Type": "application/octet-stream"})
            if resp.status == 201:
                resp.release()
                return True
            if resp.status == 202:
                location = resp.headers.get("Location")
                resp.release()
                if location:
                    await self._cancel_upload(ep, _join(url, location), scopes)
                return False
            raise await self._error(resp, "POST", url)
        return await self._run(op)

    async def _cancel_upload(self, ep: Endpoint, url: str, scopes: list[str] | None = None) -> None:
        try:
            resp = await self._send(ep, "DELETE", url, scopes=scopes)
            resp.release()
        except DockwrightError:
            pass

    async def _start_upload(self, ep: Endpoint) -> tuple[Endpoint, int, str, int | None]:
        url = self._url(ep, "blobs/uploads/")
        resp = await self._send(ep, "POST", url, data=b"", headers={"Content-Type": "application/octet-stream"})
        if resp.status not in (201, 202):
            raise await self._error(resp, "POST", url)
        location = resp.headers.get("Location", "")
        min_len = resp.headers.get("OCI-Chunk-Min-Length", "")
        resp.release()
        if resp.status == 202 and not location:
            raise SystemError_(f"registry answered {url} without a Location for the upload")
        return ep, resp.status, _join(url, location) if location else "", int(min_len) if min_len.isdigit() else None

    async def push_blob(self, digest: str, size: int, chunks: AsyncIterator[bytes], *,
                        progress: Callable[[int], None] | None = None, chunk_min: int | None = None) -> None:
        """Upload a blob: POST an upload, then one streamed PUT, or PATCH chunks then PUT ``?digest=``.

        Chunks are used when the registry asks for a minimum (``OCI-Chunk-Min-Length``) or ``chunk_min`` is
        given, and the blob is bigger than that: each PATCH carries at least that many bytes (the last may be
        shorter) and a ``Range`` answer that acknowledges less is resent from there. ``progress`` is called with
        the total bytes sent so far. A blob that does not have ``size`` bytes is DataCorrupted.
        """
        ep, status, location, oci_min = await self._run(self._start_upload)
        if status == 201:  # the registry has it already
            await _aclose(chunks)
            return
        if size == 0:
            await _aclose(chunks)
        chunk = max(chunk_min or 0, oci_min or 0)
        if chunk and size > chunk:
            await self._push_chunked(ep, digest, size, chunks, location, chunk, progress)
        else:
            await self._push_monolithic(ep, digest, size, chunks, location, progress)

    async def _push_monolithic(self, ep: Endpoint, digest: str, size: int, chunks: AsyncIterator[bytes],
                               location: str, progress: Callable[[int], None] | None) -> None:
        url = _with_query(location, digest=digest)
        sent = 0
        problem: list[DockwrightError] = []

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            async for piece in chunks:
                if not piece:
                    continue
                if sent + len(piece) > size:
                    problem.append(DataCorrupted(f"blob {digest} is larger than its size {size}"))
                    raise problem[-1]
                sent += len(piece)
                yield piece
                if progress is not None:
                    progress(sent)
            if sent != size:
                problem.append(DataCorrupted(f"blob {digest} has {sent} bytes, expected {size}"))
                raise problem[-1]

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            resp = await self._send(ep, "PUT", url, headers=headers, data=body() if size else b"",
                                    replayable=False)
        except DockwrightError:
            if problem:
                raise problem[0] from None
            raise
        if problem:
            resp.release()
            raise problem[0]
        if resp.status not in (200, 201, 204):
            raise await self._error(resp, "PUT", url)
        resp.release()

    async def _push_chunked(self, ep: Endpoint, digest: str, size: int, chunks: AsyncIterator[bytes],
                            location: str, chunk: int, progress: Callable[[int], None] | None) -> None:
        location, start = await self._patch_chunks(ep, digest, chunks, location, chunk, size=size, progress=progress)
        if start != size:
            await self._cancel_upload(ep, location)
            raise DataCorrupted(f"blob {digest} has {start} bytes, expected {size}")
        await self._commit_upload(ep, location, digest)

    async def _commit_upload(self, ep: Endpoint, location: str, digest: str) -> None:
        """The closing ``PUT <location>?digest=`` of an upload whose bytes were all sent by PATCH."""
        url = _with_query(location, digest=digest)
        resp = await self._send(ep, "PUT", url, data=b"",
                                headers={"Content-Type": "application/octet-stream", "Content-Length": "0"})
        if resp.status not in (200, 201, 204):
            raise await self._error(resp, "PUT", url)
        resp.release()

    async def _patch_chunks(self, ep: Endpoint, label: str, chunks: AsyncIterator[bytes], location: str, chunk: int,
                            *, size: int | None = None,
                            progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """PATCH ``chunks`` in pieces of ``chunk`` bytes (the last may be shorter), each with its Content-Range;
        a ``Range`` answer that acknowledges less is resent from there. Returns the upload's last location and
        the bytes sent. With ``size``, a stream that goes past it is DataCorrupted (``label`` names the blob)."""
        buf = bytearray()
        start = 0  # offset of buf[0] in the blob

        async def patch(piece: bytes, offset: int) -> None:
            nonlocal location
            sent_from = 0
            for _ in range(4):
                data = piece[sent_from:]
                first = offset + sent_from
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                           "Content-Range": f"{first}-{first + len(data) - 1}"}
                resp = await self._send(ep, "PATCH", location, headers=headers, data=data)
                if resp.status not in (202, 204):
                    raise await self._error(resp, "PATCH", location)
                new_location = resp.headers.get("Location")
                rng = resp.headers.get("Range", "")
                resp.release()
                if new_location:
                    location = _join(location, new_location)
                end = offset + len(piece)
                acked = end
                if rng:
                    try:
                        acked = int(rng.split("=", 1)[-1].split("-", 1)[1]) + 1
                    except (IndexError, ValueError):
                        acked = end
                if acked >= end:
                    return
                if acked < offset:
                    raise SystemError_(f"registry acknowledged {acked} bytes of {label}, "
                                       f"{offset} were sent before")
                sent_from = acked - offset
            raise SystemError_(f"registry does not accept the bytes of {label} after {offset + sent_from}")

        async for piece in chunks:
            if not piece:
                continue
            buf += piece
            if size is not None and start + len(buf) > size:
                raise DataCorrupted(f"blob {label} is larger than its size {size}")
            while len(buf) >= chunk:
                out = bytes(buf[:chunk])
                await patch(out, start)
                del buf[:chunk]
                start += len(out)
                if progress is not None:
                    progress(start)
        if buf:
            out = bytes(buf)
            await patch(out, start)
            start += len(out)
            if progress is not None:
                progress(start)
        return location, start

    async def _patch_stream(self, ep: Endpoint, chunks: AsyncIterator[bytes], location: str) -> tuple[str, int]:
        """One PATCH whose body is the whole stream (chunked transfer encoding: its length is not known before
        its end). Returns the upload's next location and the bytes sent."""
        sent = 0
        problem: list[BaseException] = []

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            try:
                async for piece in chunks:
                    if piece:
                        sent += len(piece)
                        yield piece
            except Exception as exc:  # the source failed: surfaced as itself, not as aiohttp's write error
                problem.append(exc)
                raise

        try:
            resp = await self._send(ep, "PATCH", location, headers={"Content-Type": "application/octet-stream"},
                                    data=body(), replayable=False)
        except DockwrightError:
            if problem:
                raise problem[0] from None
            raise
        if problem:
            resp.release()
            raise problem[0]
        if resp.status not in (202, 204):
            raise await self._error(resp, "PATCH", location)
        new_location = resp.headers.get("Location")
        rng = resp.headers.get("Range", "")
        resp.release()
        if new_location:
            location = _join(location, new_location)
        if rng:
            try:
                acked = int(rng.split("=", 1)[-1].split("-", 1)[1]) + 1
            except (IndexError, ValueError):
                acked = sent
            if acked != sent:
                raise SystemError_(f"registry acknowledged {acked} bytes of an upload of {sent}")
        return location, sent

    async def push_blob_stream(self, chunks: AsyncIterator[bytes], result: Callable[[], tuple[str, int]], *,
                               chunk_min: int | None = None) -> tuple[str, int]:
        """Upload a blob whose digest is known only once its last byte is made (a layer compressed on the way).

        POST an upload, PATCH the stream (one streamed PATCH, or pieces of at least the registry's
        ``OCI-Chunk-Min-Length`` / ``chunk_min``), then ``PUT ?digest=`` with what ``result()`` answers once
        ``chunks`` is exhausted: ``(digest, size)``, which is returned. A failed upload is cancelled (DELETE).
        """
        ep, status, location, oci_min = await self._run(self._start_upload)
        if status != 202 or not location:
            raise SystemError_(f"registry did not start an upload for {self.ref.name} (status {status})")
        try:
            chunk = max(chunk_min or 0, oci_min or 0)
            if chunk:
                location, sent = await self._patch_chunks(ep, "upload", chunks, location, chunk)
            else:
                location, sent = await self._patch_stream(ep, chunks, location)
            digest, size = result()
            if sent != size:
                raise DataCorrupted(f"blob {digest} has {sent} bytes sent, {size} made")
            await self._commit_upload(ep, location, digest)
        except Exception:
            await _aclose(chunks)
            await self._cancel_upload(ep, location)
            raise
        return digest, size


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing a source we will not read
            pass

