"""The config changes shared by ``POST /build``, ``docker commit -c`` and ``docker import -c``
(:func:`apply_changes`, :func:`builder_dispatch`), and a build's Dockerfile intake (:func:`parse_dockerfile`).

This is dockerd's ``BuildFromConfig`` (moby ``builder/dockerfile/builder.go``): the ``changes`` are
joined with newlines and parsed as one Dockerfile by BuildKit's parser
(``frontend/dockerfile/parser``), every instruction is checked against the allow-list
``validCommitCommands`` and typed by BuildKit's ``instructions.ParseCommand``, and each is then
applied as the classic builder's dispatchers apply it (``evaluator.go`` ``dispatch``,
``dispatchers.go``, ``dispatchers_unix.go``): variables are expanded by BuildKit's shell lexer
(``frontend/dockerfile/shell/lex.go``) against the config's ``Env`` as it was before the
instruction, shell forms take the config's ``Shell`` (else ``/bin/sh -c``), ``ENTRYPOINT`` clears
``Cmd`` unless a ``CMD`` with arguments came earlier in the same changes, a relative ``WORKDIR`` is
joined to the current one, ``EXPOSE`` takes port specs and ranges (go-connections ``nat``).

The allowed instructions are CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME and WORKDIR; anything else (FROM, RUN, SHELL, ARG…) is refused with
``<instruction> is not a valid change command``, lower-cased as BuildKit's parser stores it (``from is not a
valid change command``). Every error is an :class:`InvalidArgument` worded as dockerd words it. The daemon
modelled is a Linux one: paths are slash-separated, environment names are case-sensitive, signals are Linux's.

:func:`builder_dispatch` applies one metadata instruction of a ``POST /build`` Dockerfile the same way (plus
SHELL and MAINTAINER), expanding against the stage's build args too, and returns the commit message dockerd's
classic builder records in the history, in its Go formatting.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import InvalidArgument
from ..timestamps import go_quote
from .instructions import (
    VALID_CHANGE_COMMANDS,
    CmdCommand,
    CmdLine,
    Command,
    EntrypointCommand,
    EnvCommand,
    ExposeCommand,
    HealthcheckCommand,
    LabelCommand,
    OnbuildCommand,
    Request,
    StopSignalCommand,
    UserCommand,
    VolumeCommand,
    WorkdirCommand,
    exactly_one,
    parse_command,
    validate_instruction,
)
from .parser import Node, ParseCancelled, parse
from .shell import Env, Lex
from .text import MAX_DOCKERFILE_SIZE, MAX_ENV_SIZE, DockerfileError, go_lower
from .values import check_signal, normalize_workdir, parse_port_spec


def _str_slice(value: Any) -> list[str] | None:
    """A ``strslice.StrSlice`` as read from JSON: null, a string, or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


