"""The solver of BuildKit builds: runs a :class:`~.frontend.BuildPlan` on the engine's stores, with BuildKit's
semantics. Stages the target needs run concurrently (each waits only for the stages it uses); each step's
result is a layer on its input's layers (no intermediate images), cached under a content-based key (the input's
key, the step's definition, the digests of the files it copies) in :mod:`..metadata.bkcache`, so a rebuild
after an edit reruns only the steps whose inputs changed. RUN runs in runc (:mod:`.exec`) with its mounts
(cache, bind, secret, tmpfs); COPY/ADD copy context or stage files (``--link``: a layer of its own, keyed
without its parent); metadata instructions change the image config and add BuildKit's history entries."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .. import reference as refs
from ..builder.addcopy import resolve_chown, write_heredoc
from ..builder.copy import copy_sources
from ..builder.deps import BuildImages, Pull
from ..builder.options import DEFAULT_PATH, PROXY_ARGS
from ..builder.paths import follow_in_scope
from ..builder.remote_add import download, is_url
from ..builder.rootfs import EMPTY_LAYER_DIFF_ID, make_workdir
from ..builder.sources import resolve_sources_named
from ..builder.srchash import combine, source_hash
from ..builder.stages import expand_args
from ..content.store import ContentStore
from ..dockerfile import Env, Lex, Node, builder_dispatch, parse, parse_heredoc
from ..errors import DockwrightError, ImageNotFound, InvalidArgument
from ..layers.apply import adopt_snapshot, ensure_chain
from ..layers.diff import write_layer_from_upper
from ..metadata.bkcache import BKCacheRecord, BKCacheStore
from ..metadata.db import LayerRecord, MetadataDB
from ..oci import mediatypes as mt
from ..oci.digest import sha256_digest
from ..oci.gojson import rfc3339_nano
from ..oci.platform import Platform, host_platform
from ..snapshots import OverlaySnapshotter, mount_all, unmount
from .exec import ExecRequest, ExecRunner
from .frontend import BuildPlan, MountSpec, StagePlan, parse_mount, plan_build, stage_index, step_flags, vertex_text
from .mounts import CacheMounts
from .progress import Recorder, VertexHandle

__all__ = ["FRONTEND_ERROR", "history_times", "Solver", "SolveOptions", "Sources", "State", "Ref", "SolveError",
           "HISTORY_COMMENT"]

log = logging.getLogger("dockwright.buildkit")

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

    def copy(self) -> State:
        """An independent copy (a stage built FROM another)."""
        return replace(self, config=json.loads(json.dumps(self.config)), meta=dict(self.meta),
                       history=[dict(h) for h in self.history], args={}, cmd_set=False)


def _key(*parts: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Solver:
    """Runs builds on the engine's stores: ``images`` (base images, the result), ``content`` and ``snapshotter``
    (layers and the file systems steps run on), ``runner`` (RUN), ``cache`` (results by key)."""

    def __init__(self, *, root: Path, db: MetadataDB, content: ContentStore, snapshotter: OverlaySnapshotter,
                 images: BuildImages, pull: Pull, runner: ExecRunner, cache: BKCacheStore,
                 cache_mounts: CacheMounts, secrets_dir: Path) -> None:
        self.root = Path(root)
        self.db = db
        self.content = content
        self.snapshotter = snapshotter
        self.images = images
        self.pull = pull
        self.runner = runner
        self.cache = cache
        self.cache_mounts = cache_mounts
        self.secrets_dir = Path(secrets_dir)

    # ---- the build ----------------------------------------------------------------------------------------------
    async def plan(self, dockerfile: bytes, opts: SolveOptions) -> BuildPlan:
        """The Dockerfile's plan (parse errors raise :class:`InvalidArgument`)."""
        if opts.platform:
            want = Platform.parse_specifier(opts.platform)
            host = host_platform()
            if (want.os, want.architecture) != (host.os, host.architecture):
                raise InvalidArgument(f"building for {opts.platform} is not supported by this engine: it builds "
                                      f"for the host's platform ({host.os}/{host.architecture})")
        return await asyncio.to_thread(plan_build, dockerfile, opts.dockerfile_name, opts.target, opts.buildargs)

    async def solve(self, plan: BuildPlan, opts: SolveOptions, sources: Sources, rec: Recorder) -> State:
        """Build the plan's target; the result's config has the build's labels. Raises :class:`SolveError`
        (a failed step) or the error of the step that failed."""
        build = _Build(self, plan, opts, sources, rec)
        return await build.run()

    # ---- file systems ---------------------------------------------------------------------------------------------
    async def ensure(self, ref: Ref) -> str | None:
        """The snapshot of ``ref`` (its layers unpacked where missing): its top ChainID, None for scratch."""
        if not ref.layers:
            return None
        content = self.content

        def opener(d: str) -> Callable[[], BinaryIO]:
            return lambda: content.open(d)

        pairs = [(c, opener(lay.digest)) for c, lay in zip(ref.chain_ids(), ref.layers, strict=True)]
        return await asyncio.to_thread(ensure_chain, self.snapshotter, pairs, sync=False)

    async def view(self, ref: Ref) -> tuple[str, Path]:
        """A read-only view of ``ref`` mounted: (its snapshot key, the directory); see :meth:`drop_view`."""
        key = f"extract-bkview-{os.urandom(8).hex()}"
        target = self.root / "tmp" / key
        target.mkdir(parents=True)
        chain = await self.ensure(ref)
        if chain is None:
            return key, target
        mounts = await asyncio.to_thread(self.snapshotter.view, key, chain)
        await asyncio.to_thread(mount_all, mounts, target)
        return key, target

    async def drop_view(self, key: str, target: Path) -> None:
        """Unmount and drop a view."""
        try:
            await asyncio.to_thread(unmount, target)
        except Exception:  # noqa: BLE001 - not mounted (scratch)
            pass
        shutil.rmtree(target, ignore_errors=True)
        try:
            await asyncio.to_thread(self.snapshotter.remove, key)
        except Exception:  # noqa: BLE001
            pass

    async def change(self, ref: Ref, fn: Callable[[Path], Awaitable[None]], *,
                     clamp: float | None = None) -> LayerRecord | None:
        """Run ``fn(rootfs)`` on a writable snapshot of ``ref`` and write what it changed as a layer (None: it
        changed nothing). The snapshot becomes the new layer's, so the next step does not unpack it."""
        key = f"extract-bkstep-{os.urandom(8).hex()}"  # "extract-": removed at start-up if a crash left it
        parent = await self.ensure(ref)
        await asyncio.to_thread(self.snapshotter.prepare, key, parent)
        target = self.root / "tmp" / key
        target.mkdir(parents=True)
        adopted = False
        try:
            mounts = await asyncio.to_thread(self.snapshotter.mounts, key)
            await asyncio.to_thread(mount_all, mounts, target)
            try:
                await fn(target)
            finally:
                await asyncio.to_thread(unmount, target)
            writer = self.content.writer()
            try:
                res = await asyncio.to_thread(write_layer_from_upper, self.snapshotter.upper_dir(key), writer,
                                              mtime_clamp=clamp, level=None)
                digest = await asyncio.to_thread(writer.commit, res.digest, res.size)
            except BaseException:
                writer.abort()
                raise
            if res.diff_id == EMPTY_LAYER_DIFF_ID:
                await self.images.collect({digest})
                return None
            layer = LayerRecord(digest, res.diff_id, mt.OCI_LAYER, res.size, res.diff_size, res.tar_size)
            if clamp is None:
                chain = ref.plus(layer).chain_ids()[-1]
                adopted = await asyncio.to_thread(adopt_snapshot, self.snapshotter, key, chain)
            return layer
        finally:
            shutil.rmtree(target, ignore_errors=True)
            if not adopted:
                await asyncio.to_thread(self.snapshotter.remove, key)

    def cached(self, key: str) -> BKCacheRecord | None:
        """The cached result of ``key`` (None: a miss, or its layer is gone)."""
        rec = self.cache.get(key)
        if rec is None or (rec.layer is not None and not self.content.exists(rec.layer.digest)):
            return None
        return rec


