"""Registry credentials and authorization: AuthConfig, the X-Registry-* headers, challenges, bearer tokens, basic.

* :class:`AuthConfig` is the API's ``AuthConfig`` (moby ``api/types/registry``), decoded from ``X-Registry-Auth``
  (:func:`decode_registry_auth`) or, for builds, ``X-Registry-Config`` (:func:`decode_registry_config`), and looked
  up by :func:`auth_key` / :func:`resolve_auth_config` as dockerd does.
* challenges are parsed by :mod:`dockwright.distribution.challenges`.
* :class:`Authorizer` answers the ``Authorization`` header for a request to an endpoint: it remembers the challenges
  each endpoint gave (from a ping of ``/v2/`` or a 401), fetches bearer tokens from the realm (GET with basic
  credentials, or an OAuth2 POST with the identity token as refresh token, falling back to GET), uses a
  ``registrytoken`` as is, and caches tokens per endpoint, scope set and credentials until they expire.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from ssl import SSLContext
from typing import Any

import aiohttp
from multidict import MultiMapping
from yarl import URL

from ..errors import DockwrightError, InvalidArgument, SystemError_, Unauthorized
from ..oci.gojson import parse_rfc3339
from ..oci.jsonobject import json_object
from .challenges import Challenge, parse_www_authenticate
from .errors import RegistryErrorInfo, response_error, transport_error

__all__ = [
    "AuthConfig",
    "decode_registry_auth",
    "decode_registry_config",
    "auth_key",
    "resolve_auth_config",
    "convert_to_hostname",
    "INDEX_SERVER",
    "AUTH_CLIENT_ID",
    "repository_scope",
    "Authorizer",
]

INDEX_SERVER = "https://index.docker.io/v1/"
AUTH_CLIENT_ID = "docker"
MINIMUM_TOKEN_LIFETIME = 60  # seconds, as distribution's token handler
_EXPIRY_MARGIN = 5.0
_TOKEN_TIMEOUT = 15.0


# ---- AuthConfig --------------------------------------------------------------------------------------------------

@dataclass
class AuthConfig:
    """Credentials for one registry, with the API's JSON names."""

    username: str = ""
    password: str = ""
    auth: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    serveraddress: str = ""
    email: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuthConfig:
        """From docker's JSON (keys matched case-insensitively, as Go does); ``auth`` fills username/password."""
        names = {f.name: f.name for f in fields(cls)}
        values: dict[str, str] = {}
        for k, v in d.items():
            name = names.get(str(k).lower())
            if name is not None and isinstance(v, str):
                values[name] = v
        cfg = cls(**values)
        if cfg.auth and not cfg.username and not cfg.password:
            try:
                raw = base64.b64decode(cfg.auth + "=" * (-len(cfg.auth) % 4)).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raw = ""
            user, sep, password = raw.partition(":")
            if sep:
                cfg.username, cfg.password = user, password.strip("\x00")
        return cfg

    def to_dict(self) -> dict[str, str]:
        """The fields that are set, by their JSON names."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    @property
    def is_empty(self) -> bool:
        """No credential of any kind is set."""
        return not (self.username or self.password or self.identitytoken or self.registrytoken or self.auth)

    def fingerprint(self) -> str:
        """A stable, non-reversible key for caches of tokens obtained with these credentials."""
        raw = "\x00".join((self.username, self.password, self.identitytoken, self.registrytoken))
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _b64url_decode(s: str) -> bytes:
    s = "".join(s.split())
    s = s.replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _first_json_value(raw: bytes) -> Any:
    """Go's ``json.Decoder.Decode``: the first JSON value; what follows it is not looked at."""
    text = raw.decode("utf-8")
    try:
        value, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except RecursionError:  # nested deeper than Python's parser goes: undecodable, not a 500
        raise ValueError("exceeded max depth") from None
    return value


def decode_registry_auth(header: str | None, *, strict: bool = False) -> AuthConfig | None:
    """``X-Registry-Auth``: base64url JSON (padding optional, standard base64 accepted too).

    ``""`` (or a missing header) gives ``None``; ``"e30="`` (``{}``) gives an empty AuthConfig. An undecodable
    header gives an empty AuthConfig, as dockerd's pull and push ignore it, unless ``strict``: then
    InvalidArgument "invalid X-Registry-Auth header: …" (moby ``registry.DecodeAuthConfig``).
    """
    if not header:
        return None
    try:
        value = _first_json_value(_b64url_decode(header))
        if not isinstance(value, dict):
            raise ValueError("json: cannot unmarshal into Go value of type registry.AuthConfig")
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        if strict:
            raise InvalidArgument(f"invalid X-Registry-Auth header: {exc}") from exc
        return AuthConfig()
    return AuthConfig.from_dict(value)


def decode_registry_config(header: str | None) -> dict[str, AuthConfig]:
    """``X-Registry-Config`` (build): base64url JSON ``{registry: authconfig}``; decode errors give ``{}``."""
    if not header:
        return {}
    try:
        value = _first_json_value(_b64url_decode(header))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): AuthConfig.from_dict(v) for k, v in value.items() if isinstance(v, dict)}


