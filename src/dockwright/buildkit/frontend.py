"""The Dockerfile frontend's plan (``dockerfile.v0``, syntax 1.x): the Dockerfile parsed and checked with
BuildKit's flags, split into stages, each stage's dependencies (``FROM <stage>``, ``COPY --from``, ``RUN
--mount=from=``), the stages the target needs (the others are skipped), the steps' vertex names
(``[stage 2/5] RUN …``), and the parsed ``RUN --mount`` and ``--network`` options."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from ..builder.stages import expand_args
from ..dockerfile import Env, Lex, Node, parse
from ..dockerfile.text import MAX_DOCKERFILE_SIZE, DockerfileError
from ..errors import InvalidArgument, NotSupported

__all__ = ["BuildPlan", "StagePlan", "MountSpec", "plan_build", "parse_mount", "step_flags", "SYNTAX_BUILTIN",
           "vertex_text", "STEP_COMMANDS", "check_syntax"]

#: instructions that make a vertex of their own (the others change only the image config)
STEP_COMMANDS = ("run", "copy", "add", "workdir")

#: the flags each instruction takes with the syntax this frontend implements (docker/dockerfile:1)
_FLAGS: dict[str, tuple[str, ...]] = {
    "from": ("platform",),
    "run": ("mount", "network", "security"),
    "copy": ("from", "chown", "chmod", "link", "parents", "exclude"),
    "add": ("chown", "chmod", "link", "checksum", "keep-git-dir", "exclude", "unpack"),
    "healthcheck": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
_MULTI = {"mount", "exclude"}
_KNOWN = ("from", "run", "copy", "add", "workdir", "env", "label", "expose", "user", "cmd", "entrypoint",
          "healthcheck", "stopsignal", "volume", "shell", "onbuild", "arg", "maintainer")

#: the ``# syntax=`` images served by the built-in frontend instead of being pulled
SYNTAX_BUILTIN = re.compile(r"^(docker\.io/)?(docker/dockerfile(-upstream)?)"
                            r"(:(1|1\.\d+)(\.\d+)?(-labs)?|:latest|:labs)?(@sha256:[0-9a-f]{64})?$")

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


@dataclass
class MountSpec:
    """One ``RUN --mount``: ``type`` bind, cache, tmpfs, secret or ssh, with its options."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    size: int = 0
    env: str = ""


@dataclass
class StagePlan:
    """A stage: its index, name (lower case; "" if unnamed), base (a stage index or an image name), its
    instructions after FROM, the stages it needs and how its vertexes are prefixed."""

    index: int
    name: str
    base: str
    base_stage: int | None
    platform: str
    from_node: Node
    nodes: list[Node]
    deps: set[int] = field(default_factory=set)
    display: str = ""
    total: int = 0


@dataclass
class BuildPlan:
    """The whole Dockerfile: global ``ARG``s, stages, the target's index and the stages it needs."""

    meta_args: list[tuple[str, str | None]]
    stages: list[StagePlan]
    target: int
    needed: list[int]
    escape: str
    syntax: str = ""


def check_syntax(text: str) -> str:
    """The ``# syntax=`` directive's image, checked: the built-in frontend serves ``docker/dockerfile:1[.x]``;
    another frontend image is a clear error (it would have to be pulled and run)."""
    m = re.match(r"\A(?:\ufeff)?#[ \t]*syntax[ \t]*=[ \t]*(\S+)[ \t]*\r?$", text.split("\n", 1)[0])
    if not m:
        return ""
    image = m.group(1)
    if not SYNTAX_BUILTIN.match(image):
        raise NotSupported(f"failed to solve with frontend {image}: this engine builds with its built-in Dockerfile "
                           f"frontend (docker/dockerfile:1.x); other frontend images are not supported")
    return image


def _flag_pairs(node: Node) -> dict[str, list[str]]:
    """The instruction's ``--name=value`` flags, checked against what BuildKit's syntax allows."""
    kind = node.value.lower()
    allowed = _FLAGS.get(kind, ())
    out: dict[str, list[str]] = {}
    for word in node.flags:
        if not word.startswith("--"):
            raise InvalidArgument(f"dockerfile parse error line {node.start_line}: invalid flag {word}")
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            raise InvalidArgument(f"dockerfile parse error line {node.start_line}: unknown flag: {name}")
        if name in out and name not in _MULTI:
            raise InvalidArgument(f"dockerfile parse error line {node.start_line}: Duplicate flag specified: "
                                  f"{name}")
        out.setdefault(name, []).append(value if eq else "true")
    return out