class _State:
    def __init__(self, config: dict[str, Any], os: str, escape: str) -> None:
        self.c = config
        self.os = os
        self.lex = Lex(escape)
        self.cmd_set = False
        self.expand_env: list[str] | None = None  # the builder expands against Env + build args
        self.expanded_ports: list[str] = []

    def shell(self) -> list[str]:
        shell = _str_slice(self.c.get("Shell"))
        if not shell:
            return ["/bin/sh", "-c"]  # defaultShellForOS on a Unix daemon
        return list(shell)

    def resolve(self, cmd: CmdLine) -> list[str] | None:
        result = cmd.cmdline
        if cmd.prepend_shell and result is not None:
            result = self.shell() + result
        return result

    def set_args_escaped(self, value: bool) -> None:
        if value:
            self.c["ArgsEscaped"] = True
        else:
            self.c.pop("ArgsEscaped", None)  # omitempty: false is absent

    def dispatch(self, cmd: Command) -> None:
        c = self.c
        if isinstance(cmd, StopSignalCommand) and self.os == "windows":
            raise DockerfileError("The daemon on this platform does not support the command stopsignal")
        envs = Env(self.expand_env if self.expand_env is not None else (c.get("Env") or ()))

        def expand(word: str) -> str:
            return self.lex.process_word(word, envs)

        if isinstance(cmd, EnvCommand):  # ENV and LABEL
            for pair in cmd.pairs:
                pair[0] = expand(pair[0])
                pair[1] = expand(pair[1])
        elif isinstance(cmd, WorkdirCommand):
            cmd.path = expand(cmd.path)
        elif isinstance(cmd, UserCommand):
            cmd.user = expand(cmd.user)
        elif isinstance(cmd, VolumeCommand):
            cmd.volumes = [expand(v) for v in cmd.volumes]
        elif isinstance(cmd, StopSignalCommand):
            cmd.signal = expand(cmd.signal)

        if isinstance(cmd, LabelCommand):
            labels = c.get("Labels")
            labels = {} if labels is None else dict(labels)
            for key, value in cmd.pairs:
                labels[key] = value
            c["Labels"] = labels
        elif isinstance(cmd, EnvCommand):
            env = list(c.get("Env") or ())
            index: dict[str, int] = {}  # the first entry of each key, which a new value replaces
            for i, existing in enumerate(env):
                index.setdefault(existing.partition("=")[0], i)
            for key, value in cmd.pairs:
                entry = key + "=" + value
                i = index.get(key, -1)
                if i >= 0:
                    env[i] = entry
                else:
                    index[key] = len(env)
                    env.append(entry)
            c["Env"] = env
        elif isinstance(cmd, OnbuildCommand):
            c["OnBuild"] = [*(c.get("OnBuild") or ()), cmd.expression]
        elif isinstance(cmd, WorkdirCommand):
            c["WorkingDir"] = normalize_workdir(c.get("WorkingDir") or "", cmd.path)
        elif isinstance(cmd, CmdCommand):
            c["Cmd"] = self.resolve(cmd)
            self.set_args_escaped(False)
            if cmd.cmdline:
                self.cmd_set = True
        elif isinstance(cmd, EntrypointCommand):
            c["Entrypoint"] = self.resolve(cmd)
            self.set_args_escaped(False)
            if not self.cmd_set:
                c["Cmd"] = None
        elif isinstance(cmd, HealthcheckCommand):
            c["Healthcheck"] = copy.deepcopy(cmd.health)
        elif isinstance(cmd, ExposeCommand):
            ports: list[str] = []
            for p in cmd.ports:
                ports.extend(self.lex.process_words(p, envs))
            self.expanded_ports = ports
            exposed_ports: list[str] = []
            for spec in ports:
                exposed_ports.extend(parse_port_spec(spec))
            exposed = c.get("ExposedPorts")
            exposed = {} if exposed is None else dict(exposed)
            for port in exposed_ports:
                exposed.setdefault(port, {})
            if exposed:
                c["ExposedPorts"] = exposed
            else:
                c.pop("ExposedPorts", None)  # omitempty: an empty set is absent
        elif isinstance(cmd, UserCommand):
            c["User"] = cmd.user
        elif isinstance(cmd, VolumeCommand):
            volumes = c.get("Volumes")
            volumes = {} if volumes is None else dict(volumes)
            for v in cmd.volumes:
                if v == "":
                    raise DockerfileError("VOLUME specified can not be an empty string")
                volumes[v] = {}
            c["Volumes"] = volumes
        elif isinstance(cmd, StopSignalCommand):
            check_signal(cmd.signal)
            c["StopSignal"] = cmd.signal


# =============================================================================================
# The entry point


