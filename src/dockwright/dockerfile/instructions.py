"""BuildKit's typed instructions (``frontend/dockerfile/instructions``): flags, the commands a config change
may be, HEALTHCHECK options, and the checks every Dockerfile instruction passes before a build
(:func:`validate_instruction`). Port specs, signals and WORKDIR paths are in :mod:`.values`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument
from ..timestamps import go_quote, parse_go_duration_ns, parse_int64
from .parser import Node
from .text import DockerfileError, go_lower, go_upper, trim_space

#: ``validCommitCommands``: the instructions a change may be (lower case).
VALID_CHANGE_COMMANDS = frozenset(
    {
        "cmd",
        "entrypoint",
        "healthcheck",
        "env",
        "expose",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)


class Flag:
    """One flag of an instruction (``--name=value``), as BuildKit's ``Flag``."""

    __slots__ = ("name", "kind", "value", "values")

    def __init__(self, name: str, kind: str, value: str = "") -> None:
        self.name = name
        self.kind = kind
        self.value = value
        self.values: list[str] = []


class BFlags:
    """BuildKit's ``BFlags``: the flags an instruction declares, parsed from its ``--name=value`` words."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = args
        self.flags: dict[str, Flag] = {}
        self.used: dict[str, Flag] = {}

    def add_string(self, name: str, default: str = "") -> Flag:
        """Declare the string flag ``name`` with its ``default``."""
        flag = Flag(name, "string", default)
        self.flags[name] = flag
        return flag

    def parse(self) -> None:
        """Read the words into the declared flags, with BuildKit's errors (unknown, duplicate, no value)."""
        for a in self.args:
            if a == "--":
                return
            if not a.startswith("--"):
                raise DockerfileError(f"arg should start with -- : {a}")
            flag_name, has_value, value = a.partition("=")
            arg = flag_name[2:]
            flag = self.flags.get(arg)
            if flag is None:
                raise DockerfileError(_suggest(f"unknown flag: {flag_name}", arg, list(self.flags)))
            if arg in self.used and flag.kind != "strings":
                raise DockerfileError(f"duplicate flag specified: {flag_name}")
            self.used[arg] = flag
            if not has_value:
                raise DockerfileError(f"missing a value on flag: {flag_name}")
            flag.value = value


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _suggest(message: str, value: str, options: list[str]) -> str:
    """BuildKit's ``suggest.WrapError`` (case-sensitive): `` (did you mean x?)`` within distance 2."""
    match = ""
    best = 3
    for opt in options:
        if value == opt:
            return message
        dist = _levenshtein(value, opt)
        if dist < best:
            match = opt
            best = dist
    return f"{message} (did you mean {match}?)" if match else message


class Request:
    """BuildKit's ``parseRequest``: a node's command, arguments, heredocs, attributes and flags."""

    def __init__(self, node: Node) -> None:
        self.command = node.value
        self.args = _node_args(node)
        self.heredocs = node.heredocs
        self.attributes = node.attributes
        self.original = node.original
        self.flags = BFlags(node.flags)

    @property
    def json(self) -> bool:
        """Whether the arguments were written in the JSON (exec) form."""
        return bool(self.attributes.get("json"))


def _node_args(node: Node) -> list[str]:
    result: list[str] = []
    for arg in node.args:
        if not arg.children:
            result.append(arg.value)
        elif len(arg.children) == 1:
            result.append(arg.children[0].value)
            result.extend(_node_args(arg.children[0]))
    return result


class Command:
    """A typed instruction (BuildKit's ``instructions.Command``)."""

    pass


class EnvCommand(Command):
    """ENV: ``[key, value]`` pairs."""

    def __init__(self, pairs: list[list[str]]) -> None:
        self.pairs = pairs


class LabelCommand(EnvCommand):
    """LABEL: ``[key, value]`` pairs."""

    pass


class CmdLine(Command):
    """A command line (CMD, ENTRYPOINT) and whether the shell is prepended to it (shell form)."""

    def __init__(self, cmdline: list[str] | None, prepend_shell: bool) -> None:
        self.cmdline = cmdline
        self.prepend_shell = prepend_shell


class CmdCommand(CmdLine):
    """CMD."""

    pass


class EntrypointCommand(CmdLine):
    """ENTRYPOINT."""

    pass


class HealthcheckCommand(Command):
    """HEALTHCHECK: the health config in Docker's JSON names."""

    def __init__(self, health: dict[str, Any]) -> None:
        self.health = health


