"""The solver of BuildKit builds: runs a :class:`~.frontend.BuildPlan` on the engine's stores, with BuildKit's
semantics. Stages the target needs run concurrently (each waits only for the stages it uses); each step's
result is a layer on its input's layers (no intermediate images), cached under a content-based key (the input's
key, the step's definition, the digests of the files it copies) in :mod:`..metadata.bkcache`, so a rebuild
after an edit reruns only the steps whose inputs changed. RUN runs in runc (:mod:`.exec`) with its mounts
(cache, bind, secret, tmpfs); COPY/ADD copy context or stage files (``--link``: a layer of its own, keyed
without its parent); metadata instructions change the image config and add BuildKit's history entries."""


from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..builder.rootfs import make_workdir
from ..builder.stages import expand_args
from ..dockerfile import Env, Node, builder_dispatch, parse
from ..errors import InvalidArgument
from ..metadata.db import LayerRecord
from ..oci.platform import Platform, host_platform
from .copy import CopyStep
from .frontend import BuildPlan, StagePlan, plan_build, vertex_text
from .inline import read_inline_cache
from .progress import Recorder, VertexHandle
from .run import RunStep
from .state import (
    SolveError,
    SolveOptions,
    Sources,
    State,
    error_text,
    history_entry,
    history_text,
    step_key,
)
from .workspace import Workspace

__all__ = ["Solver"]

log = logging.getLogger("dockwright.buildkit")


class Solver(Workspace):
    """Runs builds on the engine's stores: ``images`` (base images, the result), ``content`` and ``snapshotter``
    (layers and the file systems steps run on), ``runner`` (RUN), ``cache`` (results by key)."""

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
        for ref in opts.cache_from:
            await self.import_cache(ref, opts, rec, sources)
        build = _Build(self, plan, opts, sources, rec)
        return await build.run()

    async def import_cache(self, name: str, opts: SolveOptions, rec: Recorder, sources: Sources) -> int:
        """Take the inline cache of the image ``name`` (pulled if it is not here) into the build cache
        (``importing cache manifest from …``); an image that cannot be had is skipped, as BuildKit skips it.
        Returns how many records it gave."""
        v = rec.vertex(f"importing cache manifest from {name}").start()
        try:
            image_id = await self.image(name, platform=opts.platform, sources=sources)
            img = self.db.get_image(image_id, with_layers=True)
            assert img is not None
            entries = read_inline_cache(self.images.config_of(img).data)
            count = 0
            for key, idx in entries:
                if self.cache.get(key, use=False) is not None:
                    continue
                layer = None
                if idx >= 0:
                    if idx >= len(img.layers):
                        continue
                    layer = self.db.get_layer(img.layers[idx][2])
                    if layer is None:
                        continue
                self.cache.put(key, "regular", f"imported from {name}", layer)
                count += 1
        except Exception as exc:  # noqa: BLE001 - a cache source that cannot be read is no error
            log.warning("importing cache from %s: %s", name, exc)
            v.done()
            return 0
        v.done()
        return count


class _Build(RunStep, CopyStep):
    """One build: the stages' tasks, their states, the progress."""

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

    # ---- a stage --------------------------------------------------------------------------------------------------
    def _prefix(self, sp: StagePlan, index: list[int]) -> str:
        index[0] += 1
        return f"[{sp.display + ' ' if sp.display else ''}{index[0]}/{sp.total}] "

    async def _stage(self, sp: StagePlan) -> State:
        index = [0]
        if sp.base_stage is not None:
            state = (await self.results[sp.base_stage]).copy()
            from_v: VertexHandle | None = None
        else:
            shown, base = await self._base(sp.base)
            state = base.copy()
            state.config.pop("ArgsEscaped", None)
            from_v = self.rec.vertex(self._prefix(sp, index) + f"FROM {shown}", key=state.key)
            from_v.start()  # DONE, never CACHED: dockerd 20.10's BuildKit shows a local base so on every build
            try:
                await self.s.ensure(state.ref)
            except Exception as exc:
                from_v.done(error_text(exc))
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
                    v.done(error_text(exc))
                    raise SolveError(error_text(exc), name, n.start_line) from exc
                prev = v.digest
            else:
                await self._meta(state, n)
        return state

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
            state.history.append(history_entry("ARG " + " ".join(shown), empty=True))
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
        state.history.append(history_entry(history_text(kind, n, d.message, d.config), empty=True))

    # ---- steps ----------------------------------------------------------------------------------------------------
    async def _step(self, sp: StagePlan, state: State, n: Node, v: VertexHandle) -> None:
        kind = n.value.lower()
        if kind == "workdir":
            d = builder_dispatch(state.config, n, env=self._env(state), escape=self.lex.escape,
                                 cmd_set=state.cmd_set)
            state.config = d.config
            wd = str(d.config.get("WorkingDir") or "/")
            key = step_key("mkdir", state.key, wd)
            layer = await self._cached_or(v, key, lambda: self._workdir(state, wd), f"WORKDIR {wd}")
            state.history.append(history_entry(f"WORKDIR {wd}", empty=layer is None, at=self.made_at))
            self._advance(state, key, layer)
            return
        if kind == "run":
            await self._run(sp, state, n, v)
            return
        await self._copy(sp, state, n, v)

    async def _workdir(self, state: State, wd: str) -> LayerRecord | None:
        async def mk(rootfs: Path) -> None:
            await asyncio.to_thread(make_workdir, rootfs, wd)
        return await self.s.change(state.ref, mk, clamp=self._clamp())



def _first_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            return _first_error(e)
        if not isinstance(e, asyncio.CancelledError):
            return e
    first: BaseException = eg.exceptions[0]
    return first