def apply_changes(config: Mapping[str, Any] | None, changes: Iterable[str] | str, os: str = "linux") -> dict[str, Any]:
    """dockerd's ``BuildFromConfig``: ``config`` with the Dockerfile instructions ``changes`` applied.

    ``config`` is a container config in Docker's JSON names (``Cmd``, ``Entrypoint``, ``Env``,
    ``ExposedPorts``, ``Labels``, ``OnBuild``, ``User``, ``Volumes``, ``WorkingDir``,
    ``StopSignal``, ``Healthcheck``, ``Shell``…); it is not modified. ``changes`` is the list of the
    ``changes`` query parameters; each may hold several lines (instructions, line continuations,
    comments). ``os`` is the platform of the image (``windows`` refuses ``STOPSIGNAL``).

    The result is a new dict: fields Go would leave nil are ``None`` (``Cmd`` cleared by
    ``ENTRYPOINT``); ``ArgsEscaped``, which ``CMD`` and ``ENTRYPOINT`` reset, is dropped when false,
    and ``ExposedPorts`` when an ``EXPOSE`` expanded to nothing leaves it empty (both are
    ``omitempty``). With no changes the config comes back as it was (copied).

    Raises :class:`InvalidArgument` with dockerd's message: a parse error
    (``ENV must have two arguments``), ``from is not a valid change command``, an instruction's
    argument error (``unknown flag: --foo``), or a dispatch error (``invalid signal: FOO``).
    """
    result: dict[str, Any] = copy.deepcopy(dict(config or {}))
    if isinstance(changes, str):
        changes = [changes]
    changes = list(changes)
    if not changes:
        return result
    try:
        nodes, escape = parse("\n".join(changes))
        for node in nodes:
            if go_lower(node.value) not in VALID_CHANGE_COMMANDS:
                raise DockerfileError(f"{go_lower(node.value)} is not a valid change command")  # BuildKit's node.Value
        commands = [parse_command(node) for node in nodes]
        state = _State(result, os, escape)
        for cmd in commands:
            state.dispatch(cmd)
    except DockerfileError as exc:
        raise InvalidArgument(str(exc)) from None
    return result


# =============================================================================================
# The classic builder's metadata steps (``POST /build``)

#: The instructions :func:`builder_dispatch` applies (the ones that only change the config).
BUILDER_METADATA_COMMANDS = VALID_CHANGE_COMMANDS | {"shell", "maintainer"}


def _go_quote_rune(r: int) -> str:
    """Go's ``strconv.QuoteRune`` (what ``%q`` prints for an integer)."""
    if r > 0x10FFFF or 0xD800 <= r <= 0xDFFF or r < 0:
        r = 0xFFFD
    ch = chr(r)
    named = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
             0x27: "\\'", 0x5C: "\\\\"}
    if r in named:
        return "'" + named[r] + "'"
    if ch.isprintable():
        return "'" + ch + "'"
    if r < 0x20 or r == 0x7F:
        return f"'\\x{r:02x}'"
    return f"'\\u{r:04x}'" if r < 0x10000 else f"'\\U{r:08x}'"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1m30s``, ``1.5s``, ``100ms``, ``0s``."""

    def frac(v: int, prec: int) -> tuple[int, str]:
        whole, part = divmod(v, 10**prec)
        digits = f"{part:0{prec}d}".rstrip("0")
        return whole, ("." + digits if digits else "")

    neg, u = ns < 0, abs(ns)
    if u == 0:
        return "0s"
    if u < 1_000_000_000:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            whole, f = frac(u, 3)
            out = f"{whole}{f}µs"
        else:
            whole, f = frac(u, 6)
            out = f"{whole}{f}ms"
    else:
        secs, f = frac(u, 9)
        out = f"{secs % 60}{f}s"
        minutes = secs // 60
        if minutes:
            out = f"{minutes % 60}m" + out
            if minutes // 60:
                out = f"{minutes // 60}h" + out
    return ("-" if neg else "") + out


def _go_q_list(items: Iterable[str] | None) -> str:
    """``%q`` of a Go ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(i) for i in (items or [])) + "]"