def step_flags(node: Node) -> dict[str, list[str]]:
    """The checked flags of an instruction (``--mount`` and ``--exclude`` may repeat)."""
    return _flag_pairs(node)


def _words(node: Node) -> list[str]:
    return [a.value for a in node.args]


def plan_build(text: bytes, name: str, target: str, buildargs: dict[str, str | None]) -> BuildPlan:
    """Parse and plan a Dockerfile: errors are BuildKit's ``dockerfile parse error on line N: …``."""
    if len(text) > MAX_DOCKERFILE_SIZE:
        raise InvalidArgument(f"{name} exceeds maximum allowed size of {MAX_DOCKERFILE_SIZE} bytes")
    decoded = text.decode("utf-8", errors="replace")
    syntax = check_syntax(decoded)
    try:
        nodes, escape = parse(decoded)
    except DockerfileError as exc:
        raise InvalidArgument(f"failed to parse dockerfile: {exc}") from exc
    if not nodes:
        raise InvalidArgument("the Dockerfile cannot be empty")
    lex = Lex(escape)
    meta_args: list[tuple[str, str | None]] = []
    stages: list[StagePlan] = []
    for n in nodes:
        kind = n.value.lower()
        if kind not in _KNOWN:
            raise InvalidArgument(f"dockerfile parse error line {n.start_line}: unknown instruction: "
                                  f"{n.value.upper()}")
        flags = _flag_pairs(n)
        if kind == "from":
            args = _words(n)
            if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "as"):
                raise InvalidArgument(f"dockerfile parse error line {n.start_line}: FROM requires either one "
                                      "or three arguments")
            stage_name = args[2].lower() if len(args) == 3 else ""
            if stage_name and not _STAGE_NAME.match(stage_name):
                raise InvalidArgument(f"dockerfile parse error line {n.start_line}: invalid name for build "
                                      f"stage: \"{args[2]}\", name can't start with a number or contain symbols")
            env = Env([f"{k}={buildargs[k] if buildargs.get(k) is not None else v}" for k, v in meta_args
                       if (buildargs.get(k) if buildargs.get(k) is not None else v) is not None])
            base = lex.process_word(args[0], env)
            if not base:
                raise InvalidArgument(f"base name ({args[0]}) should not be blank")
            platform = lex.process_word(flags["platform"][0], env) if "platform" in flags else ""
            stages.append(StagePlan(len(stages), stage_name, base, None, platform, n, []))
            continue
        if not stages:
            if kind != "arg":
                raise InvalidArgument(f"dockerfile parse error line {n.start_line}: no build stage in current "
                                      "context" if kind != "arg" else "")
            meta_args.extend(expand_args(lex, n.args, [f"{k}={v}" for k, v in meta_args if v is not None]))
            continue
        if kind in ("copy", "add") and len(n.args) < 2:
            raise InvalidArgument(f"dockerfile parse error line {n.start_line}: {kind.upper()} requires at least "
                                  "two arguments, but only one was provided. Destination could not be determined")
        stages[-1].nodes.append(n)
    by_name = {s.name: s.index for s in stages if s.name}
    for s in stages:
        if s.base.lower() in by_name and by_name[s.base.lower()] < s.index:
            s.base_stage = by_name[s.base.lower()]
            s.deps.add(s.base_stage)
        for n in s.nodes:
            flags = _flag_pairs(n)
            refs: list[str] = []
            if "from" in flags:
                refs.append(flags["from"][0])
            for m in flags.get("mount", []):
                spec = parse_mount(m, n.start_line)
                if spec.from_:
                    refs.append(spec.from_)
            for r in refs:
                idx = stage_index(r, by_name, len(stages))
                if idx is not None:
                    if idx >= s.index:
                        raise InvalidArgument(f"dockerfile parse error line {n.start_line}: invalid stage "
                                              f"reference {r}: a stage can only use stages before it")
                    s.deps.add(idx)
    if target:
        t = target.lower()
        if t not in by_name:
            raise InvalidArgument(f"failed to reach build target {target} in Dockerfile")
        target_idx = by_name[t]
    else:
        target_idx = len(stages) - 1
    needed: set[int] = set()
    todo = [target_idx]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        todo.extend(stages[i].deps)
    multi = len(stages) > 1
    for s in stages:
        s.display = (s.name or f"stage-{s.index}") if multi else ""
        s.total = (1 if s.base_stage is None else 0) + sum(1 for n in s.nodes if n.value.lower() in STEP_COMMANDS)
    return BuildPlan(meta_args, stages, target_idx, sorted(needed), escape, syntax)