class _Build:
    """One build: the stages' tasks, their states, the progress."""

    def __init__(self, solver: Solver, plan: BuildPlan, opts: SolveOptions, sources: Sources, rec: Recorder) -> None:
        self.s = solver
        self.plan = plan
        self.opts = opts
        self.sources = sources
        self.rec = rec
        self.lex = Lex(plan.escape)
        self.results: dict[int, asyncio.Future[State]] = {}
        self.bases: dict[str, asyncio.Future[tuple[str, State]]] = {}
        self.meta_args = {k: (opts.buildargs[k] if opts.buildargs.get(k) is not None else v)
                          for k, v in plan.meta_args}
        self.used_args: set[str] = set()
        self.made_at = 0.0  # when the last step's result was made (its history entry's time)

    async def run(self) -> State:
        loop = asyncio.get_running_loop()
        for i in self.plan.needed:
            self.results[i] = loop.create_future()
        try:
            async with asyncio.TaskGroup() as tg:
                for i in self.plan.needed:
                    tg.create_task(self._stage_task(i))
        except BaseExceptionGroup as eg:
            first = _first_error(eg)
            raise first from None
        state = self.results[self.plan.target].result()
        if self.opts.labels:
            state.config["Labels"] = {**(state.config.get("Labels") or {}), **self.opts.labels}
        return state

    async def _stage_task(self, i: int) -> None:
        fut = self.results[i]
        try:
            fut.set_result(await self._stage(self.plan.stages[i]))
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                fut.exception()  # retrieved: no "never retrieved" warning
            raise

    # ---- FROM -----------------------------------------------------------------------------------------------------
    async def _base(self, name: str) -> tuple[str, State]:
        """An image base, resolved once per build (``[internal] load metadata for …``)."""
        fut = self.bases.get(name)
        if fut is None:
            fut = self.bases[name] = asyncio.ensure_future(self._load_base(name))
        return await asyncio.shield(fut)

    async def _load_base(self, name: str) -> tuple[str, State]:
        if name == "scratch":
            return "scratch", State({"Env": [f"PATH={DEFAULT_PATH}"]}, {}, [], Ref(), _key("scratch"),
                                    ["/bin/sh", "-c"])
        ref = refs.tag_name_only(refs.parse_normalized_named(name))
        shown = str(ref)
        v = self.rec.vertex(f"[internal] load metadata for {shown}").start()
        try:
            image_id = await self._resolve(name, ref)
        except Exception as exc:
            v.done(_err(exc))
            raise SolveError(FRONTEND_ERROR + "failed to create LLB definition: " + _err(exc),
                             vertex_error=_err(exc)) from exc
        v.done()
        rec = self.s.db.get_image(image_id, with_layers=True)
        if rec is None:
            raise ImageNotFound(image_id)
        img = self.s.images.config_of(rec)
        data = img.data
        cfg = dict(data.get("config") or {})
        env = list(cfg.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in env):
            cfg["Env"] = env + [f"PATH={DEFAULT_PATH}"]
        layers: list[LayerRecord] = []
        for _diff_id, _chain, digest in rec.layers:
            lay = self.s.db.get_layer(digest)
            if lay is None:
                raise ImageNotFound(f"{name}: layer {digest} is not stored")
            layers.append(lay)
        meta = {k: data[k] for k in ("architecture", "os", "variant") if data.get(k)}
        state = State(cfg, meta, [dict(h) for h in data.get("history") or []], Ref(tuple(layers)),
                      _key("image", image_id), list(cfg.get("Shell") or ["/bin/sh", "-c"]))
        return shown, state

    async def _resolve(self, name: str, ref: refs.Reference) -> str:
        if not self.opts.pull:
            try:
                return self.s.images.resolve(name).id
            except ImageNotFound:
                pass
        events = await self.s.pull(ref.familiar_name if ref.domain == "docker.io" else ref.name, ref.tag or "",
                                   self.opts.platform)
        async for _ in events:
            pass
        return self.s.images.resolve(str(ref)).id

    # ---- a stage --------------------------------------------------------------------------------------------------
    def _prefix(self, sp: StagePlan, index: list[int]) -> str:
        index[0] += 1
        return f"[{sp.display + ' ' if sp.display else ''}{index[0]}/{sp.total}] "

    async def _stage(self, sp: StagePlan) -> State:
        index = [0]
        if sp.base_stage is not None:
            state = (await self.results[sp.base_stage]).copy()
            index[0] += 1
            from_v: VertexHandle | None = None
        else:
            shown, base = await self._base(sp.base)
            state = base.copy()
            state.config.pop("ArgsEscaped", None)
            from_v = self.rec.vertex(self._prefix(sp, index) + f"FROM {shown}", key=state.key)
            chains = state.ref.chain_ids()
            if not chains or self.s.snapshotter.exists(chains[-1]):
                from_v.cached()  # unpacked by an earlier build or container
            else:
                from_v.start()
                try:
                    await self.s.ensure(state.ref)
                except Exception as exc:
                    from_v.done(_err(exc))
                    raise
                from_v.done()
        state.meta_args = dict(self.meta_args)
        state.config["OnBuild"] = state.config.get("OnBuild") or None
        triggers = list(state.config.get("OnBuild") or [])
        state.config["OnBuild"] = None
        nodes = list(sp.nodes)
        if triggers:
            trig_nodes: list[Node] = []
            for t in triggers:
                parsed, _ = parse(t)
                trig_nodes.extend(parsed)
            nodes = trig_nodes + nodes
        prev = from_v.digest if from_v is not None else ""
        for n in nodes:
            kind = n.value.lower()
            if kind in ("run", "copy", "add", "workdir"):
                name = self._prefix(sp, index) + vertex_text(n, self.lex, Env(self._env(state)))
                v = self.rec.vertex(name, [prev] if prev else [])
                try:
                    await self._step(sp, state, n, v)
                except SolveError as exc:
                    v.done(exc.vertex_error)
                    exc.vertex = exc.vertex or name
                    exc.line = exc.line or n.start_line
                    raise
                except asyncio.CancelledError:
                    v.done("context canceled")
                    raise
                except Exception as exc:
                    v.done(_err(exc))
                    raise SolveError(_err(exc), name, n.start_line) from exc
                prev = v.digest
            else:
                await self._meta(state, n)
        return state

    def _env(self, state: State, *, run: bool = False) -> list[str]:
        """The stage's environment: the config's Env plus the declared build args it does not set (and, for RUN,
        the proxy build args the client gave)."""
        env = list(state.config.get("Env") or [])
        keys = {e.partition("=")[0] for e in env}
        for k in state.args:
            val = self._arg(state, k)
            if val is not None and k not in keys:
                env.append(f"{k}={val}")
                keys.add(k)
        if run:
            for k in PROXY_ARGS:
                if k not in keys and self.opts.buildargs.get(k) is not None:
                    env.append(f"{k}={self.opts.buildargs[k]}")
        return env

    def _arg(self, state: State, k: str) -> str | None:
        if self.opts.buildargs.get(k) is not None:
            return self.opts.buildargs[k]
        v = state.args.get(k)
        return v if v is not None else state.meta_args.get(k)

    # ---- metadata instructions ------------------------------------------------------------------------------------
    async def _meta(self, state: State, n: Node) -> None:
        kind = n.value.lower()
        if kind == "arg":
            shown: list[str] = []
            for k, val in expand_args(self.lex, n.args, self._env(state)):
                shown.append(f"{k}={val}" if val is not None else k)  # as declared, not the value given
                if val is None and k in state.meta_args:
                    val = state.meta_args[k]
                state.args[k] = val
                if k in self.opts.buildargs:
                    self.used_args.add(k)
            state.history.append(_history("ARG " + " ".join(shown), empty=True))
            return
        d = builder_dispatch(state.config, n, env=self._env(state), escape=self.lex.escape, cmd_set=state.cmd_set)
        state.config = d.config
        state.cmd_set = d.cmd_set
        if d.maintainer is not None:
            state.maintainer = d.maintainer
        if kind == "shell":
            state.shell = list(d.config.get("Shell") or state.shell)
        if kind in ("cmd", "entrypoint"):
            state.config["ArgsEscaped"] = True  # the Dockerfile frontend sets it for both, whatever the form
        state.history.append(_history(_history_text(kind, n, d.message, d.config), empty=True))

    # ---- steps ----------------------------------------------------------------------------------------------------
    async def _step(self, sp: StagePlan, state: State, n: Node, v: VertexHandle) -> None:
        kind = n.value.lower()
        if kind == "workdir":
            d = builder_dispatch(state.config, n, env=self._env(state), escape=self.lex.escape,
                                 cmd_set=state.cmd_set)
            state.config = d.config
            wd = str(d.config.get("WorkingDir") or "/")
            key = _key("mkdir", state.key, wd)
            layer = await self._cached_or(v, key, lambda: self._workdir(state, wd), f"WORKDIR {wd}")
            state.history.append(_history(f"WORKDIR {wd}", empty=layer is None, at=self.made_at))
            self._advance(state, key, layer)
            return
        if kind == "run":
            await self._run(sp, state, n, v)
            return
        await self._copy(sp, state, n, v)

    def _advance(self, state: State, key: str, layer: LayerRecord | None) -> None:
        state.ref = state.ref.plus(layer)
        state.key = key

    async def _cached_or(self, v: VertexHandle, key: str, make: Callable[[], Awaitable[LayerRecord | None]],
                         description: str, parent: str = "", ref: Ref | None = None) -> LayerRecord | None:
        """The step's layer from the cache (the vertex ``CACHED``), else made by ``make`` and recorded."""
        if not self.opts.nocache:
            rec = self.s.cached(key)
            if rec is not None:
                v.cached()
                self.made_at = rec.created
                return rec.layer
        v.start()
        layer = await make()
        chain = ref.plus(layer).chain_ids()[-1] if ref is not None and layer is not None else ""
        self.s.cache.put(key, "regular", description, layer, parent=parent, chain_id=chain)
        self.made_at = time.time()
        v.done()
        return layer

    async def _workdir(self, state: State, wd: str) -> LayerRecord | None:
        async def mk(rootfs: Path) -> None:
            await asyncio.to_thread(make_workdir, rootfs, wd)
        return await self.s.change(state.ref, mk, clamp=self._clamp())

    def _clamp(self) -> float | None:
        sde = self.opts.buildargs.get("SOURCE_DATE_EPOCH")
        try:
            return float(sde) if sde else None
        except ValueError:
            return None

    # ---- RUN ------------------------------------------------------------------------------------------------------
    async def _run(self, sp: StagePlan, state: State, n: Node, v: VertexHandle) -> None:
        env_list = self._env(state, run=True)
        env = Env(self._env(state))
        flags = step_flags(n)
        mounts = [parse_mount(self.lex.process_word(m, env), n.start_line) for m in flags.get("mount", [])]
        network = flags.get("network", [self.opts.network or "default"])[0]
        if network not in ("default", "none", "host", "sandbox"):
            raise InvalidArgument(f"unsupported network mode \"{network}\"")
        if n.attributes.get("json"):
            args = [a.value for a in n.args]
        else:
            script = n.args[0].value if n.args else ""
            if n.heredocs and parse_heredoc(script.strip()) is not None:
                script = n.heredocs[0].content
            args = list(state.shell) + [script]
        for k in state.args:
            if k in self.opts.buildargs:
                self.used_args.add(k)
        shown_args = [f"{k}={self._arg(state, k)}" for k in state.args if self._arg(state, k) is not None]
        created_by = "RUN " + (f"|{len(shown_args)} " + " ".join(shown_args) + " " if shown_args else "") \
            + " ".join(args) + " # buildkit"
        mount_keys = [await self._mount_key(sp, state, m) for m in mounts]
        key = _key("exec", state.key, args, env_list, state.config.get("WorkingDir") or "/",
                   state.config.get("User") or "", network, mount_keys, self.opts.extra_hosts)
        description = "mount / from exec " + " ".join(args)

        async def make() -> LayerRecord | None:
            return await self._exec(sp, state, args, env_list, mounts, network, v)

        layer = await self._cached_or(v, key, make, description, state.key, state.ref)
        state.history.append(_history(created_by, empty=layer is None, at=self.made_at))
        self._advance(state, key, layer)

    async def _mount_key(self, sp: StagePlan, state: State, m: MountSpec) -> Any:
        if m.type == "bind":
            if m.from_:
                src_state = await self._from_state(sp, m.from_)
                return ["bind", m.target, m.source, src_state.key, m.readonly]
            ctx = await self.sources.context()
            src = m.source.lstrip("/") or "."
            h = await asyncio.to_thread(source_hash, ctx, follow_in_scope(ctx, src))
            return ["bind", m.target, m.source, "context:" + h, m.readonly]
        if m.type == "cache":
            return ["cache", m.target, m.id, m.sharing, m.readonly]
        if m.type == "secret":
            return ["secret", m.target, m.id, m.env]
        return [m.type, m.target, m.size]

    async def _from_state(self, sp: StagePlan, name: str) -> State:
        """The state ``--from`` names: a stage of this Dockerfile, or an image."""
        by_name = {s.name: s.index for s in self.plan.stages if s.name}
        idx = stage_index(name, by_name, len(self.plan.stages))
        if idx is not None:
            return await self.results[idx]
        _, st = await self._base(name)
        return st

    async def _exec(self, sp: StagePlan, state: State, args: list[str], env: list[str], mounts: list[MountSpec],
                    network: str, v: VertexHandle) -> LayerRecord | None:
        cleanups: list[Callable[[], Awaitable[None]]] = []
        binds: list[tuple[str | Path, str, bool]] = []
        tmpfs: list[tuple[str, str]] = []
        holders: list[Any] = []
        secret_env: list[str] = []
        try:
            for m in mounts:
                target = m.target if m.target.startswith("/") else os.path.join(
                    state.config.get("WorkingDir") or "/", m.target)
                if m.type == "tmpfs":
                    tmpfs.append((target, f"size={m.size}" if m.size else ""))
                elif m.type == "bind":
                    if m.from_:
                        src_state = await self._from_state(sp, m.from_)
                        vkey, vdir = await self.s.view(src_state.ref)
                        cleanups.append(functools.partial(self.s.drop_view, vkey, vdir))
                        base = vdir
                    else:
                        base = await self.sources.context()
                    rel = follow_in_scope(base, m.source.lstrip("/") or ".")
                    src = base / rel if rel != "." else base
                    if not os.path.lexists(src):
                        raise _not_found(m.source)
                    binds.append((src, target, True))
                elif m.type == "cache":
                    seed = None
                    if m.from_:
                        src_state = await self._from_state(sp, m.from_)
                        vkey, vdir = await self.s.view(src_state.ref)
                        cleanups.append(functools.partial(self.s.drop_view, vkey, vdir))
                        rel = follow_in_scope(vdir, m.source.lstrip("/") or ".")
                        seed_src = vdir / rel if rel != "." else vdir

                        def seed(dst: Path, s: Path = seed_src) -> None:
                            shutil.copytree(s, dst, symlinks=True, dirs_exist_ok=True)
                    cm = self.s.cache_mounts.use(
                        m.id, m.sharing, mode=m.mode if m.mode is not None else 0o755, uid=m.uid or 0,
                        gid=m.gid or 0, description=f"cached mount {m.target} from exec {' '.join(args)}", seed=seed)
                    path = await cm.__aenter__()
                    holders.append(cm)
                    binds.append((path, target, m.readonly))
                elif m.type == "secret":
                    data = await self.sources.secret(m.id)
                    if data is None:
                        if m.required:
                            raise SolveError(f"secret {m.id}: not found")
                        continue
                    if m.env:
                        secret_env.append(f"{m.env}={data.decode(errors='replace')}")
                    if m.target:
                        path = await asyncio.to_thread(self._secret_file, data, m)
                        cleanups.append(functools.partial(asyncio.to_thread, shutil.rmtree, path.parent, True))
                        binds.append((path, target, True))
                elif m.type == "ssh":
                    if m.required:
                        raise SolveError("no SSH key \"default\" forwarded from the client")

            async def run(rootfs: Path) -> None:
                stubs = await asyncio.to_thread(_missing_files, rootfs, [b[1] for b in binds if os.path.isfile(b[0])]
                                                + list(_ETC_MOUNTS))
                req = ExecRequest(rootfs=rootfs, args=args, env=env + secret_env,
                                  cwd=state.config.get("WorkingDir") or "/", user=state.config.get("User") or "",
                                  network="host" if network == "host" else ("none" if network == "none"
                                                                            else "default"),
                                  binds=binds, tmpfs=tmpfs, extra_hosts=self.opts.extra_hosts)
                code = await self.s.runner.run(req, v.log)
                await asyncio.to_thread(_remove_stubs, rootfs, stubs)
                if code != 0:
                    raise SolveError(f"executor failed running [{' '.join(args)}]: exit code: {code}")

            return await self.s.change(state.ref, run, clamp=self._clamp())
        finally:
            for cm in reversed(holders):
                await cm.__aexit__(None, None, None)
            for c in reversed(cleanups):
                await c()

    def _secret_file(self, data: bytes, m: MountSpec) -> Path:
        d = self.s.secrets_dir / os.urandom(8).hex()
        d.mkdir(parents=True, mode=0o700)
        path = d / "secret"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, m.mode if m.mode is not None else 0o400)
        os.chown(path, m.uid or 0, m.gid or 0)
        return path

    # ---- COPY / ADD -----------------------------------------------------------------------------------------------
    async def _copy(self, sp: StagePlan, state: State, n: Node, v: VertexHandle) -> None:
        kind = n.value.lower()
        flags = {k: vals[-1] for k, vals in step_flags(n).items() if k != "exclude"}
        env = Env(self._env(state))
        raw = [a.value for a in n.args]
        is_doc = [bool(n.heredocs) and parse_heredoc(r) is not None for r in raw]
        words = [r if doc else self.lex.process_word(r, env) for r, doc in zip(raw, is_doc, strict=True)]
        if is_doc[-1]:
            raise InvalidArgument(f"{kind.upper()} cannot accept a heredoc as a destination")
        srcs, dest_word = words[:-1], words[-1]
        chown = self.lex.process_word(flags["chown"], env) if flags.get("chown") else ""
        chmod = self.lex.process_word(flags["chmod"], env) if flags.get("chmod") else ""
        if chmod:
            try:
                int(chmod, 8)
            except ValueError:
                raise InvalidArgument(f"invalid chmod parameter: {chmod}") from None
        link = flags.get("link", "false").lower() in ("true", "1", "")
        checksum = flags.get("checksum", "")
        workdir = state.config.get("WorkingDir") or "/"
        dest = dest_word
        if not dest.startswith("/"):
            dest = os.path.join(workdir, dest) + ("/" if dest.endswith("/") or dest == "." else "")
        from_name = flags.get("from", "")
        extra = self.s.root / "tmp" / f"bk-src-{os.urandom(8).hex()}"
        view: tuple[str, Path] | None = None
        try:
            if from_name:
                src_state = await self._from_state(sp, self.lex.process_word(from_name, env))
                view = await self.s.view(src_state.ref)
                src_root = view[1]
                src_tag = "from:" + src_state.key
            else:
                src_root = None
                src_tag = "context"
            files: list[Path] = []
            names: list[str] = []
            ids: list[str] = []
            docs = iter(n.heredocs)
            for s, doc in zip(srcs, is_doc, strict=False):
                if doc:
                    path = await asyncio.to_thread(write_heredoc, extra / str(len(files)), next(docs), env)
                    files.append(path)
                    names.append(path.name)
                    ids.append(await asyncio.to_thread(source_hash, path.parent, path.name))
                elif kind == "add" and is_url(s):
                    got = await download(s, extra / str(len(files)), lambda cur, tot: None)
                    if checksum and got.hash.rpartition(":")[2] != checksum.rpartition(":")[2] \
                            and not await asyncio.to_thread(_sha256_matches, got.path, checksum):
                        raise SolveError(f"digest mismatch for {s}: {checksum}")
                    files.append(got.path)
                    names.append(got.path.name)
                    ids.append(got.hash)
                else:
                    if src_root is None:
                        src_root = await self.sources.context()
                    try:
                        named = await asyncio.to_thread(resolve_sources_named, src_root, s, _NoIgnore())
                    except InvalidArgument:
                        raise _not_found(s) from None
                    if not named:
                        raise _not_found(s)
                    root = src_root
                    files.extend(p for p, _ in named)
                    names.extend(nm for _, nm in named)
                    ids.extend(await asyncio.to_thread(_hashes, root, [p for p, _ in named]))
            src_hash = combine(ids) if ids else ""
            parent_key = "" if link else state.key
            key = _key("copy", parent_key, kind, src_tag, src_hash, dest, chown, chmod, link, srcs)
            decompress = kind == "add"

            async def make() -> LayerRecord | None:
                async def cp(rootfs: Path) -> None:
                    def work() -> None:
                        uid, gid = resolve_chown(chown, rootfs) if chown else (0, 0)
                        copy_sources(files, rootfs, dest, srcs, uid, gid, chmod, decompress, names)
                    await asyncio.to_thread(work)
                base = Ref() if link else state.ref
                layer = await self.s.change(base, cp, clamp=self._clamp())
                if layer is None and link:
                    return None
                return layer

            layer = await self._cached_or(v, key, make, vertex_text(n, self.lex, env), parent_key,
                                          Ref() if link else state.ref)
            shown = " ".join(raw[:-1] if not any(is_doc[:-1]) else words[:-1])
            state.history.append(_history(f"{kind.upper()} {shown} {dest_word} # buildkit", empty=layer is None,
                                          at=self.made_at))
            self._advance(state, key if not link else _key("link", state.key, key), layer)
        finally:
            if view is not None:
                await self.s.drop_view(*view)
            await asyncio.to_thread(shutil.rmtree, extra, True)


