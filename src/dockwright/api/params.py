"""Query and header parsing with dockerd's rules (booleans, ints, lists, filters, platforms, auth headers).

Lists: dockerd reads a list parameter as the key repeated (``r.Form["t"]``: ``?t=a&t=b``), never comma-joined
(``?names=a,b`` is one name, ``a,b``), and a scalar as the first value (``r.FormValue``); :func:`strings` and
``request.query.get`` do the same. JSON-valued parameters (``cachefrom``, ``buildargs``, ``filters``…) are one value.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from aiohttp import web

from ..errors import InvalidArgument
from ..filters import Filters
from ..oci.platform import Platform
from ..timestamps import go_quote
from . import bodies
from .versions import Version

__all__ = ["json_value", "bool_value", "bool_default", "int_value", "filters", "json_platform", "api_version",
           "registry_auth", "strings", "platform_specifier", "check_platform_specifier"]


def api_version(request: web.Request) -> Version:
    """The request's API version, as the middleware parsed it from the ``/vX.Y`` prefix (the default without one)."""
    return request["api_version"]  # type: ignore[no-any-return]


def bool_value(request: web.Request, key: str) -> bool:
    """httputils.BoolValue: "", 0, no, false, none are false; anything else true."""
    v = request.query.get(key, "").strip().lower()
    return v not in ("", "0", "no", "false", "none")


def bool_default(request: web.Request, key: str, default: bool) -> bool:
    """:func:`bool_value` of ``key`` when the query has it, else ``default``."""
    if key not in request.query:
        return default
    return bool_value(request, key)


def int_value(request: web.Request, key: str, default: int = 0) -> int:
    """The integer of ``key`` (``default`` when missing or empty); not an integer: InvalidArgument (400)."""
    v = request.query.get(key, "")
    if v == "":
        return default
    try:
        return int(v)
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for {key}: {v}") from exc


def strings(request: web.Request, key: str) -> list[str]:
    """A list parameter: every value of the repeated key, in order (dockerd's ``r.Form[key]``)."""
    return list(request.query.getall(key, []))


# containerd's platforms.Parse (github.com/containerd/platforms, what dockerd 28 vendors)
_OS_AND_VERSION = r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$"
_SPECIFIER = r"^[A-Za-z0-9_.-]+$"
_OS_AND_VERSION_RE = re.compile(_OS_AND_VERSION[:-1] + r"\Z")  # Go's $ is the end of the text
_SPECIFIER_RE = re.compile(_SPECIFIER[:-1] + r"\Z")
_KNOWN_OS = frozenset(("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
                       "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"))
_KNOWN_ARCH = frozenset(("386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64",
                         "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64",
                         "s390", "s390x", "sparc", "sparc64", "wasm"))
_ARCH_NAMES = {"i386": "386", "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}


def check_platform_specifier(spec: str) -> None:
    """Refuse an ``os[(osversion)][/arch[/variant]]`` that containerd's ``platforms.Parse`` refuses, with its words
    (dockerd wraps them as invalid-parameter errors: HTTP 400). A lone word must be a known OS or architecture:
    ``"foobar": unknown operating system or architecture: invalid argument``."""
    if "*" in spec:
        raise InvalidArgument(f"{go_quote(spec)}: wildcards not yet supported: invalid argument")
    parts = spec.split("/", 3)  # Go's SplitN(specifier, "/", 4)
    os_match = _OS_AND_VERSION_RE.match(parts[0])
    if os_match is None:
        raise InvalidArgument(f"{go_quote(parts[0])} is an invalid OS component of {go_quote(spec)}: OSAndVersion "
                              f"specifier component must match {go_quote(_OS_AND_VERSION)}: invalid argument")
    for part in parts[1:]:
        if _SPECIFIER_RE.match(part) is None:
            raise InvalidArgument(f"{go_quote(part)} is an invalid component of {go_quote(spec)}: platform "
                                  f"specifier component must match {go_quote(_SPECIFIER)}: invalid argument")
    if len(parts) == 1:
        os_ = os_match.group(1).lower()
        arch = parts[0].lower()
        if os_ in _KNOWN_OS or os_ == "macos" or _ARCH_NAMES.get(arch, arch) in _KNOWN_ARCH:
            return
        raise InvalidArgument(f"{go_quote(spec)}: unknown operating system or architecture: invalid argument")
    if len(parts) > 3:
        raise InvalidArgument(f"{go_quote(spec)}: cannot parse platform specifier: invalid argument")


def platform_specifier(request: web.Request, key: str = "platform") -> str:
    """The ``os[/arch[/variant]]`` parameter of ``POST /images/create`` and ``POST /build`` (read from API 1.32,
    the first value), checked as dockerd checks it (:func:`check_platform_specifier`); "" when absent."""
    if api_version(request) < (1, 32):
        return ""
    spec = request.query.get(key, "")
    if spec:
        check_platform_specifier(spec)
    return spec


def filters(request: web.Request) -> Filters:
    """The ``filters`` parameter parsed as dockerd's ``filters.FromJSON`` (empty when absent)."""
    return Filters.parse(request.query.get("filters", ""))


def json_platform(request: web.Request, key: str = "platform") -> Platform | None:
    """The JSON ``platform`` parameter (``{"os", "architecture", "variant"}``) as a Platform, None when absent or
    empty; malformed JSON: dockerd's ``failed to parse platform`` 400."""
    raw = request.query.getall(key, [])
    if not raw or raw[0] == "":
        return None
    try:  # Go's syntax errors and depth limit first: no nesting makes this a RecursionError
        value = bodies.loads(raw[0])
    except bodies.GoJSONError as exc:
        raise InvalidArgument(f"failed to parse platform: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("failed to parse platform: not a JSON object")
    try:
        return Platform.parse_json_param(raw[0])
    except RecursionError:  # an object nested deep in a field Go would ignore
        raise InvalidArgument("failed to parse platform: nested too deeply") from None


def json_value(request: web.Request, key: str, default: Any, go_type: str, prefix: str = "") -> Any:
    """A JSON query parameter decoded as dockerd's ``json.Unmarshal`` into its Go type (:func:`bodies.decode_value`,
    Go's words for a value that does not fit); absent or ``null`` is ``default``. Errors are 400s, ``prefix``
    first (dockerd's ``error reading build args: …``)."""
    raw = request.query.get(key, "")
    if not raw:
        return default
    try:
        v = bodies.decode_value(raw, go_type)
    except InvalidArgument as exc:
        raise InvalidArgument(prefix + str(exc)) from None
    if v is None:
        return default
    if go_type == "[]*units.Ulimit":  # a null element is a nil pointer, which the builder skips
        return [{"Name": "", "Hard": 0, "Soft": 0, **u} for u in v if u is not None]
    return v


def registry_auth(request: web.Request) -> dict[str, Any]:
    """X-Registry-Auth: base64url JSON (padding optional); empty or ``e30=`` → {}."""
    raw = request.headers.get("X-Registry-Auth", "")
    if not raw:
        return {}
    try:
        padded = raw + "=" * (-len(raw) % 4)
        data = bodies.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):  # GoJSONError is a ValueError: never RecursionError, whatever the nesting
        try:
            data = bodies.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, TypeError):
            return {}
    return data if isinstance(data, dict) else {}
