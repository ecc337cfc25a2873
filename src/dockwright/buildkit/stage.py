"""What every step of a BuildKit stage uses (:class:`StageBase`): the build's options, lexer and progress, the
stages' results, base images resolved once per build (``[internal] load metadata for …``), the stage's
environment and build args, and the step cache (a step's layer by its key, else made and recorded)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .. import reference as refs
from ..builder.options import DEFAULT_PATH, PROXY_ARGS
from ..dockerfile import Lex
from ..errors import ImageNotFound
from ..metadata.db import LayerRecord
from .frontend import BuildPlan, StagePlan, stage_index
from .progress import Recorder, VertexHandle
from .state import (
    FRONTEND_ERROR,
    Ref,
    SolveError,
    SolveOptions,
    Sources,
    State,
    error_text,
    step_key,
)
from .workspace import Workspace

__all__ = ["StageBase"]


class StageBase:
    """One build's shared state and the helpers its steps use."""

    def __init__(self, solver: Workspace, plan: BuildPlan, opts: SolveOptions, sources: Sources, rec: Recorder) -> None:
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

    # ---- FROM -----------------------------------------------------------------------------------------------------
    async def _base(self, name: str) -> tuple[str, State]:
        """An image base, resolved once per build (``[internal] load metadata for …``)."""
        fut = self.bases.get(name)
        if fut is None:
            fut = self.bases[name] = asyncio.ensure_future(self._load_base(name))
        return await asyncio.shield(fut)

    async def _load_base(self, name: str) -> tuple[str, State]:
        if name == "scratch":
            return "scratch", State({"Env": [f"PATH={DEFAULT_PATH}"]}, {}, [], Ref(), step_key("scratch"),
                                    ["/bin/sh", "-c"])
        ref = refs.tag_name_only(refs.parse_normalized_named(name))
        shown = str(ref)
        v = self.rec.vertex(f"[internal] load metadata for {shown}").start()
        try:
            image_id = await self.s.image(name, platform=self.opts.platform, sources=self.sources,
                                              pull=self.opts.pull)
        except Exception as exc:
            v.done(error_text(exc))
            raise SolveError(FRONTEND_ERROR + "failed to create LLB definition: " + error_text(exc),
                             vertex_error=error_text(exc)) from exc
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
                      step_key("image", image_id), list(cfg.get("Shell") or ["/bin/sh", "-c"]))
        return shown, state

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

    def _advance(self, state: State, key: str, layer: LayerRecord | None, *, state_key: str = "") -> None:
        """The step ``key`` made ``layer``: the stage's file system grows by it (its key ``state_key`` if the
        step's own key is not the state's, as ``COPY --link``'s)."""
        state.ref = state.ref.plus(layer)
        state.key = state_key or key
        state.steps.append((key, len(state.ref.layers) - 1 if layer is not None else -1))

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
        self.made_at = self.s.cache.put(key, "regular", description, layer, parent=parent, chain_id=chain)
        v.done()
        return layer

    def _clamp(self) -> float | None:
        sde = self.opts.buildargs.get("SOURCE_DATE_EPOCH")
        try:
            return float(sde) if sde else None
        except ValueError:
            return None

    async def _from_state(self, sp: StagePlan, name: str) -> State:
        """The state ``--from`` names: a stage of this Dockerfile, or an image."""
        by_name = {s.name: s.index for s in self.plan.stages if s.name}
        idx = stage_index(name, by_name, len(self.plan.stages))
        if idx is not None:
            return await self.results[idx]
        _, st = await self._base(name)
        return st