class _NoIgnore:
    """The context as synced already has ``.dockerignore`` applied."""

    def matches(self, path: str) -> bool:
        return False


def _not_found(source: str) -> SolveError:
    """A COPY source (or bind mount source) that is not there, in BuildKit's words."""
    msg = f"\"/{source.lstrip('/')}\" not found: not found"
    return SolveError("failed to compute cache key: " + msg, vertex_error=msg)


def _hashes(root: Path, paths: list[Path]) -> list[str]:
    return [source_hash(root, p) for p in paths]


def _sha256_matches(path: Path, checksum: str) -> bool:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return checksum.rpartition(":")[2] == h.hexdigest()


#: the files every step's sandbox has mounted from its bundle (stubs runc makes where the rootfs has none)
_ETC_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def _missing_files(rootfs: Path, targets: list[str]) -> list[str]:
    """The file mount targets missing in ``rootfs``: runc makes an empty file for each, which BuildKit removes
    after the step (the directories it made stay in the layer, as with dockerd 20.10's BuildKit)."""
    out: list[str] = []
    for t in targets:
        rel = t.strip("/")
        if rel and not os.path.lexists(rootfs / rel):
            out.append(rel)
    return out


def _remove_stubs(rootfs: Path, stubs: list[str]) -> None:
    for rel in stubs:
        path = rootfs / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(path)


def _history(created_by: str, *, empty: bool, at: float = 0.0) -> dict[str, Any]:
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


def _history_text(kind: str, n: Node, message: str, config: dict[str, Any]) -> str:
    """The history ``created_by`` BuildKit writes for a metadata instruction."""
    if kind == "cmd":
        return "CMD " + _go_q_list(config.get("Cmd"))
    if kind == "entrypoint":
        return "ENTRYPOINT " + _go_q_list(config.get("Entrypoint"))
    if kind == "expose":
        ports = sorted((config.get("ExposedPorts") or {}).keys())
        return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in ports) + "]"
    if kind == "volume":
        return "VOLUME [" + " ".join(a.value for a in n.args) + "]"
    if kind == "shell":
        return "SHELL [" + " ".join(config.get("Shell") or []) + "]"
    return message


def _go_q_list(items: Any) -> str:
    """``%q`` of a Go ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(str(i), ensure_ascii=False) for i in (items or [])) + "]"


def _err(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _first_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            return _first_error(e)
        if not isinstance(e, asyncio.CancelledError):
            return e
    first: BaseException = eg.exceptions[0]
    return first