class ExposeCommand(Command):
    """EXPOSE: the port words, expanded when dispatched."""

    def __init__(self, ports: list[str]) -> None:
        self.ports = ports


class UserCommand(Command):
    """USER."""

    def __init__(self, user: str) -> None:
        self.user = user


class VolumeCommand(Command):
    """VOLUME: the paths."""

    def __init__(self, volumes: list[str]) -> None:
        self.volumes = volumes


class WorkdirCommand(Command):
    """WORKDIR: the path."""

    def __init__(self, path: str) -> None:
        self.path = path


class OnbuildCommand(Command):
    """ONBUILD: the trigger's text."""

    def __init__(self, expression: str) -> None:
        self.expression = expression


class StopSignalCommand(Command):
    """STOPSIGNAL: the signal word."""

    def __init__(self, signal: str) -> None:
        self.signal = signal


def _parse_kvps(args: list[str], name: str) -> list[list[str]]:
    if not args:
        raise DockerfileError(f"{name} requires at least one argument")
    if len(args) % 2:
        raise DockerfileError(f"Bad input to {name}, too many arguments")
    pairs = []
    for j in range(0, len(args), 2):
        if args[j] == "":
            raise DockerfileError(f"{name} names can not be blank")
        pairs.append([args[j], args[j + 1]])
    return pairs


def _handle_json_args(args: list[str], is_json: bool) -> list[str]:
    if not args:
        return []
    if is_json:
        return list(args)
    return [" ".join(args)]


def exactly_one(req: Request, name: str) -> None:
    """Refuse unless ``req`` has exactly one argument (``<NAME> requires exactly one argument``)."""
    if len(req.args) != 1:
        raise DockerfileError(f"{name} requires exactly one argument")


def _at_least_one(req: Request, name: str) -> None:
    if not req.args:
        raise DockerfileError(f"{name} requires at least one argument")


_MINIMUM_DURATION_NS = 1_000_000  # container.MinimumDuration, 1ms
_RE_ONBUILD = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)


def _opt_interval(flag: Flag) -> int:
    if flag.value == "":
        return 0
    try:
        d = parse_go_duration_ns(flag.value)
    except ValueError as exc:
        raise DockerfileError(str(exc)) from None
    if d == 0:
        return 0
    if d < _MINIMUM_DURATION_NS:
        raise DockerfileError(f"Interval {go_quote(flag.name)} cannot be less than 1ms")
    return d


def _parse_healthcheck(req: Request) -> HealthcheckCommand:
    _at_least_one(req, "HEALTHCHECK")
    typ = go_upper(req.args[0])
    args = req.args[1:]
    if typ == "NONE":
        if args:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return HealthcheckCommand({"Test": [typ]})
    interval = req.flags.add_string("interval")
    timeout = req.flags.add_string("timeout")
    start_period = req.flags.add_string("start-period")
    start_interval = req.flags.add_string("start-interval")
    retries_flag = req.flags.add_string("retries")
    req.flags.parse()
    if typ == "CMD":
        cmd = _handle_json_args(args, req.json)
        if not cmd:
            raise DockerfileError("Missing command after HEALTHCHECK CMD")
        if not req.json:
            typ = "CMD-SHELL"
        health: dict[str, Any] = {"Test": [typ, *cmd]}
    else:
        raise DockerfileError(f"Unknown type {go_quote(typ)} in HEALTHCHECK (try CMD)")
    for key, flag in (
        ("Interval", interval),
        ("Timeout", timeout),
        ("StartPeriod", start_period),
        ("StartInterval", start_interval),
    ):
        d = _opt_interval(flag)
        if d:
            health[key] = d
    if retries_flag.value != "":
        try:
            retries = parse_int64(retries_flag.value)
        except ValueError as exc:
            raise DockerfileError(str(exc)) from None
        if not -(1 << 31) <= retries < (1 << 31):
            raise DockerfileError(f"strconv.ParseInt: parsing {go_quote(retries_flag.value)}: value out of range")
        if retries < 0:
            raise DockerfileError(f"--retries cannot be negative ({retries})")
        if retries:
            health["Retries"] = retries
    return HealthcheckCommand(health)


