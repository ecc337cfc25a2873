"""Registry errors: the distribution error body, Go's wording of transport failures, dockerd's pull/push messages.

A registry answers a failed call with ``{"errors": [{"code", "message", "detail"}]}``. This module turns that body
(and the ``WWW-Authenticate`` error parameters, and bodies that are not JSON at all) into dockwright errors the way
docker/distribution v2.8's ``client.HandleErrorResponse`` does, so the text is what dockerd prints:
``manifest unknown: manifest unknown``, ``unauthorized: authentication required``,
``received unexpected HTTP status: 500 Internal Server Error``. A request that failed without an HTTP answer is
worded like Go's ``url.Error``: ``Get "https://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection
refused``.

No exception class is defined here (``dockwright.errors`` owns them). Each error raised by the distribution client
carries a :class:`RegistryErrorInfo` in its ``registry`` attribute (read it with :func:`registry_info`): the parsed
error entries, the HTTP status, whether the failure was at the transport level. :func:`pull_error` and
:func:`push_error` use it to give dockerd's messages for a whole pull or push (moby ``distribution/errors.go``).
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from multidict import MultiMapping
from yarl import URL

from ..errors import (
    DataCorrupted,
    DockwrightError,
    Forbidden,
    InvalidArgument,
    NotFound,
    NotSupported,
    SystemError_,
    Unauthorized,
    Unavailable,
)
from ..reference import Reference
from ..timestamps import go_quote
from .challenges import parse_www_authenticate

__all__ = [
    "ERROR_CODES",
    "ErrorEntry",
    "RegistryErrorInfo",
    "registry_info",
    "parse_error_body",
    "response_error",
    "transport_error",
    "url_error",
    "go_quote",
    "schema1_error",
    "SCHEMA1_REMOVED",
    "pull_error",
    "push_error",
]

# errcode descriptors of docker/distribution (registry/api/errcode and registry/api/v2): value → (message, status)
ERROR_CODES: dict[str, tuple[str, int]] = {
    "UNKNOWN": ("unknown error", 500),
    "UNSUPPORTED": ("The operation is unsupported.", 405),
    "UNAUTHORIZED": ("authentication required", 401),
    "DENIED": ("requested access to the resource is denied", 403),
    "UNAVAILABLE": ("service unavailable", 503),
    "TOOMANYREQUESTS": ("too many requests", 429),
    "DIGEST_INVALID": ("provided digest did not match uploaded content", 400),
    "SIZE_INVALID": ("provided length did not match content length", 400),
    "NAME_INVALID": ("invalid repository name", 400),
    "TAG_INVALID": ("manifest tag did not match URI", 400),
    "NAME_UNKNOWN": ("repository name not known to registry", 404),
    "MANIFEST_UNKNOWN": ("manifest unknown", 404),
    "MANIFEST_INVALID": ("manifest invalid", 400),
    "MANIFEST_UNVERIFIED": ("manifest failed signature verification", 400),
    "MANIFEST_BLOB_UNKNOWN": ("blob unknown to registry", 400),
    "BLOB_UNKNOWN": ("blob unknown to registry", 404),
    "BLOB_UPLOAD_UNKNOWN": ("blob upload unknown to registry", 404),
    "BLOB_UPLOAD_INVALID": ("blob upload invalid", 404),
    "PAGINATION_NUMBER_INVALID": ("invalid number of results requested", 400),
    "RANGE_INVALID": ("invalid content range", 416),
}

_CLASS_BY_CODE: dict[str, type[DockwrightError]] = {
    "UNKNOWN": SystemError_,
    "UNSUPPORTED": NotSupported,
    "UNAUTHORIZED": Unauthorized,
    "DENIED": Forbidden,
    "UNAVAILABLE": Unavailable,
    "TOOMANYREQUESTS": Unavailable,
    "DIGEST_INVALID": DataCorrupted,
    "SIZE_INVALID": DataCorrupted,
    "NAME_INVALID": InvalidArgument,
    "TAG_INVALID": InvalidArgument,
    "NAME_UNKNOWN": NotFound,
    "MANIFEST_UNKNOWN": NotFound,
    "MANIFEST_INVALID": InvalidArgument,
    "MANIFEST_UNVERIFIED": InvalidArgument,
    "MANIFEST_BLOB_UNKNOWN": InvalidArgument,
    "BLOB_UNKNOWN": NotFound,
    "BLOB_UPLOAD_UNKNOWN": NotFound,
    "BLOB_UPLOAD_INVALID": InvalidArgument,
    "PAGINATION_NUMBER_INVALID": InvalidArgument,
    "RANGE_INVALID": InvalidArgument,
}

SCHEMA1_REMOVED = ("Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed.")


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One registry error: an errcode ``Error`` (code, message, detail) or a bare ``ErrorCode``.

    ``code`` is an errcode value ("MANIFEST_UNKNOWN"); a code the registry sent that distribution does not know
    becomes "UNKNOWN", as Go's ``ErrorCode.UnmarshalText`` does. ``code_only`` marks an entry that had neither
    detail nor a message of its own: Go keeps only its ErrorCode, which prints as the bare code words.
    """

    code: str
    message: str = ""
    detail: Any = None
    code_only: bool = False

    @property
    def words(self) -> str:
        """``MANIFEST_UNKNOWN`` → ``manifest unknown``."""
        return self.code.lower().replace("_", " ")

    def __str__(self) -> str:
        return self.words if self.code_only else f"{self.words}: {self.message}"

    @property
    def http_status(self) -> int:
        """The HTTP status distribution gives this error code."""
        return ERROR_CODES.get(self.code, ERROR_CODES["UNKNOWN"])[1]


