"""Typed decoding of JSON request bodies, as dockerd decodes them with Go's ``encoding/json``.

dockerd reads ``POST /containers/create`` and ``POST /commit`` bodies with a ``json.Decoder`` into typed structs
(``runconfig.ContainerConfigWrapper``: ``container.Config`` and ``container.HostConfig`` embedded, plus the inner
``HostConfig`` and ``NetworkingConfig``). A body that does not fit is refused with 400 and Go's words
(moby ``runconfig.loadJSON``, v23 and later): ``invalid JSON: json: cannot unmarshal number into Go struct field
ContainerConfigWrapper.Cmd of type string``; ``invalid JSON: invalid character 'x' looking for beginning of value``;
``invalid JSON: invalid character '[' exceeded max depth`` (Go's scanner stops at 10000 levels of nesting);
``unexpected content after JSON``.

The decoder has two stages, as Go's:

* **Syntax** (:func:`first_value`): the first JSON value of the body. The C ``json`` module parses it when it can;
  when it cannot (a syntax error, nesting deeper than Python's recursion limit, invalid UTF-8, ``NaN``) an iterative
  port of Go's scanner finds Go's error — or the value, for a valid body nested deeper than the C parser goes. No
  input can raise ``RecursionError``.
* **Types** (:class:`_Typed`): the value is walked against :data:`_TYPES`, the Go types of the wrapper as
  ``encoding/json`` sees them, with Go's rules: field names matched exactly, then case-insensitively; unknown
  fields ignored; ``null`` clears pointers, slices and maps and leaves everything else alone; numbers into integer
  fields must be integral and in range; ``strslice.StrSlice`` (``Cmd``, ``Entrypoint``, ``Shell``, ``CapAdd``,
  ``CapDrop``) takes a string or an array of strings; the first type error wins, except that an error inside a
  ``StrSlice`` (a Go ``UnmarshalJSON``) ends the decoding at once. The result holds the fields the body set, under
  their Go names, with values of the right Python type.

Why one module of ~800 lines: the two stages share the scanner's internal value types (objects as pair lists,
numbers as their text) and its error constructors, which nothing else should use; split, they would become public
API of a module of their own. About 170 of the lines are the generated :data:`_TYPES` table.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument

__all__ = ["CreateBody", "decode_create", "decode_commit", "decode_value", "go_kind", "loads",
           "first_value", "GoJSONError", "MAX_DEPTH"]

MAX_DEPTH = 10000  # Go's encoding/json scanner: maxNestingDepth


class GoJSONError(ValueError):
    """A body Go's ``json.Decoder`` refuses, with Go's error text; ``eof`` for a body with no value at all."""

    def __init__(self, message: str, *, eof: bool = False) -> None:
        super().__init__(message)
        self.eof = eof


# ---- stage 1: the first JSON value, with Go's syntax errors ------------------------------------------------------
class _Object(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs in order: Go decodes duplicate keys one after the other."""


class _Number:
    """A JSON number as its literal: Go's errors quote it (``number 1.5``) and its target type decides."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Constant(Exception):
    """``NaN`` or ``Infinity``: Python's json accepts them, Go does not (the slow path gives Go's error)."""


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Go's strings: every byte of an invalid UTF-8 sequence becomes U+FFFD."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("dockwright.go-replace", _go_replace)

_TYPED_JSON = json.JSONDecoder(object_pairs_hook=_Object, parse_int=_Number, parse_float=_Number,
                               parse_constant=_reject_constant)
_PLAIN_JSON = json.JSONDecoder(parse_constant=_reject_constant)
_WS = re.compile(rb"[ \t\r\n]*")
_WS_TEXT = re.compile("[ \t\r\n]*")
_PLAIN_STRING = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'bfnrt\\/"')
_SURROGATE = re.compile("[\ud800-\udfff]")
_GO_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
               0x5C: "\\\\"}


def _quote_char(c: int) -> str:
    """Go's ``quoteChar``: the byte as strconv.Quote writes the rune of the same value, in single quotes."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    if c in _GO_ESCAPES:
        return f"'{_GO_ESCAPES[c]}'"
    if c < 0x20 or c == 0x7F:
        return f"'\\x{c:02x}'"
    ch = chr(c)
    return f"'{ch}'" if ch.isprintable() else f"'\\u{c:04x}'"


def _invalid(c: int, context: str) -> GoJSONError:
    return GoJSONError(f"invalid character {_quote_char(c)} {context}")


def _unexpected_eof() -> GoJSONError:
    return GoJSONError("unexpected EOF")


def _text(s: str) -> str:
    """A decoded string as Go has it: an escaped lone surrogate (``"\\ud800"``) is U+FFFD."""
    return _SURROGATE.sub("\ufffd", s) if _SURROGATE.search(s) else s


def _skip(data: bytes, i: int) -> int:
    return _WS.match(data, i).end()  # type: ignore[union-attr]