def auth_key(domain: str) -> str:
    """The key docker files credentials under: ``https://index.docker.io/v1/`` for Docker Hub, else the host."""
    if domain in ("docker.io", "index.docker.io", "registry-1.docker.io", ""):
        return INDEX_SERVER
    return domain


def convert_to_hostname(address: str) -> str:
    """moby's ``ConvertToHostname``: ``https://host:5000/v1/`` → ``host:5000``."""
    stripped = address
    if address.startswith("http://"):
        stripped = address[len("http://"):]
    elif address.startswith("https://"):
        stripped = address[len("https://"):]
    return stripped.split("/", 1)[0]


def resolve_auth_config(configs: Mapping[str, AuthConfig], domain: str) -> AuthConfig:
    """moby's ``ResolveAuthConfig``: the credentials for ``domain`` among a build's X-Registry-Config."""
    key = auth_key(domain)
    official = key == INDEX_SERVER
    if key in configs:
        return configs[key]
    if official:
        return AuthConfig()
    for name, cfg in configs.items():
        if convert_to_hostname(name) == key:
            return cfg
    return AuthConfig()


def repository_scope(path: str, actions: Sequence[str]) -> str:
    """``repository:library/busybox:pull,push``."""
    return f"repository:{path}:{','.join(actions)}"


# ---- the authorizer ----------------------------------------------------------------------------------------------