@dataclass(frozen=True, slots=True)
class RegistryErrorInfo:
    """What the distribution client knows about a failure; attached to the raised error as ``exc.registry``.

    ``errors`` are the parsed entries (empty when the answer could not be parsed or there was no answer);
    ``is_list`` tells an errcode ``Errors`` list from a single ``Error`` (dockerd's login treats only a single
    UNAUTHORIZED ``Error`` as "unauthorized"); ``status`` is the HTTP status of the failing answer;
    ``transport`` is true when no HTTP answer came at all (connection, DNS, TLS, timeout); ``wrapped`` is true
    when the message has Go's ``url.Error`` form ``Method "url": …`` (failures inside the request, such as a
    refused token or missing basic credentials).
    """

    errors: tuple[ErrorEntry, ...] = ()
    is_list: bool = False
    status: int | None = None
    transport: bool = False
    wrapped: bool = False
    method: str = ""
    url: str = ""


def registry_info(exc: BaseException) -> RegistryErrorInfo | None:
    """The :class:`RegistryErrorInfo` the distribution client attached to ``exc``, if any."""
    info = getattr(exc, "registry", None)
    return info if isinstance(info, RegistryErrorInfo) else None


def _attach(exc: DockwrightError, info: RegistryErrorInfo) -> DockwrightError:
    exc.registry = info  # type: ignore[attr-defined]
    return exc


def _go_method(method: str) -> str:
    """``GET`` → ``Get``, as ``url.Error.Op`` prints it."""
    return method[:1].upper() + method[1:].lower()


# ---- parsing error answers ---------------------------------------------------------------------------------------

def _go_json_error(body: bytes) -> str:
    """The message Go's encoding/json gives for a body that is not valid JSON (approximation)."""
    text = body.decode("utf-8", "replace")
    stripped = text.strip()
    if not stripped:
        return "unexpected end of JSON input"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            return "unexpected end of JSON input"
        ch = text[exc.pos]
        if exc.pos == len(text) - len(text.lstrip()):
            return f"invalid character {_go_char(ch)} looking for beginning of value"
        return f"invalid character {_go_char(ch)} after top-level value" if "Extra data" in exc.msg else \
            f"invalid character {_go_char(ch)} looking for beginning of object key string"
    return "json: cannot unmarshal into Go value of type errcode.Errors"


def _go_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == "\n":
        return "'\\n'"
    return f"'{ch}'"