def _scan_string(data: bytes, i: int) -> tuple[str, int]:
    """The string literal at ``data[i] == '"'``: its value and the index after it."""
    n = len(data)
    j = i + 1
    while True:
        j = _PLAIN_STRING.match(data, j).end()  # type: ignore[union-attr]
        if j >= n:
            raise _unexpected_eof()
        c = data[j]
        if c == 0x22:  # "
            break
        if c == 0x5C:  # backslash
            j += 1
            if j >= n:
                raise _unexpected_eof()
            e = data[j]
            if e in _ESCAPES:
                j += 1
                continue
            if e != 0x75:  # u
                raise _invalid(e, "in string escape code")
            for _ in range(4):
                j += 1
                if j >= n:
                    raise _unexpected_eof()
                if data[j] not in _HEX:
                    raise _invalid(data[j], "in \\u hexadecimal character escape")
            j += 1
            continue
        raise _invalid(c, "in string literal")  # a control character
    literal = data[i:j + 1].decode("utf-8", "dockwright.go-replace")
    return _text(json.loads(literal)), j + 1


def _scan_number(data: bytes, i: int) -> tuple[str, int]:
    """The number literal at ``i`` (Go's number states); EOF where the literal is incomplete is unexpected."""
    n = len(data)
    start = i
    if data[i] == 0x2D:  # -
        i += 1
        if i >= n:
            raise _unexpected_eof()
        if not 0x30 <= data[i] <= 0x39:
            raise _invalid(data[i], "in numeric literal")
    if data[i] == 0x30:
        i += 1
    else:
        i = _DIGITS.match(data, i + 1).end()  # type: ignore[union-attr]
    if i < n and data[i] == 0x2E:  # .
        i += 1
        if i >= n:
            raise _unexpected_eof()
        if not 0x30 <= data[i] <= 0x39:
            raise _invalid(data[i], "after decimal point in numeric literal")
        i = _DIGITS.match(data, i).end()  # type: ignore[union-attr]
    if i < n and data[i] in (0x65, 0x45):  # e E
        i += 1
        if i < n and data[i] in (0x2B, 0x2D):
            i += 1
        if i >= n:
            raise _unexpected_eof()
        if not 0x30 <= data[i] <= 0x39:
            raise _invalid(data[i], "in exponent of numeric literal")
        i = _DIGITS.match(data, i).end()  # type: ignore[union-attr]
    return data[start:i].decode("ascii"), i


_LITERALS = {0x74: (b"true", True), 0x66: (b"false", False), 0x6E: (b"null", None)}


def _scan(data: bytes, i: int, make_object: Callable[[list[tuple[str, Any]]], Any],
          make_number: Callable[[str], Any]) -> tuple[Any, int]:
    """Go's scanner over the value at ``data[i]`` (not a space), without recursion: the value and the index after
    it, or Go's error. Containers being read are kept on an explicit stack of ``[items, is_object, key]``."""
    n = len(data)
    stack: list[list[Any]] = []
    while True:
        # -- a value starts at i ------------------------------------------------------------------------------
        c = data[i]
        value: Any
        if c == 0x7B or c == 0x5B:  # { [
            is_object = c == 0x7B
            stack.append([[], is_object, None])
            if len(stack) > MAX_DEPTH:
                raise _invalid(c, "exceeded max depth")
            i = _skip(data, i + 1)
            if i >= n:
                raise _unexpected_eof()
            c = data[i]
            if c == (0x7D if is_object else 0x5D):  # } ]
                stack.pop()
                value = make_object([]) if is_object else []
                i += 1
            elif not is_object:
                continue
            elif c != 0x22:
                raise _invalid(c, "looking for beginning of object key string")
            else:
                i = _object_key(data, i, stack[-1])
                continue
        elif c == 0x22:
            value, i = _scan_string(data, i)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            text, i = _scan_number(data, i)
            value = make_number(text)
        elif c in _LITERALS:
            word, value = _LITERALS[c]
            for k in range(1, len(word)):
                if i + k >= n:
                    raise _unexpected_eof()
                if data[i + k] != word[k]:
                    raise _invalid(data[i + k], f"in literal {word.decode()} (expecting '{chr(word[k])}')")
            i += len(word)
        else:
            raise _invalid(c, "looking for beginning of value")
        # -- after a value: add it to its container, close containers, find where the next value starts --------
        while True:
            if not stack:
                return value, i
            frame = stack[-1]
            if frame[1]:
                frame[0].append((frame[2], value))
            else:
                frame[0].append(value)
            i = _skip(data, i)
            if i >= n:
                raise _unexpected_eof()
            c = data[i]
            if c == 0x2C:  # ,
                i = _skip(data, i + 1)
                if i >= n:
                    raise _unexpected_eof()
                if frame[1]:
                    if data[i] != 0x22:
                        raise _invalid(data[i], "looking for beginning of object key string")
                    i = _object_key(data, i, frame)
                break
            if c == (0x7D if frame[1] else 0x5D):
                stack.pop()
                value = make_object(frame[0]) if frame[1] else frame[0]
                i += 1
                continue
            raise _invalid(c, "after object key:value pair" if frame[1] else "after array element")


def _object_key(data: bytes, i: int, frame: list[Any]) -> int:
    """The key at ``data[i] == '"'`` and its colon; the index where the value starts."""
    frame[2], i = _scan_string(data, i)
    i = _skip(data, i)
    if i >= len(data):
        raise _unexpected_eof()
    if data[i] != 0x3A:  # :
        raise _invalid(data[i], "after object key")
    i = _skip(data, i + 1)
    if i >= len(data):
        raise _unexpected_eof()
    return i


