"""The solver's values: a build's options, what the client provides (:class:`Sources`), file systems as layer
lists (:class:`Ref`), a stage's state (config, history, file system and its cache key), BuildKit's errors and the
history entries the Dockerfile frontend writes, timed as moby's exporter times them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..dockerfile import Node
from ..errors import DockwrightError
from ..metadata.db import LayerRecord
from ..oci.digest import sha256_digest
from ..oci.gojson import rfc3339_nano
from .sshforward import OpenAgent

__all__ = ["FRONTEND_ERROR", "HISTORY_COMMENT", "SolveError", "Sources", "SolveOptions", "Ref", "State", "step_key",
           "history_entry", "registry_host", "history_times", "history_text", "go_q_list", "error_text", "not_found"]


#: the ``comment`` of every history entry the Dockerfile frontend writes
HISTORY_COMMENT = "buildkit.dockerfile.v0"


#: how dockerd 20.10's BuildKit prefixes an error of the Dockerfile frontend (parse, base image metadata)
FRONTEND_ERROR = "failed to solve with frontend dockerfile.v0: "


class SolveError(DockwrightError):
    """A build step failed: the message is BuildKit's (``executor failed running [/bin/sh -c exit 3]: exit
    code: 3``); ``vertex`` is the failed step's name, ``vertex_error`` what the step's vertex shows (when it
    differs from the build's error)."""

    def __init__(self, message: str, vertex: str = "", line: int = 0, vertex_error: str = "") -> None:
        super().__init__(message)
        self.vertex = vertex
        self.line = line
        self.vertex_error = vertex_error or message


class Sources(Protocol):
    """What the client gives a build: its context (synced on first use) and its secrets."""

    async def context(self) -> Path:
        """The build context's directory (the client's files, ``.dockerignore`` applied)."""

    async def secret(self, id: str) -> bytes | None:
        """The secret ``id``'s bytes, None if the client has none of that name."""

    async def credentials(self, host: str) -> tuple[str, str]:
        """The client's (user name, secret) for the registry ``host`` (``("", "")``: none)."""

    async def ssh_agent(self, id: str) -> OpenAgent:
        """Connections to the client's SSH agent ``id``; raises ``NotFound`` (or the client's error) when it
        forwards none of that ID."""


@dataclass
class SolveOptions:
    """The build's options (``POST /build`` parameters, ``Solve`` frontend attributes)."""

    dockerfile_name: str = "Dockerfile"
    target: str = ""
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    nocache: bool = False
    pull: bool = False
    network: str = "default"
    extra_hosts: list[str] = field(default_factory=list)
    platform: str = ""
    #: images whose inline cache (``moby.buildkit.cache.v0``) the build may use (``--cache-from``)
    cache_from: list[str] = field(default_factory=list)

    @property
    def inline_cache(self) -> bool:
        """``BUILDKIT_INLINE_CACHE=1``: the image carries its steps' cache keys."""
        return (self.buildargs.get("BUILDKIT_INLINE_CACHE") or "").lower() in ("1", "true")


@dataclass(frozen=True)
class Ref:
    """An immutable file system: layers from the bottom up."""

    layers: tuple[LayerRecord, ...] = ()

    def chain_ids(self) -> list[str]:
        """The ChainID of each layer."""
        out: list[str] = []
        for lay in self.layers:
            out.append(lay.diff_id if not out else sha256_digest(f"{out[-1]} {lay.diff_id}".encode()))
        return out

    def plus(self, layer: LayerRecord | None) -> Ref:
        """This file system with ``layer`` on top (itself for None)."""
        return self if layer is None else Ref((*self.layers, layer))


@dataclass
class State:
    """A stage's state: its image config and history so far, its file system and that file system's cache key."""

    config: dict[str, Any]
    meta: dict[str, Any]
    history: list[dict[str, Any]]
    ref: Ref
    key: str
    shell: list[str]
    args: dict[str, str | None] = field(default_factory=dict)
    meta_args: dict[str, str | None] = field(default_factory=dict)
    cmd_set: bool = False
    maintainer: str = ""
    #: the steps that made the file system, bottom up: (cache key, index of its layer or -1 for none)
    steps: list[tuple[str, int]] = field(default_factory=list)

    def copy(self) -> State:
        """An independent copy (a stage built FROM another)."""
        return replace(self, config=json.loads(json.dumps(self.config)), meta=dict(self.meta),
                       history=[dict(h) for h in self.history], args={}, cmd_set=False, steps=list(self.steps))


def registry_host(domain: str) -> str:
    """The host a client's credentials are asked for (BuildKit's: Docker Hub is ``registry-1.docker.io``, which
    the docker CLI's auth provider maps to its ``https://index.docker.io/v1/`` entry)."""
    return "registry-1.docker.io" if domain == "docker.io" else domain


def step_key(*parts: Any) -> str:
    """A cache key: the sha256 of the parts as canonical JSON."""
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()



def not_found(source: str) -> SolveError:
    """A COPY source (or bind mount source) that is not there, in BuildKit's words."""
    msg = f"\"/{source.lstrip('/')}\" not found: not found"
    return SolveError("failed to compute cache key: " + msg, vertex_error=msg)


def history_entry(created_by: str, *, empty: bool, at: float = 0.0) -> dict[str, Any]:
    """A history entry; ``at`` is when its layer was made (its time is filled in by :func:`history_times` for
    entries without one)."""
    h: dict[str, Any] = {"created": "", "created_by": created_by, "comment": HISTORY_COMMENT}
    if empty:
        h["empty_layer"] = True
    if at and not empty:
        h["created"] = rfc3339_nano(int(at * 1e9))
    return h


def history_times(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history with every entry timed as moby's exporter times it: a step's entry at its layer's making (a
    cached layer keeps its time, so an unchanged rebuild is the same image), each metadata entry at the time of
    the next layer after it (the last one's, after the last layer)."""
    out = [dict(h) for h in history]
    nxt = ""
    for h in reversed(out):
        if h.get("created"):
            nxt = h["created"]
        elif nxt:
            h["created"] = nxt
    last = ""
    for h in out:
        if h.get("created"):
            last = h["created"]
        else:
            h["created"] = last or rfc3339_nano()
    return out


def history_text(kind: str, n: Node, message: str, config: dict[str, Any]) -> str:
    """The history ``created_by`` BuildKit writes for a metadata instruction."""
    if kind == "cmd":
        return "CMD " + go_q_list(config.get("Cmd"))
    if kind == "entrypoint":
        return "ENTRYPOINT " + go_q_list(config.get("Entrypoint"))
    if kind == "expose":
        ports = sorted((config.get("ExposedPorts") or {}).keys())
        return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in ports) + "]"
    if kind == "volume":
        return "VOLUME [" + " ".join(a.value for a in n.args) + "]"
    if kind == "shell":
        return "SHELL [" + " ".join(config.get("Shell") or []) + "]"
    return message


def go_q_list(items: Any) -> str:
    """``%q`` of a Go ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(str(i), ensure_ascii=False) for i in (items or [])) + "]"


def error_text(exc: BaseException) -> str:
    """An error's message (its type's name when it has none)."""
    return str(exc) or type(exc).__name__