def stage_index(ref: str, by_name: dict[str, int], count: int) -> int | None:
    """The stage a ``--from`` names (by name or index), or None for an image."""
    if ref.lower() in by_name:
        return by_name[ref.lower()]
    if ref.isdigit():
        i = int(ref)
        if i >= count:
            raise InvalidArgument(f"invalid stage index {ref}")
        return i
    return None


def parse_mount(value: str, line: int = 0) -> MountSpec:
    """A ``--mount`` value (CSV of ``key=value``), with BuildKit's defaults and checks."""
    spec = MountSpec()
    fields = next(iter(_csv(value)), [])
    seen_type = False
    for f in fields:
        k, eq, v = f.partition("=")
        k = k.strip().lower()
        if k == "type":
            if v not in ("bind", "cache", "tmpfs", "secret", "ssh"):
                raise InvalidArgument(f"unsupported mount type \"{v}\"")
            spec.type = v
            seen_type = True
    if not seen_type:
        spec.type = "bind"
    if spec.type in ("cache", "tmpfs"):
        spec.readonly = False
    if spec.type == "secret":
        spec.mode = 0o400
    if spec.type == "ssh":
        spec.mode = 0o600
    for f in fields:
        k, eq, v = f.partition("=")
        k = k.strip().lower()
        if k == "type":
            continue
        if k in ("target", "dst", "destination"):
            spec.target = v
        elif k in ("source", "src"):
            spec.source = v
        elif k == "from":
            spec.from_ = v
        elif k in ("readonly", "ro"):
            spec.readonly = not eq or v.lower() in ("1", "true")
        elif k in ("readwrite", "rw"):
            spec.readonly = bool(eq) and v.lower() not in ("1", "true")
        elif k == "id":
            spec.id = v
        elif k == "sharing":
            if v not in ("shared", "private", "locked"):
                raise InvalidArgument(f"unsupported sharing value \"{v}\"")
            spec.sharing = v
        elif k == "mode":
            try:
                spec.mode = int(v, 8)
            except ValueError:
                raise InvalidArgument(f"failed to parse mode {v!r}") from None
        elif k in ("uid", "gid"):
            try:
                setattr(spec, k, int(v))
            except ValueError:
                raise InvalidArgument(f"failed to parse {k} {v!r}") from None
        elif k == "required":
            spec.required = not eq or v.lower() in ("1", "true")
        elif k == "size":
            spec.size = int(v) if v.isdigit() else 0
        elif k == "env":
            spec.env = v
        else:
            raise InvalidArgument(f"unexpected key '{k}' in '{f}'")
    if spec.type == "secret":
        if not spec.id and not spec.target and not spec.source:
            raise InvalidArgument("secret mount requires an id or a target")
        if not spec.id:
            spec.id = (spec.source or spec.target).rstrip("/").rsplit("/", 1)[-1]
        if not spec.target and not spec.env:
            spec.target = "/run/secrets/" + spec.id
    elif spec.type == "ssh":
        pass  # the ID "" is the client's "default" agent; the target, if none: /run/buildkit/ssh_agent.<n> (the RUN)
    elif not spec.target:
        raise InvalidArgument("mount target must be specified")  # BuildKit's words
    if spec.type == "cache" and not spec.id:
        spec.id = spec.target
    if spec.type == "cache" and spec.mode is None:
        spec.mode = 0o755
    return spec


def _csv(value: str) -> list[list[str]]:
    """Go's ``csv.Reader`` on one line (quotes allowed around fields)."""
    lexer = shlex.shlex(value, posix=True)
    lexer.whitespace = ","
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return [list(lexer)]
    except ValueError as exc:
        raise InvalidArgument(f"failed to parse csv mounts: {exc}") from None


def vertex_text(node: Node, lex: Lex, env: Env) -> str:
    """A step's vertex name as BuildKit shows it: the instruction's original text with the stage's variables
    expanded (quotes kept; a variable the stage does not have stays as written, with its modifier) and its keyword
    upper case."""
    original = node.original.strip()
    keep = Lex(lex.escape)
    keep.skip_process_quotes = True  # BuildKit's processCmdEnv: variables expanded, quotes kept
    keep.skip_unset_env = True
    try:
        text = keep.process_word(original, env)
    except Exception:  # noqa: BLE001 - shown as written when it does not expand
        text = original
    word, sep, rest = text.partition(" ")
    return word.upper() + sep + rest