def _plain_number(text: str) -> int | float:
    if "." in text or "e" in text or "E" in text:
        return float(text)
    try:
        return int(text)
    except ValueError:  # more digits than Python converts: as a float64, as Go has it
        return float(text)


def first_value(raw: bytes, *, typed: bool = False) -> tuple[Any, bool]:
    """Go's ``Decoder.Decode`` of the body's first value and then ``Decoder.More``: ``(value, more)``.

    ``typed``: objects as :class:`_Object` pairs and numbers as :class:`_Number` (for :class:`_Typed`); otherwise
    plain dicts, ints and floats. Raises :class:`GoJSONError` (``eof`` set when there is no value at all)."""
    i = _skip(raw, 0)
    if i >= len(raw):
        raise GoJSONError("EOF", eof=True)
    try:
        if raw[i] == 0x2D or 0x30 <= raw[i] <= 0x39:
            raise ValueError("a number at the top: Python stops before a '.' or 'e' that Go reads as part of it")
        text = raw.decode("utf-8")
        value, end = (_TYPED_JSON if typed else _PLAIN_JSON).raw_decode(text, i)
        tail: bytes | str = text
    except (ValueError, RecursionError, _Constant):
        if typed:
            value, end = _scan(raw, i, _Object, _Number)
        else:
            value, end = _scan(raw, i, dict, _plain_number)
        tail = raw
    if isinstance(tail, str):
        ws_text = _WS_TEXT.match(tail, end)
        end = ws_text.end() if ws_text else end
    else:
        ws = _WS.match(tail, end)
        end = ws.end() if ws else end
    more = end < len(tail) and tail[end:end + 1] not in ("]", "}", b"]", b"}")
    return value, more