@dataclass
class _Token:
    value: str
    expires: float


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _parse_issued_at(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return parse_rfc3339(value)


async def _token_request(session: aiohttp.ClientSession, method: str, url: URL, headers: dict[str, str], *,
                         ssl: SSLContext | bool, data: dict[str, str] | None = None) -> bytes:
    """The body of a token server's answer (redirects followed); its error or a transport error otherwise."""
    try:
        async with session.request(method, url, data=data, headers=headers, ssl=ssl, allow_redirects=True,
                                   timeout=aiohttp.ClientTimeout(total=_TOKEN_TIMEOUT)) as resp:
            body = await resp.read()
            if not 200 <= resp.status < 400:
                raise response_error(resp.status, resp.reason or "", resp.headers, body,
                                     method=method, url=str(url))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise transport_error(method, str(url), exc) from exc
    return body


class Authorizer:
    """Authorization for registry requests: challenges per endpoint, bearer tokens, basic credentials.

    One Authorizer is shared by a :class:`~dockwright.distribution.client.RegistryClient` and all its
    repositories. Endpoints are keyed by their base URL (``https://host:5000``); tokens by endpoint, scope set
    and credentials, and are reused until they expire; concurrent requests wait for a single token fetch.
    """

    def __init__(self, *, user_agent: str, client_id: str = AUTH_CLIENT_ID) -> None:
        self.user_agent = user_agent
        self.client_id = client_id
        self._challenges: dict[str, list[Challenge]] = {}
        self._tokens: dict[tuple[str, tuple[str, ...], str], _Token] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    # -- challenges --
    def lock(self, key: Hashable) -> asyncio.Lock:
        """The lock that serialises one piece of work (a ping, a token fetch) named by ``key``."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def known(self, base: str) -> bool:
        """Whether the endpoint at ``base`` was pinged (its challenges, possibly none, are known)."""
        return base in self._challenges

    def challenges(self, base: str) -> list[Challenge]:
        """The challenges the endpoint at ``base`` gave."""
        return list(self._challenges.get(base, ()))

    def set_challenges(self, base: str, challenges: list[Challenge]) -> None:
        """Remember the challenges of a ping of the endpoint at ``base``."""
        self._challenges[base] = list(challenges)

    def add_response(self, base: str, status: int, headers: MultiMapping[str]) -> bool:
        """Learn the challenges of a 401 answer; True if they differ from what was known."""
        if status != 401:
            return False
        new = parse_www_authenticate(headers.getall("WWW-Authenticate", []))
        if not new:
            return False
        old = self._challenges.get(base) or []

        def essence(chs: list[Challenge]) -> set[tuple[str, str, str]]:
            # a 401 also carries scope= and error= (insufficient_scope): not a different way to authenticate
            return {(c.scheme, c.params.get("realm", ""), c.params.get("service", "")) for c in chs}

        if essence(old) == essence(new):
            return False
        self._challenges[base] = new
        return True

    # -- tokens --
    def invalidate(self, base: str, scopes: Sequence[str], auth: AuthConfig | None) -> None:
        """Forget the token for these scopes and credentials (the registry refused it)."""
        self._tokens.pop(self._key(base, scopes, auth), None)

    def _key(self, base: str, scopes: Sequence[str], auth: AuthConfig | None) -> tuple[str, tuple[str, ...], str]:
        return base, tuple(sorted(set(scopes))), (auth.fingerprint() if auth else "")

    def cached(self, base: str, scopes: Sequence[str], auth: AuthConfig | None) -> bool:
        """Whether an unexpired token for these scopes and credentials is cached."""
        tok = self._tokens.get(self._key(base, scopes, auth))
        return tok is not None and tok.expires > time.time()

    async def authorize(self, session: aiohttp.ClientSession, base: str, auth: AuthConfig | None,
                        scopes: Sequence[str], *, ssl: SSLContext | bool = True) -> str | None:
        """The ``Authorization`` value for a request to the endpoint at ``base``, or None.

        Raises Unauthorized("no basic auth credentials") for a basic challenge without credentials, and the
        token server's error (e.g. "unauthorized: incorrect username or password") when it refuses a token.
        The caller wraps these in Go's ``url.Error`` form.
        """
        challenges = self._challenges.get(base) or []
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            if auth is not None and auth.registrytoken:
                return f"Bearer {auth.registrytoken}"
            key = self._key(base, scopes, auth)
            tok = self._tokens.get(key)
            if tok is not None and tok.expires > time.time():
                return f"Bearer {tok.value}"
            async with self.lock(("token", key)):
                tok = self._tokens.get(key)
                if tok is not None and tok.expires > time.time():
                    return f"Bearer {tok.value}"
                value, expires, _ = await self.fetch_token(session, bearer.params, auth, scopes, ssl=ssl)
                self._tokens[key] = _Token(value, expires)
                return f"Bearer {value}"
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if basic is not None:
            if auth is not None and auth.username and auth.password:
                return _basic(auth.username, auth.password)
            raise Unauthorized("no basic auth credentials")
        return None

    async def fetch_token(self, session: aiohttp.ClientSession, params: Mapping[str, str],
                          auth: AuthConfig | None, scopes: Sequence[str], *, ssl: SSLContext | bool = True,
                          offline: bool = False) -> tuple[str, float, str]:
        """A token from the challenge's realm: ``(token, expiry (unix time), refresh token or "")``.

        With an identity token: an OAuth2 POST (``grant_type=refresh_token``), falling back to GET on 404/405;
        otherwise a GET with basic credentials (``account``, ``offline_token`` and ``client_id`` for logins).
        """
        realm = params.get("realm")
        if not realm:
            raise SystemError_("no realm specified for token auth challenge")
        try:
            realm_url = URL(realm)
        except (ValueError, TypeError) as exc:
            raise SystemError_(f"invalid token auth challenge realm: {exc}") from exc
        service = params.get("service", "")
        refresh = auth.identitytoken if auth is not None else ""
        if refresh:
            form = {"scope": " ".join(scopes), "service": service, "client_id": self.client_id,
                    "grant_type": "refresh_token", "refresh_token": refresh}
            try:
                return await self._post_token(session, realm_url, form, refresh, ssl=ssl)
            except DockwrightError as exc:
                info = getattr(exc, "registry", None)
                if not isinstance(info, RegistryErrorInfo) or info.status not in (404, 405):
                    raise
        return await self._get_token(session, realm_url, service, auth, scopes, ssl=ssl, offline=offline)

    async def _post_token(self, session: aiohttp.ClientSession, realm: URL, form: dict[str, str], refresh: str,
                          *, ssl: SSLContext | bool) -> tuple[str, float, str]:
        headers = {"User-Agent": self.user_agent}
        body = await _token_request(session, "POST", realm, headers, ssl=ssl, data=form)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise SystemError_(f"unable to decode token response: {exc}") from exc
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise SystemError_("authorization server did not include a token in the response")
        return token, self._expiry(data), str(data.get("refresh_token") or "")

    async def _get_token(self, session: aiohttp.ClientSession, realm: URL, service: str, auth: AuthConfig | None,
                         scopes: Sequence[str], *, ssl: SSLContext | bool, offline: bool) -> tuple[str, float, str]:
        query: list[tuple[str, str]] = list(realm.query.items())
        if service:
            query.append(("service", service))
        for s in scopes:
            query.append(("scope", s))
        if offline:
            query.append(("offline_token", "true"))
            query.append(("client_id", self.client_id))
        headers = {"User-Agent": self.user_agent}
        if auth is not None and auth.username and auth.password:
            query.append(("account", auth.username))
            headers["Authorization"] = _basic(auth.username, auth.password)
        url = realm.with_query(query)
        body = await _token_request(session, "GET", url, headers, ssl=ssl)
        data = json_object(body, SystemError_, "unable to decode token response")
        token = data.get("access_token") or data.get("token")
        if not isinstance(token, str) or not token:
            raise SystemError_("authorization server did not include a token in the response")
        return token, self._expiry(data), str(data.get("refresh_token") or "")

    @staticmethod
    def _expiry(data: Mapping[str, Any]) -> float:
        expires_in = data.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) and expires_in >= MINIMUM_TOKEN_LIFETIME \
            else MINIMUM_TOKEN_LIFETIME
        issued = _parse_issued_at(data.get("issued_at"))
        now = time.time()
        if issued is None or issued > now + 300:  # no issued_at, or a server clock far ahead
            issued = now
        return issued + lifetime - _EXPIRY_MARGIN