def parse_command(node: Node) -> Command:
    """``instructions.ParseCommand`` for the instructions a change may be."""
    req = Request(node)
    kind = go_lower(node.value)
    if kind in ("env", "label"):
        req.flags.parse()
        pairs = _parse_kvps(req.args, kind.upper())
        return EnvCommand(pairs) if kind == "env" else LabelCommand(pairs)
    if kind == "onbuild":
        _at_least_one(req, "ONBUILD")
        req.flags.parse()
        trigger = go_upper(trim_space(req.args[0]))
        if trigger == "ONBUILD":
            raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
        expression = _RE_ONBUILD.sub("", req.original, count=1)
        for heredoc in req.heredocs:
            expression += "\n" + heredoc.content + heredoc.name
        return OnbuildCommand(expression)
    if kind == "workdir":
        exactly_one(req, "WORKDIR")
        req.flags.parse()
        return WorkdirCommand(req.args[0])
    if kind in ("cmd", "entrypoint"):
        req.flags.parse()
        cmdline: list[str] | None = _handle_json_args(req.args, req.json)
        if kind == "entrypoint":
            if not cmdline:
                cmdline = None
            return EntrypointCommand(cmdline, not req.json)
        return CmdCommand(cmdline, not req.json)
    if kind == "healthcheck":
        return _parse_healthcheck(req)
    if kind == "expose":
        _at_least_one(req, "EXPOSE")
        req.flags.parse()
        return ExposeCommand(sorted(req.args))
    if kind == "user":
        exactly_one(req, "USER")
        req.flags.parse()
        return UserCommand(req.args[0])
    if kind == "volume":
        _at_least_one(req, "VOLUME")
        req.flags.parse()
        volumes = []
        for v in req.args:
            v = trim_space(v)
            if v == "":
                raise DockerfileError("VOLUME specified can not be an empty string")
            volumes.append(v)
        return VolumeCommand(volumes)
    if kind == "stopsignal":
        exactly_one(req, "STOPSIGNAL")
        return StopSignalCommand(req.args[0])
    raise DockerfileError(f"unknown instruction: {node.value}")  # pragma: no cover - refused earlier


# =============================================================================================
# The dispatchers (builder/dockerfile/dispatchers.go) on a config dict


#: The flags each instruction takes (``instructions.Parse``); RUN's are refused when dispatched, as dockerd's
#: classic builder does (they need BuildKit).
_BUILDER_FLAGS: dict[str, tuple[str, ...]] = {
    "from": ("platform",), "copy": ("from", "chown", "chmod"), "add": ("chown", "chmod"),
    "run": ("mount", "network", "security"),
}
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


def validate_instruction(node: Node) -> None:
    """The checks dockerd 20.10's ``instructions.Parse`` makes on every instruction of a Dockerfile before the
    build starts (flags, argument counts, SHELL's JSON form, ONBUILD triggers, stage names). Raises
    :class:`InvalidArgument` with ``dockerfile parse error line N: <message>``."""
    kind = go_lower(node.value)
    try:
        if kind in VALID_CHANGE_COMMANDS:
            parse_command(node)
            return
        req = Request(node)
        if kind == "healthcheck":
            return
        for name in _BUILDER_FLAGS.get(kind, ()):
            req.flags.add_string(name)
        req.flags.parse()
        if kind == "from":
            if len(req.args) not in (1, 3) or (len(req.args) == 3 and go_lower(req.args[1]) != "as"):
                raise DockerfileError("FROM requires either one or three arguments")
            if len(req.args) == 3 and not _STAGE_NAME.match(go_lower(req.args[2])):
                raise DockerfileError(f"invalid name for build stage: {go_quote(req.args[2])}, name can't start with a "
                             "number or contain symbols")
        elif kind in ("copy", "add"):
            if len(req.args) < 2:
                raise DockerfileError(f"{kind.upper()} requires at least two arguments, but only one was provided. "
                             "Destination could not be determined")
        elif kind == "arg":
            if not req.args:
                raise DockerfileError("ARG requires at least one argument")
        elif kind == "maintainer":
            exactly_one(req, "MAINTAINER")
        elif kind == "shell":
            if not req.json:
                raise DockerfileError("SHELL requires the arguments to be in JSON form")
            if not req.args:
                raise DockerfileError("SHELL requires at least one argument")
        elif kind != "run":
            raise DockerfileError(f"unknown instruction: {go_upper(node.value)}")
    except DockerfileError as exc:
        msg = str(exc)
        m = re.match(r"unknown flag: --([^ ]+)", msg)
        if m:
            msg = f"Unknown flag: {m.group(1)}"  # dockerd 20.10's words
        raise InvalidArgument(f"dockerfile parse error line {node.start_line}: {msg}") from None