def loads(raw: bytes | str) -> Any:
    """A whole JSON document with Go's syntax rules and depth limit (never RecursionError): plain Python values.
    Raises :class:`GoJSONError`; content after the value is an error (``json.Unmarshal``'s rule)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    value, more = first_value(data)
    if more:
        raise GoJSONError("unexpected content after JSON")
    return value


# ---- stage 2: the value against the Go types ----------------------------------------------------------------
# The Go types of runconfig.ContainerConfigWrapper as encoding/json resolves them (moby v25.0.0; field lists after
# Go's rules for embedded structs, each under the name JSON uses), keyed by the type's Go name, which is also the
# name Go's errors give. Kinds: ("string",) ("bool",) ("int"|"uint"|"float", bits) ("slice"|"ptr", elem)
# ("array", len, elem) ("map", key, elem) ("strslice",) ("struct", name, fields). A field of the wrapper itself
# names the embedded struct it belongs to ("Config" or "HostConfig") as its third item.
# Generated with reflect from moby's types; regenerate (and review the diff) when moving to newer API types.
_TYPES: dict[str, tuple[Any, ...]] = {
    "runconfig.ContainerConfigWrapper": ("struct", "ContainerConfigWrapper", (
        ("Hostname", "string", "Config"), ("Domainname", "string", "Config"), ("User", "string", "Config"),
        ("AttachStdin", "bool", "Config"), ("AttachStdout", "bool", "Config"), ("AttachStderr", "bool", "Config"),
        ("ExposedPorts", "nat.PortSet", "Config"), ("Tty", "bool", "Config"), ("OpenStdin", "bool", "Config"),
        ("StdinOnce", "bool", "Config"), ("Env", "[]string", "Config"), ("Cmd", "strslice.StrSlice", "Config"),
        ("Healthcheck", "*v1.HealthcheckConfig", "Config"), ("ArgsEscaped", "bool", "Config"),
        ("Image", "string", "Config"), ("Volumes", "map[string]struct {}", "Config"),
        ("WorkingDir", "string", "Config"), ("Entrypoint", "strslice.StrSlice", "Config"),
        ("NetworkDisabled", "bool", "Config"), ("MacAddress", "string", "Config"), ("OnBuild", "[]string", "Config"),
        ("Labels", "map[string]string", "Config"), ("StopSignal", "string", "Config"),
        ("StopTimeout", "*int", "Config"), ("Shell", "strslice.StrSlice", "Config"),
        ("HostConfig", "*container.HostConfig"), ("Cpuset", "string"),
        ("NetworkingConfig", "*network.NetworkingConfig"), ("Binds", "[]string", "HostConfig"),
        ("ContainerIDFile", "string", "HostConfig"), ("LogConfig", "container.LogConfig", "HostConfig"),
        ("NetworkMode", "container.NetworkMode", "HostConfig"), ("PortBindings", "nat.PortMap", "HostConfig"),
        ("RestartPolicy", "container.RestartPolicy", "HostConfig"), ("AutoRemove", "bool", "HostConfig"),
        ("VolumeDriver", "string", "HostConfig"), ("VolumesFrom", "[]string", "HostConfig"),
        ("ConsoleSize", "[2]uint", "HostConfig"), ("Annotations", "map[string]string", "HostConfig"),
        ("CapAdd", "strslice.StrSlice", "HostConfig"), ("CapDrop", "strslice.StrSlice", "HostConfig"),
        ("CgroupnsMode", "container.CgroupnsMode", "HostConfig"), ("Dns", "[]string", "HostConfig"),
        ("DnsOptions", "[]string", "HostConfig"), ("DnsSearch", "[]string", "HostConfig"),
        ("ExtraHosts", "[]string", "HostConfig"), ("GroupAdd", "[]string", "HostConfig"),
        ("IpcMode", "container.IpcMode", "HostConfig"), ("Cgroup", "container.CgroupSpec", "HostConfig"),
        ("Links", "[]string", "HostConfig"), ("OomScoreAdj", "int", "HostConfig"),
        ("PidMode", "container.PidMode", "HostConfig"), ("Privileged", "bool", "HostConfig"),
        ("PublishAllPorts", "bool", "HostConfig"), ("ReadonlyRootfs", "bool", "HostConfig"),
        ("SecurityOpt", "[]string", "HostConfig"), ("StorageOpt", "map[string]string", "HostConfig"),
        ("Tmpfs", "map[string]string", "HostConfig"), ("UTSMode", "container.UTSMode", "HostConfig"),
        ("UsernsMode", "container.UsernsMode", "HostConfig"), ("ShmSize", "int64", "HostConfig"),
        ("Sysctls", "map[string]string", "HostConfig"), ("Runtime", "string", "HostConfig"),
        ("Isolation", "container.Isolation", "HostConfig"), ("CpuShares", "int64", "HostConfig"),
        ("Memory", "int64", "HostConfig"), ("NanoCpus", "int64", "HostConfig"),
        ("CgroupParent", "string", "HostConfig"), ("BlkioWeight", "uint16", "HostConfig"),
        ("BlkioWeightDevice", "[]*blkiodev.WeightDevice", "HostConfig"),
        ("BlkioDeviceReadBps", "[]*blkiodev.ThrottleDevice", "HostConfig"),
        ("BlkioDeviceWriteBps", "[]*blkiodev.ThrottleDevice", "HostConfig"),
        ("BlkioDeviceReadIOps", "[]*blkiodev.ThrottleDevice", "HostConfig"),
        ("BlkioDeviceWriteIOps", "[]*blkiodev.ThrottleDevice", "HostConfig"), ("CpuPeriod", "int64", "HostConfig"),
        ("CpuQuota", "int64", "HostConfig"), ("CpuRealtimePeriod", "int64", "HostConfig"),
        ("CpuRealtimeRuntime", "int64", "HostConfig"), ("CpusetCpus", "string", "HostConfig"),
        ("CpusetMems", "string", "HostConfig"), ("Devices", "[]container.DeviceMapping", "HostConfig"),
        ("DeviceCgroupRules", "[]string", "HostConfig"),
        ("DeviceRequests", "[]container.DeviceRequest", "HostConfig"), ("KernelMemory", "int64", "HostConfig"),
        ("KernelMemoryTCP", "int64", "HostConfig"), ("MemoryReservation", "int64", "HostConfig"),
        ("MemorySwap", "int64", "HostConfig"), ("MemorySwappiness", "*int64", "HostConfig"),
        ("OomKillDisable", "*bool", "HostConfig"), ("PidsLimit", "*int64", "HostConfig"),
        ("Ulimits", "[]*units.Ulimit", "HostConfig"), ("CpuCount", "int64", "HostConfig"),
        ("CpuPercent", "int64", "HostConfig"), ("IOMaximumIOps", "uint64", "HostConfig"),
        ("IOMaximumBandwidth", "uint64", "HostConfig"), ("Mounts", "[]mount.Mount", "HostConfig"),
        ("MaskedPaths", "[]string", "HostConfig"), ("ReadonlyPaths", "[]string", "HostConfig"),
        ("Init", "*bool", "HostConfig"),
    )),
    "blkiodev.ThrottleDevice": ("struct", "ThrottleDevice", (
        ("Path", "string"), ("Rate", "uint64"),
    )),
    "blkiodev.WeightDevice": ("struct", "WeightDevice", (
        ("Path", "string"), ("Weight", "uint16"),
    )),
    "container.DeviceMapping": ("struct", "DeviceMapping", (
        ("PathOnHost", "string"), ("PathInContainer", "string"), ("CgroupPermissions", "string"),
    )),
    "container.DeviceRequest": ("struct", "DeviceRequest", (
        ("Driver", "string"), ("Count", "int"), ("DeviceIDs", "[]string"), ("Capabilities", "[][]string"),
        ("Options", "map[string]string"),
    )),
    "container.HostConfig": ("struct", "HostConfig", (
        ("Binds", "[]string"), ("ContainerIDFile", "string"), ("LogConfig", "container.LogConfig"),
        ("NetworkMode", "container.NetworkMode"), ("PortBindings", "nat.PortMap"),
        ("RestartPolicy", "container.RestartPolicy"), ("AutoRemove", "bool"), ("VolumeDriver", "string"),
        ("VolumesFrom", "[]string"), ("ConsoleSize", "[2]uint"), ("Annotations", "map[string]string"),
        ("CapAdd", "strslice.StrSlice"), ("CapDrop", "strslice.StrSlice"), ("CgroupnsMode", "container.CgroupnsMode"),
        ("Dns", "[]string"), ("DnsOptions", "[]string"), ("DnsSearch", "[]string"), ("ExtraHosts", "[]string"),
        ("GroupAdd", "[]string"), ("IpcMode", "container.IpcMode"), ("Cgroup", "container.CgroupSpec"),
        ("Links", "[]string"), ("OomScoreAdj", "int"), ("PidMode", "container.PidMode"), ("Privileged", "bool"),
        ("PublishAllPorts", "bool"), ("ReadonlyRootfs", "bool"), ("SecurityOpt", "[]string"),
        ("StorageOpt", "map[string]string"), ("Tmpfs", "map[string]string"), ("UTSMode", "container.UTSMode"),
        ("UsernsMode", "container.UsernsMode"), ("ShmSize", "int64"), ("Sysctls", "map[string]string"),
        ("Runtime", "string"), ("Isolation", "container.Isolation"), ("CpuShares", "int64"), ("Memory", "int64"),
        ("NanoCpus", "int64"), ("CgroupParent", "string"), ("BlkioWeight", "uint16"),
        ("BlkioWeightDevice", "[]*blkiodev.WeightDevice"), ("BlkioDeviceReadBps", "[]*blkiodev.ThrottleDevice"),
        ("BlkioDeviceWriteBps", "[]*blkiodev.ThrottleDevice"), ("BlkioDeviceReadIOps", "[]*blkiodev.ThrottleDevice"),
        ("BlkioDeviceWriteIOps", "[]*blkiodev.ThrottleDevice"), ("CpuPeriod", "int64"), ("CpuQuota", "int64"),
        ("CpuRealtimePeriod", "int64"), ("CpuRealtimeRuntime", "int64"), ("CpusetCpus", "string"),
        ("CpusetMems", "string"), ("Devices", "[]container.DeviceMapping"), ("DeviceCgroupRules", "[]string"),
        ("DeviceRequests", "[]container.DeviceRequest"), ("KernelMemory", "int64"), ("KernelMemoryTCP", "int64"),
        ("MemoryReservation", "int64"), ("MemorySwap", "int64"), ("MemorySwappiness", "*int64"),
        ("OomKillDisable", "*bool"), ("PidsLimit", "*int64"), ("Ulimits", "[]*units.Ulimit"), ("CpuCount", "int64"),
        ("CpuPercent", "int64"), ("IOMaximumIOps", "uint64"), ("IOMaximumBandwidth", "uint64"),
        ("Mounts", "[]mount.Mount"), ("MaskedPaths", "[]string"), ("ReadonlyPaths", "[]string"), ("Init", "*bool"),
    )),
    "container.LogConfig": ("struct", "LogConfig", (
        ("Type", "string"), ("Config", "map[string]string"),
    )),
    "container.RestartPolicy": ("struct", "RestartPolicy", (
        ("Name", "container.RestartPolicyMode"), ("MaximumRetryCount", "int"),
    )),
    "mount.BindOptions": ("struct", "BindOptions", (
        ("Propagation", "mount.Propagation"), ("NonRecursive", "bool"), ("CreateMountpoint", "bool"),
        ("ReadOnlyNonRecursive", "bool"), ("ReadOnlyForceRecursive", "bool"),
    )),
    "mount.ClusterOptions": ("struct", "ClusterOptions", ()),
    "mount.Driver": ("struct", "Driver", (
        ("Name", "string"), ("Options", "map[string]string"),
    )),
    "mount.Mount": ("struct", "Mount", (
        ("Type", "mount.Type"), ("Source", "string"), ("Target", "string"), ("ReadOnly", "bool"),
        ("Consistency", "mount.Consistency"), ("BindOptions", "*mount.BindOptions"),
        ("VolumeOptions", "*mount.VolumeOptions"), ("TmpfsOptions", "*mount.TmpfsOptions"),
        ("ClusterOptions", "*mount.ClusterOptions"),
    )),
    "mount.TmpfsOptions": ("struct", "TmpfsOptions", (
        ("SizeBytes", "int64"), ("Mode", "fs.FileMode"),
    )),
    "mount.VolumeOptions": ("struct", "VolumeOptions", (
        ("NoCopy", "bool"), ("Labels", "map[string]string"), ("DriverConfig", "*mount.Driver"),
    )),
    "nat.PortBinding": ("struct", "PortBinding", (
        ("HostIp", "string"), ("HostPort", "string"),
    )),
    "network.EndpointIPAMConfig": ("struct", "EndpointIPAMConfig", (
        ("IPv4Address", "string"), ("IPv6Address", "string"), ("LinkLocalIPs", "[]string"),
    )),
    "network.EndpointSettings": ("struct", "EndpointSettings", (
        ("IPAMConfig", "*network.EndpointIPAMConfig"), ("Links", "[]string"), ("Aliases", "[]string"),
        ("MacAddress", "string"), ("NetworkID", "string"), ("EndpointID", "string"), ("Gateway", "string"),
        ("IPAddress", "string"), ("IPPrefixLen", "int"), ("IPv6Gateway", "string"), ("GlobalIPv6Address", "string"),
        ("GlobalIPv6PrefixLen", "int"), ("DriverOpts", "map[string]string"), ("DNSNames", "[]string"),
    )),
    "network.NetworkingConfig": ("struct", "NetworkingConfig", (
        ("EndpointsConfig", "map[string]*network.EndpointSettings"),
    )),
    "struct {}": ("struct", "", ()),
    "units.Ulimit": ("struct", "Ulimit", (
        ("Name", "string"), ("Hard", "int64"), ("Soft", "int64"),
    )),
    "v1.HealthcheckConfig": ("struct", "HealthcheckConfig", (
        ("Test", "[]string"), ("Interval", "time.Duration"), ("Timeout", "time.Duration"),
        ("StartPeriod", "time.Duration"), ("StartInterval", "time.Duration"), ("Retries", "int"),
    )),
    "*blkiodev.ThrottleDevice": ("ptr", "blkiodev.ThrottleDevice"),
    "*blkiodev.WeightDevice": ("ptr", "blkiodev.WeightDevice"), "*bool": ("ptr", "bool"),
    "*container.HostConfig": ("ptr", "container.HostConfig"), "*int": ("ptr", "int"), "*int64": ("ptr", "int64"),
    "*mount.BindOptions": ("ptr", "mount.BindOptions"), "*mount.ClusterOptions": ("ptr", "mount.ClusterOptions"),
    "*mount.Driver": ("ptr", "mount.Driver"), "*mount.TmpfsOptions": ("ptr", "mount.TmpfsOptions"),
    "*mount.VolumeOptions": ("ptr", "mount.VolumeOptions"),
    "*network.EndpointIPAMConfig": ("ptr", "network.EndpointIPAMConfig"),
    "*network.EndpointSettings": ("ptr", "network.EndpointSettings"),
    "*network.NetworkingConfig": ("ptr", "network.NetworkingConfig"), "*units.Ulimit": ("ptr", "units.Ulimit"),
    "*v1.HealthcheckConfig": ("ptr", "v1.HealthcheckConfig"), "[2]uint": ("array", 2, "uint"),
    "[]*blkiodev.ThrottleDevice": ("slice", "*blkiodev.ThrottleDevice"),
    "[]*blkiodev.WeightDevice": ("slice", "*blkiodev.WeightDevice"), "[]*units.Ulimit": ("slice", "*units.Ulimit"),
    "[][]string": ("slice", "[]string"), "[]container.DeviceMapping": ("slice", "container.DeviceMapping"),
    "[]container.DeviceRequest": ("slice", "container.DeviceRequest"), "[]mount.Mount": ("slice", "mount.Mount"),
    "[]nat.PortBinding": ("slice", "nat.PortBinding"), "[]string": ("slice", "string"), "bool": ("bool",),
    "container.CgroupSpec": ("string",), "container.CgroupnsMode": ("string",), "container.IpcMode": ("string",),
    "container.Isolation": ("string",), "container.NetworkMode": ("string",), "container.PidMode": ("string",),
    "container.RestartPolicyMode": ("string",), "container.UTSMode": ("string",), "container.UsernsMode": ("string",),
    "fs.FileMode": ("uint", 32), "int": ("int", 64), "int64": ("int", 64),
    "map[string]*network.EndpointSettings": ("map", "string", "*network.EndpointSettings"),
    "map[string]string": ("map", "string", "string"), "map[string]struct {}": ("map", "string", "struct {}"),
    "*string": ("ptr", "string"), "map[string]*string": ("map", "string", "*string"),  # the build's buildargs
    "mount.Consistency": ("string",), "mount.Propagation": ("string",), "mount.Type": ("string",),
    "nat.Port": ("string",), "nat.PortMap": ("map", "nat.Port", "[]nat.PortBinding"),
    "nat.PortSet": ("map", "nat.Port", "struct {}"), "string": ("string",), "strslice.StrSlice": ("strslice",),
    "time.Duration": ("int", 64), "uint": ("uint", 64), "uint16": ("uint", 16), "uint64": ("uint", 64),

}
_ROOT = "runconfig.ContainerConfigWrapper"

_UNSET: Any = object()


class _Fatal(Exception):
    """An error from a Go ``UnmarshalJSON`` (``StrSlice``): it ends the decoding at once."""


def go_kind(v: Any) -> str:
    """How Go's UnmarshalTypeError names a JSON value of :func:`first_value` (typed or not)."""
    if isinstance(v, (_Object, dict)):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if v is True or v is False:
        return "bool"
    return "number"


