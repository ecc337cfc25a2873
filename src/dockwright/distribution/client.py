"""The registry v2 / OCI distribution client on aiohttp: :class:`RegistryClient` and :class:`Repository`.

:class:`RegistryClient` is the :class:`~dockwright.distribution.transport.RegistryTransport` (one session sized for
concurrent layer transfers, the authorizer, the daemon's hosts) plus dockerd's ``/auth`` login and v1 search;
:meth:`RegistryClient.repository` gives a :class:`Repository`: the endpoint core (:mod:`.repository`) with the
manifest (:mod:`.manifests`), blob read (:mod:`.blobs`) and upload (:mod:`.upload`) operations.

Nothing here knows a store: manifests come back as bytes with their descriptor, blobs as async streams of chunks,
and uploads take async iterators. Errors are dockwright errors worded like dockerd's (see
:mod:`dockwright.distribution.errors`), each with a ``registry`` attribute describing the failure.
"""

from __future__ import annotations

import asyncio
import base64
import http
import json
import ssl
import urllib.parse
from typing import Any

import aiohttp
from yarl import URL

from ..errors import DockwrightError, InvalidArgument, SystemError_, Unauthorized
from ..reference import Reference
from .auth import AuthConfig
from .blobs import BlobReads
from .errors import RegistryErrorInfo, registry_info, transport_error, url_error
from .hosts import INDEX_HOSTNAME, INDEX_NAME, Endpoint
from .manifests import ManifestOps
from .transport import MAX_ERROR_BODY, PING_TIMEOUT, TLS_GRACE, RegistryTransport, read_limited
from .upload import BlobUploads

__all__ = ["RegistryClient", "Repository"]

_SEARCH_LIMIT_DEFAULT = 25


def _status_text(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class RegistryClient(RegistryTransport):
    """The registry client of the daemon: repositories, login and search over one shared transport."""

    def repository(self, ref: Reference, auth: AuthConfig | None, *, push: bool = False) -> Repository:
        """The repository ``ref`` names (its tag and digest are ignored), with these credentials."""
        return Repository(self, ref, auth, push=push)

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
        endpoints = [e for e in endpoints if not (e.scheme == "https" and self.https_known_dead(e.host)
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
        challenges = await self.ping_challenges(ep)
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
                                   timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as resp:
                await read_limited(resp, MAX_ERROR_BODY)
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
                body, _ = await read_limited(resp, 16 << 20)
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

    async def _v1_endpoint(self, index_name: str, secure: bool, ssl_arg: ssl.SSLContext | bool) -> str:
        """moby's ``newV1Endpoint``: ping ``https://host/v1/_ping``, falling back to http when insecure."""
        session = await self.session()

        plain_400: list[bool] = []

        async def ping(scheme: str) -> DockwrightError | None:
            url = f"{scheme}://{index_name}/v1/_ping"
            try:
                async with session.get(url, ssl=ssl_arg if scheme == "https" else True, proxy=self.proxy_for(url),
                                       allow_redirects=True,
                                       timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as resp:
                    await read_limited(resp, MAX_ERROR_BODY)
                    if scheme == "http" and resp.status == 400:
                        plain_400.append(True)  # maybe a TLS port answering a plain request
                return None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return transport_error("GET", url, exc)

        t_https = asyncio.ensure_future(ping("https"))
        if not secure:  # as settle_insecure: a silent plain-HTTP port must not cost the whole https timeout
            done, _ = await asyncio.wait({t_https}, timeout=TLS_GRACE)
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
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _split_repos_search_term(name: str) -> tuple[str, str]:
    """moby's ``splitReposSearchTerm``."""
    parts = name.split("/", 1)
    if len(parts) == 1 or ("." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost"):
        return INDEX_NAME, name
    return parts[0], parts[1]


class Repository(ManifestOps, BlobReads, BlobUploads):
    """One repository of one registry, reached through the endpoints of its domain: resolve, fetch (ranged,
    resumed), push (monolithic or chunked), mount and tags."""
