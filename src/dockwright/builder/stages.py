"""A build's plan and the state of its stages: the Dockerfile cut into global ARGs and stages (:func:`plan`), a
stage's image, config and build args (:class:`Stage`), what words are expanded against, and :func:`in_thread`
for the parsing and expansion that run off the event loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..dockerfile import Env, Lex, Node, parse
from ..errors import InvalidArgument
from ..threads import thread_future
from .options import BUILD_LABEL, BuildOptions

__all__ = ["CacheFrom", "Stage", "Plan", "plan", "expand_args", "arg_value", "stage_env", "cache_parent",
           "in_thread", "go_list"]

_T = TypeVar("_T")


@dataclass
class CacheFrom:
    """The ``cachefrom`` images of one build (dockerd's ``ImageCache``): with them, a step is cached only by a
    local image in one of their parent chains, or by their history (see :meth:`BuildCache.cache_from`)."""

    sources: list[str]


@dataclass
class Stage:
    """One stage being built: its image so far, config, build args and what its next commit records."""

    name: str
    image_id: str | None            # None: scratch / nothing yet
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    meta_args: dict[str, str | None] = field(default_factory=dict)  # the global ARGs (before the first FROM)
    maintainer: str = ""            # MAINTAINER: the author of what the stage commits
    cmd_set: bool = False           # a CMD with arguments came in this stage (an ENTRYPOINT then keeps Cmd)
    container: str = ""             # the container the next commit records (``container``, ContainerConfig.Hostname)
    cache: CacheFrom | None = None
    cache_busted: bool = False      # dockerd's imageProber: after a miss, the stage looks no more
    triggers: list[str] = field(default_factory=list)  # the base image's ONBUILD triggers, run after FROM


@dataclass
class Plan:
    """A parsed Dockerfile cut into steps: the global ARGs, then the stages to build (each from its FROM; the
    ``target``'s is the last, with the ``--label`` steps added to it), the stages' names and the number of
    steps."""

    meta_nodes: list[Node]
    stages: list[list[Node]]
    names: list[str]
    total: int


def plan(nodes: list[Node], opts: BuildOptions) -> Plan:
    """Cut ``nodes`` into a :class:`Plan` for ``opts`` (``target``, ``labels``); raises :class:`InvalidArgument`."""
    # global ARGs before the first FROM: steps of their own, expanded against the ones before
    meta_nodes: list[Node] = []
    i = 0
    while i < len(nodes) and nodes[i].value.lower() == "arg":
        meta_nodes.append(nodes[i])
        i += 1
    stages: list[list[Node]] = []
    for n in nodes[i:]:
        if n.value.lower() == "from":
            stages.append([n])
        elif stages:
            stages[-1].append(n)
        else:
            raise InvalidArgument("Please provide a source image with `from` prior to commit")
    if not stages:
        raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
    names = [(s[0].args[2].value.lower() if len(s[0].args) >= 3 and s[0].args[1].value.lower() == "as"
              else "") for s in stages]
    if opts.target:
        if opts.target.lower() not in names:
            raise InvalidArgument(f"failed to reach build target {opts.target} in Dockerfile")
        stages = stages[: names.index(opts.target.lower()) + 1]
    # --label: one LABEL step per label (sorted), added to the last stage built — the target's, if one is named
    # (dockerd's buildLabelOptions, after the stages past the target were dropped)
    for k, v in sorted(opts.labels.items()):
        # set as given, never expanded or unquoted (NewLabelCommand(k, v, true)): see Builder._step
        label = parse("LABEL k=v")[0][0]
        label.args[0].value, label.args[1].value = k, v
        label.attributes = {BUILD_LABEL: True}
        label.original = f"LABEL {k}={v}"
        stages[-1].append(label)
    return Plan(meta_nodes, stages, names, len(meta_nodes) + sum(len(s) for s in stages))


def expand_args(lex: Lex, args: Sequence[Node], env: list[str]) -> list[tuple[str, str | None]]:
    """An ARG's ``name[=value]`` words, expanded against ``env`` (as it was before the instruction)."""
    envs = Env(env)
    out: list[tuple[str, str | None]] = []
    for a in args:
        k, eq, v = a.value.partition("=")
        out.append((lex.process_word(k, envs), lex.process_word(v, envs) if eq else None))
    return out


def arg_value(stage: Stage, opts: BuildOptions, k: str) -> str | None:
    """A declared ARG's value (``BuildArgs.getBuildArg``): the request's, else the ARG's default, else the
    global ARG's."""
    if opts.buildargs.get(k) is not None:
        return opts.buildargs[k]
    v = stage.args.get(k)
    if v is None:
        v = stage.meta_args.get(k)
    return v


def stage_env(stage: Stage, opts: BuildOptions, config: dict[str, Any] | None = None) -> list[str]:
    """What words are expanded against: the config's Env (the stage's, or ``config``) plus the declared
    build args it does not set (``runConfig.Env`` + ``buildArgs.FilterAllowed``)."""
    env = list((stage.config if config is None else config).get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    for k in stage.args:
        val = arg_value(stage, opts, k)
        if val is not None and k not in keys:
            env.append(f"{k}={val}")
    return env


def cache_parent(image_id: str | None, cfg: dict[str, Any]) -> str:
    """The first half of a build cache key: the parent image and the config the step starts from."""
    return (image_id or "") + "|" + json.dumps(cfg, sort_keys=True)


def go_list(items: list[str]) -> str:
    """``%v`` of a Go ``[]string``: ``[a b]``."""
    return "[" + " ".join(items) + "]"


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a daemon thread of its own, for Dockerfile parsing and expansion: the event loop keeps
    serving other clients meanwhile, and a daemon told to stop does not wait for it (the executor of
    ``asyncio.to_thread`` is joined at exit). Cancelling the caller stops waiting; ``fn`` is told to stop through
    an event it checks, where it takes one."""
    return await thread_future(lambda: fn(*args), "dockwright-dockerfile")