def _entry_from_json(item: Any) -> ErrorEntry:
    if not isinstance(item, dict):
        return ErrorEntry("UNKNOWN", "", None, True)
    lowered = {str(k).lower(): v for k, v in item.items()}  # Go's json is case-insensitive on field names
    code = lowered.get("code")
    code = code if isinstance(code, str) and code in ERROR_CODES else "UNKNOWN"
    message = lowered.get("message")
    message = message if isinstance(message, str) else ""
    detail = lowered.get("detail")
    default = ERROR_CODES[code][0]
    if detail is None and (message == "" or message == default):
        return ErrorEntry(code, default, None, True)
    return ErrorEntry(code, message, detail, False)


@dataclass(frozen=True, slots=True)
class _Parsed:
    entries: tuple[ErrorEntry, ...]
    is_list: bool
    text: str  # the Go error text when entries is empty (UnexpectedHTTPResponseError)


def _make_error(status: int, details: str) -> _Parsed:
    code = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}.get(status, "UNKNOWN")
    return _Parsed((ErrorEntry(code, details),), False, "")


def parse_error_body(status: int, content_type: str | None, body: bytes) -> _Parsed:
    """distribution's ``parseHTTPErrorResponse``: errcode entries, or the text of an unparsable answer."""
    if not content_type:
        return _make_error(status, body.decode("utf-8", "replace"))
    mt = content_type.split(";", 1)[0].strip().lower()
    if mt not in ("application/json", "application/vnd.api+json"):
        return _make_error(status, body.decode("utf-8", "replace"))
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        data = None
        valid = False
    else:
        valid = bool(body.strip())
    if valid and isinstance(data, dict):
        details = {str(k).lower(): v for k, v in data.items()}.get("details")
        if isinstance(details, str) and details:
            return _make_error(status, details)
    if not valid:
        text = (f"error parsing HTTP {status} response body: {_go_json_error(body)}: "
                f"{go_quote(body.decode('utf-8', 'replace'))}")
        return _Parsed((), False, text)
    errors: list[Any] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if str(k).lower() == "errors" and isinstance(v, list):
                errors = v
    if not errors:
        text = (f"error parsing HTTP {status} response body: no error details found in HTTP response body: "
                f"{go_quote(body.decode('utf-8', 'replace'))}")
        return _Parsed((), False, text)
    return _Parsed(tuple(_entry_from_json(e) for e in errors), True, "")


def _entries_text(entries: tuple[ErrorEntry, ...], is_list: bool) -> str:
    if len(entries) == 1:
        return str(entries[0])
    if not entries:
        return "<nil>"
    return "errors:\n" + "".join(f"{e}\n" for e in entries)


def _class_for(entries: tuple[ErrorEntry, ...], status: int | None) -> type[DockwrightError]:
    if entries:
        return _CLASS_BY_CODE.get(entries[0].code, SystemError_)
    if status == 404:
        return NotFound
    if status == 401:
        return Unauthorized
    if status == 403:
        return Forbidden
    if status is not None and (status >= 500 or status == 429):
        return Unavailable
    return SystemError_