def _health_text(h: Mapping[str, Any] | None) -> str:
    """``%q`` of a ``*container.HealthConfig`` as dockerd 20.10 prints it in the HEALTHCHECK history."""
    if h is None:
        return "<nil>"
    fields = [_go_q_list(h.get("Test")), go_quote(go_duration(int(h.get("Interval") or 0))),
              go_quote(go_duration(int(h.get("Timeout") or 0))),
              go_quote(go_duration(int(h.get("StartPeriod") or 0)))]
    if h.get("StartInterval"):  # a field dockerd 20.10 did not have
        fields.append(go_quote(go_duration(int(h["StartInterval"]))))
    fields.append(_go_quote_rune(int(h.get("Retries") or 0)))
    return "&{" + " ".join(fields) + "}"


class Dispatched:
    """What one metadata instruction did: the new ``config``, the ``message`` dockerd commits it with (the
    history's ``/bin/sh -c #(nop)  <message>``) and whether a CMD was set in the stage (``cmd_set``)."""

    __slots__ = ("config", "message", "cmd_set", "maintainer")

    def __init__(self, config: dict[str, Any], message: str, cmd_set: bool, maintainer: str | None) -> None:
        self.config = config
        self.message = message
        self.cmd_set = cmd_set
        self.maintainer = maintainer


# go-connections' port errors as dockerd 20.10 words them (newer releases lower-cased them)
_PORT_ERRORS_2010 = (("invalid proto: ", "Invalid proto: "), ("invalid containerPort: ", "Invalid containerPort: "),
                     ("invalid hostPort: ", "Invalid hostPort: "), ("no port specified: ", "No port specified: "),
                     ("invalid ranges specified", "Invalid ranges specified"))


def _docker_2010_words(message: str) -> str:
    for new, old in _PORT_ERRORS_2010:
        if message.startswith(new):
            return old + message[len(new):]
    return message


def builder_dispatch(config: Mapping[str, Any] | None, instruction: str | Node, *,
                     env: Iterable[str] | None = None, escape: str = "\\", cmd_set: bool = False) -> Dispatched:
    """One metadata instruction of a Dockerfile (``ENV``, ``LABEL``, ``CMD``, ``ENTRYPOINT``, ``EXPOSE``,
    ``VOLUME``, ``WORKDIR``, ``USER``, ``STOPSIGNAL``, ``HEALTHCHECK``, ``ONBUILD``, ``SHELL``,
    ``MAINTAINER``) applied as the classic builder's dispatcher applies it (``dispatchers.go``);
    ``instruction`` is its text or a node of the parsed Dockerfile.

    Words are expanded against ``env`` (the config's ``Env`` plus the stage's build args, as dockerd's
    ``dispatch``), or the config's ``Env`` if it is not given. ``cmd_set`` says whether a CMD with arguments
    came earlier in the stage (an ``ENTRYPOINT`` then keeps ``Cmd``). The commit message is dockerd's, with its
    Go formatting: ``CMD ["a" "b"]`` (``%q``), ``VOLUME [/a /b]`` and ``SHELL [/bin/sh -c]`` (``%v``),
    ``EXPOSE`` with the sorted ports, ``HEALTHCHECK &{["CMD-SHELL" "x"] "5s" "3s" "0s" '\\x02'}``.

    Raises :class:`InvalidArgument` with dockerd's message.
    """
    result: dict[str, Any] = copy.deepcopy(dict(config or {}))
    try:
        if isinstance(instruction, Node):
            nodes = [instruction]
        else:
            nodes, _ = parse(instruction if escape == "\\" else f"# escape={escape}\n{instruction}")
        if len(nodes) != 1:
            raise DockerfileError("expected exactly one instruction")
        node = nodes[0]
        kind = go_lower(node.value)
        if kind not in BUILDER_METADATA_COMMANDS:
            raise DockerfileError(f"{node.value} is not a metadata instruction")
        if kind == "maintainer":
            req = Request(node)
            exactly_one(req, "MAINTAINER")
            req.flags.parse()
            return Dispatched(result, "MAINTAINER " + req.args[0], cmd_set, req.args[0])
        if kind == "shell":
            req = Request(node)
            req.flags.parse()
            if not req.json:
                raise DockerfileError("SHELL requires the arguments to be in JSON form")
            if not req.args:
                raise DockerfileError("SHELL requires at least one argument")
            result["Shell"] = list(req.args)
            return Dispatched(result, "SHELL [" + " ".join(req.args) + "]", cmd_set, None)
        cmd = parse_command(node)
        state = _State(result, "linux", escape)
        state.cmd_set = cmd_set
        state.expand_env = list(env) if env is not None else None
        state.dispatch(cmd)
    except DockerfileError as exc:
        raise InvalidArgument(_docker_2010_words(str(exc))) from None
    c = state.c
    if isinstance(cmd, LabelCommand):
        message = "LABEL" + "".join(f" {k}={v}" for k, v in cmd.pairs)
    elif isinstance(cmd, EnvCommand):
        message = "ENV" + "".join(f" {k}={v}" for k, v in cmd.pairs)
    elif isinstance(cmd, CmdCommand):
        message = "CMD " + _go_q_list(c.get("Cmd"))
    elif isinstance(cmd, EntrypointCommand):
        message = "ENTRYPOINT " + _go_q_list(c.get("Entrypoint"))
    elif isinstance(cmd, ExposeCommand):
        message = "EXPOSE " + " ".join(state.expanded_ports)
    elif isinstance(cmd, VolumeCommand):
        message = "VOLUME [" + " ".join(cmd.volumes) + "]"
    elif isinstance(cmd, WorkdirCommand):
        message = "WORKDIR " + str(c.get("WorkingDir") or "")
    elif isinstance(cmd, UserCommand):
        message = "USER " + cmd.user
    elif isinstance(cmd, StopSignalCommand):
        message = "STOPSIGNAL " + cmd.signal
    elif isinstance(cmd, HealthcheckCommand):
        message = "HEALTHCHECK " + _health_text(c.get("Healthcheck"))
    elif isinstance(cmd, OnbuildCommand):
        message = "ONBUILD " + cmd.expression
    else:  # pragma: no cover - every metadata command is listed above
        message = node.original
    return Dispatched(c, message, state.cmd_set, None)