def _zero(tid: str) -> Any:
    t = _TYPES[tid]
    kind = t[0]
    if kind == "struct":
        return {}
    if kind == "string":
        return ""
    if kind == "bool":
        return False
    if kind in ("int", "uint"):
        return 0
    if kind == "float":
        return 0.0
    if kind == "array":
        return [_zero(t[2]) for _ in range(t[1])]
    return None  # ptr, slice, map, strslice


_INTEGER = re.compile(r"-?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


def _number(text: str, kind: str, bits: int) -> int | float | None:
    """strconv.ParseInt/ParseUint/ParseFloat as encoding/json calls them, with the overflow check of the field's
    size: None where Go refuses (``1.5`` or ``1e3`` into an integer, out of range)."""
    try:
        if kind == "int":
            if not _INTEGER.fullmatch(text):
                return None
            n = int(text)
            return n if -(1 << (bits - 1)) <= n < (1 << (bits - 1)) else None
        if kind == "uint":
            if not _UNSIGNED.fullmatch(text):
                return None
            n = int(text)
            return n if n < (1 << bits) else None
        f = float(text)
    except ValueError:  # more digits than Python converts: out of range for Go too
        return None
    limit = 3.4028234663852886e38 if bits == 32 else 1.7976931348623157e308
    return f if abs(f) <= limit else None


_FIELDS: dict[str, tuple[dict[str, tuple[str, ...]], list[tuple[str, tuple[str, ...]]]]] = {}


def _field(tid: str, key: str) -> tuple[str, ...] | None:
    """Go's field lookup: the exact name, else the first field whose name equals the key case-insensitively
    (Go's fold also maps the Kelvin sign to k and the long s to s)."""
    table = _FIELDS.get(tid)
    if table is None:
        fields = _TYPES[tid][2]
        table = _FIELDS[tid] = ({f[0]: f for f in fields}, [(f[0].lower(), f) for f in fields])
    exact = table[0].get(key)
    if exact is not None:
        return exact
    folded = key.replace("\u017f", "s").lower()
    if not folded.isascii():
        return None
    for name, f in table[1]:
        if name == folded:
            return f
    return None


class _Typed:
    """One decoding: Go's ``decodeState`` for typed targets — the first saved error, and the error context (the
    struct being decoded and the path of field names from the root) that Go's messages carry."""

    def __init__(self) -> None:
        self.saved: str | None = None
        self.struct: str | None = None
        self.path: list[str] = []

    def message(self, what: str, go_type: str) -> str:
        if self.struct is not None or self.path:
            return (f"json: cannot unmarshal {what} into Go struct field {self.struct}.{'.'.join(self.path)} "
                    f"of type {go_type}")
        return f"json: cannot unmarshal {what} into Go value of type {go_type}"

    def save(self, what: str, go_type: str) -> None:
        if self.saved is None:
            self.saved = self.message(what, go_type)

    def value(self, v: Any, tid: str, cur: Any, touched: set[str] | None = None) -> Any:
        """``v`` decoded into a target of type ``tid`` that holds ``cur`` (``_UNSET``: the zero value); returns
        the new value, or ``_UNSET``/``cur`` where Go leaves the target alone."""
        t = _TYPES[tid]
        kind = t[0]
        if v is None:  # null: clears pointers, slices and maps; anything else is left as it is
            return None if kind in ("ptr", "slice", "map", "strslice") else cur
        if kind == "ptr":
            out = self.value(v, t[1], _UNSET if cur is None else cur, touched)
            return _zero(t[1]) if out is _UNSET else out
        if kind == "strslice":
            return self.strslice(v)
        if kind == "string":
            if isinstance(v, str):
                return _text(v)
        elif kind == "bool":
            if v is True or v is False:
                return v
        elif kind in ("int", "uint", "float"):
            if isinstance(v, _Number):
                n = _number(v.text, kind, t[1])
                if n is None:
                    self.save("number " + v.text, tid)
                    return cur
                return n
        elif kind in ("slice", "array"):
            if isinstance(v, list) and not isinstance(v, _Object):
                return self.array(v, t, cur)
        elif kind == "map":
            if isinstance(v, _Object):
                out = dict(cur) if isinstance(cur, dict) else {}
                for key, item in v:  # each element starts from the zero value (Go's mapElem)
                    new = self.value(item, t[2], _UNSET)
                    out[_text(key)] = _zero(t[2]) if new is _UNSET else new
                return out
        elif kind == "struct":
            if isinstance(v, _Object):
                return self.fields(v, tid, cur, touched)
        self.save(go_kind(v), tid)
        return cur

    def strslice(self, v: Any) -> list[str]:
        """strslice.StrSlice.UnmarshalJSON: an array of strings, else one string; its error is Go's for the
        string attempt (``cannot unmarshal number into … of type string``), returned at once."""
        if isinstance(v, str):
            return [_text(v)]
        if isinstance(v, list) and not isinstance(v, _Object):
            out = []
            for item in v:
                if isinstance(item, str):
                    out.append(_text(item))
                elif item is None:
                    out.append("")
                else:
                    break
            else:
                return out
        raise _Fatal(self.message(go_kind(v), "string"))

    def array(self, v: list[Any], t: tuple[Any, ...], cur: Any) -> list[Any]:
        old = cur if isinstance(cur, list) else []
        elem = t[-1]
        size = t[1] if t[0] == "array" else None
        out = []
        for i, item in enumerate(v):
            if size is not None and i >= size:
                break  # Go skips what does not fit a fixed array, unchecked
            new = self.value(item, elem, old[i] if i < len(old) else _UNSET)
            out.append(_zero(elem) if new is _UNSET else new)
        if size is not None:
            out.extend(_zero(elem) for _ in range(size - len(out)))
        return out

    def fields(self, v: _Object, tid: str, cur: Any, touched: set[str] | None) -> dict[str, Any]:
        out = dict(cur) if isinstance(cur, dict) else {}
        for key, item in v:
            f = _field(tid, key)
            if f is None:
                continue  # unknown fields are ignored
            outer, depth = self.struct, len(self.path)
            self.struct = _TYPES[tid][1]
            self.path.append(f[0])
            new = self.value(item, f[1], out.get(f[0], _UNSET))
            if new is not _UNSET:
                out[f[0]] = new
            if touched is not None and len(f) > 2:
                touched.add(f[2])  # Go allocates the embedded struct even when the value is null
            self.struct = outer
            del self.path[depth:]
        return out


# ---- the bodies -------------------------------------------------------------------------------------------------
@dataclass
class CreateBody:
    """A decoded create (or commit) body: ``None`` where the body set nothing of that struct, as Go's nil."""

    config: dict[str, Any] | None
    host_config: dict[str, Any] | None
    networking_config: dict[str, Any] | None


def _invalid_json(exc: GoJSONError | str) -> InvalidArgument:
    return InvalidArgument(f"invalid JSON: {exc}")


def _decode_wrapper(raw: bytes) -> CreateBody:
    """moby's ``decodeContainerConfig``: the body into a ContainerConfigWrapper, then its ``getHostConfig``.
    Raises GoJSONError (syntax, EOF) or InvalidArgument (the body does not fit the types)."""
    value, more = first_value(raw, typed=True)
    dec = _Typed()
    touched: set[str] = set()
    flat: dict[str, Any] = {}
    try:
        out = dec.value(value, _ROOT, _UNSET, touched)
        if isinstance(out, dict):
            flat = out
    except _Fatal as exc:
        raise _invalid_json(str(exc)) from None
    if dec.saved is not None:
        raise _invalid_json(dec.saved)
    if more:
        raise InvalidArgument("unexpected content after JSON")
    parts: dict[str, dict[str, Any]] = {"Config": {}, "HostConfig": {}}
    for name, _, via in (f for f in _TYPES[_ROOT][2] if len(f) > 2):
        if name in flat:
            parts[via][name] = flat[name]
    config = parts["Config"] if "Config" in touched else None
    hc = parts["HostConfig"] if "HostConfig" in touched else None
    inner = flat.get("HostConfig")
    if hc is None:
        hc = inner
    elif inner is not None:  # the deprecated top-level fields fill what the inner HostConfig leaves unset
        for key in ("Memory", "MemorySwap", "CpuShares", "CpusetCpus", "VolumeDriver"):
            if hc.get(key) and not inner.get(key):
                inner[key] = hc[key]
        hc = inner
    if hc is not None:
        if flat.get("Cpuset") and not hc.get("CpusetCpus"):
            hc["CpusetCpus"] = flat["Cpuset"]
        if not hc.get("NetworkMode"):
            hc["NetworkMode"] = "default"
    return CreateBody(config, hc, flat.get("NetworkingConfig"))


def decode_create(raw: bytes) -> CreateBody:
    """The body of ``POST /containers/create``; InvalidArgument with dockerd's message when it does not decode.
    (A body without ``Config`` fields decodes, with ``config`` None: the caller refuses it as dockerd does.)"""
    try:
        return _decode_wrapper(raw)
    except GoJSONError as exc:
        if exc.eof:
            raise InvalidArgument("invalid JSON: got EOF while reading request body") from None
        raise _invalid_json(exc) from None


def decode_commit(raw: bytes) -> dict[str, Any] | None:
    """The body of ``POST /commit``: the new image's config, or None (an empty body is allowed)."""
    try:
        return _decode_wrapper(raw).config
    except GoJSONError as exc:
        if exc.eof:
            return None
        raise _invalid_json(exc) from None


def decode_value(raw: bytes | str, go_type: str) -> Any:
    """``json.Unmarshal(raw, &v)`` for ``v`` of the Go type ``go_type`` (a name in the type table, such as
    ``map[string]*string`` or ``[]*units.Ulimit``): the value, with Go's zero value for ``null``; InvalidArgument
    with Go's own message (syntax, depth, type) when it does not decode. What JSON query parameters use."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        i = _skip(data, 0)
        if i >= len(data):
            raise GoJSONError("unexpected end of JSON input")
        value, end = _scan(data, i, _Object, _Number)  # small values: the iterative scanner, with Go's errors
        end = _skip(data, end)
        if end < len(data):
            raise _invalid(data[end], "after top-level value")
    except GoJSONError as exc:  # Unmarshal checks the whole input first: an input that stops is "end of input"
        msg = str(exc)
        raise InvalidArgument("unexpected end of JSON input" if msg == "unexpected EOF" else msg) from None
    dec = _Typed()
    try:
        out = dec.value(value, go_type, _UNSET)
    except _Fatal as exc:
        raise InvalidArgument(str(exc)) from None
    if dec.saved is not None:
        raise InvalidArgument(dec.saved)
    return _zero(go_type) if out is _UNSET else out