def response_error(status: int, reason: str, headers: MultiMapping[str], body: bytes, *, method: str = "",
                   url: str = "") -> DockwrightError:
    """The error for a failed registry answer, as distribution's ``HandleErrorResponse`` words it."""
    if 400 <= status < 500:
        values = headers.getall("WWW-Authenticate", []) if hasattr(headers, "getall") else []
        if status == 401:
            for ch in parse_www_authenticate(values):
                if ch.scheme != "bearer":
                    continue
                err = ch.params.get("error", "")
                code = {"invalid_token": "UNAUTHORIZED", "insufficient_scope": "DENIED"}.get(err)
                if code is None:
                    continue
                first = ErrorEntry(code, ch.params.get("error_description") or ERROR_CODES[code][0])
                rest = parse_error_body(status, headers.get("Content-Type"), body)
                entries = (first, *rest.entries) if rest.entries else (first,)
                # an unparsable rest is kept as one more (unknown) error in Go; its text is not an entry
                info = RegistryErrorInfo(entries, True, status, method=method, url=url)
                text = _entries_text(entries, True)
                if not rest.entries:
                    text = "errors:\n" + str(first) + "\n" + rest.text + "\n"
                return _attach(_class_for(entries, status)(text), info)
        parsed = parse_error_body(status, headers.get("Content-Type"), body)
        if not parsed.entries and status == 401:
            entry = ErrorEntry("UNAUTHORIZED", ERROR_CODES["UNAUTHORIZED"][0], body.decode("utf-8", "replace"))
            parsed = _Parsed((entry,), False, "")
        if parsed.entries:
            info = RegistryErrorInfo(parsed.entries, parsed.is_list, status, method=method, url=url)
            return _attach(_class_for(parsed.entries, status)(_entries_text(parsed.entries, parsed.is_list)), info)
        info = RegistryErrorInfo((), False, status, method=method, url=url)
        return _attach(_class_for((), status)(parsed.text), info)
    info = RegistryErrorInfo((), False, status, method=method, url=url)
    return _attach(_class_for((), status)(f"received unexpected HTTP status: {status} {reason}".rstrip()), info)


# ---- transport failures ------------------------------------------------------------------------------------------

def _host_port(url: str) -> str:
    u = URL(url)
    host = u.host or ""
    if ":" in host:
        host = f"[{host}]"
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{host}:{port}"


def _reason(exc: BaseException, url: str) -> str:
    """Go's wording for a request that got no HTTP answer."""
    hostport = _host_port(url)
    hostname = URL(url).host or ""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_err = exc.certificate_error
        msg = str(getattr(cert_err, "verify_message", "") or cert_err)
        low = msg.lower()
        if "hostname mismatch" in low or "ip address mismatch" in low or "not valid for" in low:
            return f"tls: failed to verify certificate: x509: certificate is not valid for {hostname}"
        if "expired" in low or "not yet valid" in low:
            return "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(exc, (aiohttp.ClientConnectorSSLError, aiohttp.ClientSSLError)) or isinstance(
            getattr(exc, "os_error", None), ssl.SSLError) or isinstance(exc, ssl.SSLError):
        inner = getattr(exc, "os_error", exc)
        text = str(getattr(inner, "reason", "") or inner).upper()
        if any(s in text for s in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST",
                                   "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "RECORD_TOO_LARGE")):
            return "http: server gave HTTP response to HTTPS client"
        return f"remote error: tls: {str(getattr(inner, 'reason', '') or inner).lower().replace('_', ' ')}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(getattr(exc, "os_error", None),
                                                                         socket.gaierror):
        return f"dial tcp: lookup {hostname}: no such host"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"dial tcp {hostport}: i/o timeout"
    if isinstance(exc, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError)):
        return "net/http: request canceled (Client.Timeout exceeded while awaiting headers)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        code = getattr(os_err, "errno", None)
        if code == errno.ECONNREFUSED:
            return f"dial tcp {hostport}: connect: connection refused"
        if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"dial tcp {hostport}: connect: {'network' if code == errno.ENETUNREACH else 'host'} is unreachable"
        return f"dial tcp {hostport}: connect: {(os_err.strerror or str(os_err)).lower()}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "EOF"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "unexpected EOF"
    if isinstance(exc, ConnectionResetError) or isinstance(getattr(exc, "__cause__", None), ConnectionResetError):
        return f"read tcp {hostport}: read: connection reset by peer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def transport_error(method: str, url: str, exc: BaseException) -> Unavailable:
    """``Get "url": dial tcp …: connection refused``: a request that got no HTTP answer (Unavailable)."""
    text = f"{_go_method(method)} {go_quote(url)}: {_reason(exc, url)}"
    err = Unavailable(text)
    _attach(err, RegistryErrorInfo((), False, None, True, True, method.upper(), url))
    return err