def parse_dockerfile(data: bytes, name: str = "Dockerfile",
                     cancel: threading.Event | None = None) -> tuple[list[Node], str]:
    """A build's Dockerfile: refused past :data:`MAX_DOCKERFILE_SIZE` (BuildKit's words), parsed, and every
    instruction checked as dockerd's ``instructions.Parse`` checks it (:func:`validate_instruction`). Linear in
    the file's size; meant to run off the event loop, ``cancel`` (an event set from another thread) stopping it
    with :class:`ParseCancelled`. Raises :class:`InvalidArgument`."""
    if len(data) > MAX_DOCKERFILE_SIZE:
        raise InvalidArgument(f"{name} exceeds maximum allowed size of {MAX_DOCKERFILE_SIZE} bytes")
    if not data:  # dockerd's readAndParseDockerfile, before the parser
        raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
    with _collector_paused():
        try:
            nodes, escape = parse(data.decode("utf-8", errors="replace"), cancel)
        except DockerfileError as exc:  # the parser's own errors, wrapped by readAndParseDockerfile
            raise InvalidArgument(f"failed to parse {name}: {exc}") from exc
        for i, node in enumerate(nodes):
            if cancel is not None and not i % 1024 and cancel.is_set():
                raise ParseCancelled()
            validate_instruction(node)
    return nodes, escape


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a Dockerfile is parsed: a large one makes millions of
    objects (no cycles among them), and the collector's passes over them would double the time. Process-wide,
    counted across threads parsing at once; the collector is left as it was found."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def check_env_size(env: Iterable[str], where: str) -> None:
    """Refuse an environment of more than :data:`MAX_ENV_SIZE` characters (``KEY=value`` entries): ``where`` names
    the instruction that made it."""
    total = 0
    for entry in env:
        total += len(entry)
        if total > MAX_ENV_SIZE:
            raise InvalidArgument(f"{where}: the environment and build arguments of the stage exceed the maximum "
                                  f"allowed size of {MAX_ENV_SIZE} characters")