def url_error(method: str, url: str, inner: DockwrightError) -> DockwrightError:
    """Go's ``url.Error``: ``inner`` happened while sending ``method url`` (a refused token, no credentials).

    The class and the registry entries of ``inner`` are kept; the message gets the ``Method "url": `` prefix.
    """
    text = f"{_go_method(method)} {go_quote(url)}: {inner}"
    info = registry_info(inner) or RegistryErrorInfo()
    try:
        out = type(inner)(text) if type(inner) is not DockwrightError else SystemError_(text)
    except TypeError:  # a class with another constructor
        out = SystemError_(text)
    # the request itself was not sent: not a transport failure of this URL (the cause may be one, of the realm)
    _attach(out, replace(info, wrapped=True, transport=False, method=method.upper(), url=url))
    out.__cause__ = inner
    return out


def schema1_error(ref: Reference | None) -> InvalidArgument:
    """moby's ``DeprecatedSchema1ImageError``: schema 1 manifests are refused, word for word."""
    msg = SCHEMA1_REMOVED
    if ref is not None:
        msg += (f" Suggest the author of {ref} to upgrade the image to the OCI Format or Docker Image manifest "
                "v2, schema 2.")
    msg += " More information at https://docs.docker.com/go/deprecated-image-specs/"
    return InvalidArgument(msg)


# ---- whole-operation translations --------------------------------------------------------------------------------

def pull_error(ref: Reference, exc: BaseException) -> DockwrightError:
    """moby's ``translatePullError``: the error a whole pull of ``ref`` ends with.

    DENIED, MANIFEST_UNKNOWN and NAME_UNKNOWN become NotFound with dockerd's wording ("pull access denied for
    nope, repository does not exist or may require 'docker login': denied: requested access to the resource is
    denied", "manifest for busybox:nope not found: manifest unknown: manifest unknown", "repository x not found:
    …"); any other registry or transport error becomes a SystemError_ (dockerd's errdefs.Unknown, HTTP 500) with
    the same text (of a list of registry errors only the first is kept, as in Go; a single error keeps its
    ``Head "url": `` prefix when it has one). Errors that are not from the
    registry (schema 1 refusal, invalid arguments, not found platform) pass through; a digest mismatch becomes a
    SystemError_ as in dockerd.
    """
    info = registry_info(exc)
    if info is not None and info.errors:
        first = info.errors[0]
        if not first.code_only:
            if first.code == "DENIED":
                return _attach(NotFound(
                    f"pull access denied for {ref.familiar_name}, repository does not exist or may require "
                    f"'docker login': {first}"), info)
            if first.code == "MANIFEST_UNKNOWN":
                return _attach(NotFound(f"manifest for {ref.familiar()} not found: {first}"), info)
            if first.code == "NAME_UNKNOWN":
                return _attach(NotFound(f"repository {ref.familiar_name} not found: {first}"), info)
        # Go recurses into the first of an errcode list (its text alone); a single error keeps the whole text
        return _attach(SystemError_(str(first) if info.is_list else str(exc)), info)
    if info is not None:
        return _attach(SystemError_(str(exc)), info)
    if isinstance(exc, DataCorrupted):
        return SystemError_(str(exc))
    if isinstance(exc, DockwrightError):
        return exc
    return SystemError_(str(exc) or type(exc).__name__)


def push_error(ref: Reference, exc: BaseException) -> DockwrightError:
    """The error a whole push of ``ref`` ends with (moby's push keeps the registry's words).

    A registry error list is reduced to its first entry, as ``retryOnError`` does ("denied: requested access to
    the resource is denied", "unauthorized: authentication required"); transport errors keep Go's url.Error text.
    """
    info = registry_info(exc)
    if info is not None and info.errors:
        first = info.errors[0]
        cls = _CLASS_BY_CODE.get(first.code, SystemError_)
        return _attach(cls(str(first)), info)
    if info is not None:  # no answer, or one that could not be parsed: dockerd keeps Go's text
        return _attach(SystemError_(str(exc)), info)
    if isinstance(exc, DockwrightError):
        return exc
    return SystemError_(str(exc) or type(exc).__name__)
