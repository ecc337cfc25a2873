"""The classic builder's step executor (``POST /build``, ``docker build`` with ``DOCKER_BUILDKIT=0``), with
dockerd 20.10's classic builder as the reference for every output line, history entry and config.

Each instruction is a step on top of the previous image, as dockerd's classic builder does: metadata steps commit
an image with an empty-layer history entry (``/bin/sh -c #(nop)  ENV …``) and print the ``Running in``/``Removing
intermediate container`` lines of the container dockerd commits them through (a real, never started container when
``rm=0`` keeps it); WORKDIR makes its directory (a layer unless it existed); RUN runs a container (:mod:`.run`);
COPY/ADD copy context files, an image's files (``--from``), heredocs or (ADD) downloaded URLs into a snapshot and
commit the diff, named in the history by dockerd's checksums (:mod:`.addcopy`, :mod:`.srchash`). FROM runs the
base image's ONBUILD triggers. Every step's result is an intermediate image whose parent is the previous one, and
the cache is keyed by (parent image, config, the step as recorded in the history), so an unchanged rebuild is all
"Using cache"; with ``cachefrom`` the given images' histories are the cache, as dockerd's ``ImageCache``
(:mod:`.cache`). A step's container is removed as dockerd's ``dispatch`` removes it (``forcerm``: always; ``rm``:
after a success; a failed RUN's container stays otherwise). Each stage's image is an ``aux`` message when the stage
is done; ``quiet`` holds the output back, sent only if the build fails. Layers are written deterministically
(sorted entries, numeric owners; mtimes clamped to ``SOURCE_DATE_EPOCH`` when that build arg is given) and stored
as plain tars (OCI ``tar`` media type; the digest is the DiffID): no deflate on the build's critical path, as
dockerd's graph driver, and push/save send them as they are.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from .. import reference as refs
from ..content.store import ContentStore
from ..dockerfile import (
    BUILDER_METADATA_COMMANDS,
    Dispatched,
    DockerfileError,
    Env,
    Lex,
    Node,
    ParseCancelled,
    builder_dispatch,
    check_env_size,
    parse,
    parse_dockerfile,
    validate_instruction,
)
from ..errors import ImageNotFound, InvalidArgument, Unavailable
from ..metadata.buildcache import BuildCacheStore
from ..metadata.db import MetadataDB
from ..oci.digest import short_id
from ..oci.platform import Platform
from ..progress import Aux, ProgressEvent, StreamText
from ..snapshots import OverlaySnapshotter
from .addcopy import AddCopySteps
from .cache import BuildCache
from .commit import StepCommitter
from .deps import BuildContainers, BuildImages, Publisher, Pull, VerifyExtraHosts, VerifyResources
from .dockerignore import IgnoreRules
from .options import BUILD_LABEL, DEFAULT_PATH, PROXY_ARGS, QUIET_BUFFER, BuildOptions
from .rootfs import RootfsLayers, make_workdir
from .run import RunSteps
from .stages import Plan, Stage, cache_parent, expand_args, go_list, in_thread, plan, stage_env

__all__ = ["Builder"]

_T = TypeVar("_T")


class Builder:
    """Runs builds: parses and plans a Dockerfile, then runs its steps against the image store, the containers,
    the snapshots and the build cache it is given."""

    def __init__(self, *, root: Path, db: MetadataDB, content: ContentStore, snapshotter: OverlaySnapshotter,
                 images: BuildImages, containers: BuildContainers, pull: Pull, events: Publisher,
                 cache_store: BuildCacheStore, verify_extra_hosts: VerifyExtraHosts,
                 verify_resources: VerifyResources) -> None:
        self.root = root
        self.db = db
        self.images = images
        self.containers = containers
        self.pull = pull
        self.events = events
        self.cache = BuildCache(cache_store, db, images, events, root)
        self.committer = StepCommitter(db, images, cache_store)
        self.rootfs = RootfsLayers(root, db, content, snapshotter, images)
        self.runs = RunSteps(root, containers, content, snapshotter, images, self.cache, self.committer,
                             self.rootfs, verify_extra_hosts, verify_resources)
        self.copies = AddCopySteps(root, self.cache, self.committer, self.rootfs, self._image)
        self._parsing: set[threading.Event] = set()  # the cancel events of the Dockerfile parses running
        self.closing = False

    def shutdown(self) -> None:
        """The daemon is stopping: Dockerfile parses still running stop now (their builds fail with
        :class:`Unavailable`) instead of holding the shutdown until they end."""
        self.closing = True
        for cancel in list(self._parsing):
            cancel.set()

    async def _parsed(self, fn: Callable[[threading.Event], _T]) -> _T:
        """``fn(cancel)`` (a parse) off the event loop, stopped when the caller is cancelled or the daemon stops."""
        cancel = threading.Event()
        if self.closing:
            cancel.set()
        self._parsing.add(cancel)
        try:
            return await in_thread(fn, cancel)
        except ParseCancelled:
            raise Unavailable("the daemon is shutting down: the build was not started") from None
        finally:
            self._parsing.discard(cancel)
            cancel.set()  # stops the parse if this task was cancelled while it ran

    # ---- build ------------------------------------------------------------------------------------------------
    async def parse(self, dockerfile_text: bytes, name: str = "Dockerfile") -> tuple[list[Node], str]:
        """The Dockerfile's instructions, checked (:func:`..dockerfile.parse_dockerfile`), parsed off the event
        loop: other clients keep being served, and a daemon told to stop does not wait for it."""
        return await self._parsed(lambda cancel: parse_dockerfile(dockerfile_text, name, cancel))

    async def build(self, root: Path, dockerfile_text: bytes, opts: BuildOptions,
                    ignore: IgnoreRules | None = None,
                    dockerfile_name: str = "Dockerfile") -> AsyncGenerator[ProgressEvent, None]:
        """Check the build's platform (dockerd's ``newBuilder``) and the whole Dockerfile as dockerd's
        ``instructions.Parse`` does (an error is ``dockerfile parse error line N: …``, HTTP 400 before the
        stream starts), then return the build's event stream. Parsing and planning run off the event loop."""
        if opts.platform:
            Platform.parse_specifier(opts.platform)

        def parse_and_plan(cancel: threading.Event) -> tuple[str, Plan | InvalidArgument]:
            nodes, escape = parse_dockerfile(dockerfile_text, dockerfile_name, cancel)
            try:
                return escape, plan(nodes, opts)
            except InvalidArgument as exc:  # raised when the stream starts, as before
                return escape, exc

        escape, planned = await self._parsed(parse_and_plan)
        return self._run(root, planned, escape, opts, ignore)

    async def _run(self, root: Path, plan: Plan | InvalidArgument, escape: str, opts: BuildOptions,
                   ignore: IgnoreRules | None) -> AsyncGenerator[ProgressEvent, None]:
        """The build's events. With ``quiet`` (``-q``) dockerd writes the build's output into a buffer that is
        sent only if the build fails (before the error); a build that succeeds sends the image ID alone.
        Without ``aux`` (API < 1.30) there are no ``aux`` messages."""
        if isinstance(plan, InvalidArgument):
            raise plan
        # the build's lease: its layer blobs, adopted snapshots and step images are held until it ends
        async with self.images.operation("build"):
            result: list[str] = []
            async with contextlib.aclosing(self._run_steps(root, plan, escape, opts, ignore, result)) as events:
                if not opts.quiet:
                    async for ev in events:
                        if opts.aux or not isinstance(ev, Aux):
                            yield ev
                    return
                held: deque[ProgressEvent] = deque()
                size = 0
                try:
                    async for ev in events:
                        if opts.aux or not isinstance(ev, Aux):
                            held.append(ev)
                            size += _event_size(ev)
                            while size > QUIET_BUFFER and len(held) > 1:  # the oldest output goes first
                                size -= _event_size(held.popleft())
                except Exception:
                    for ev in held:
                        yield ev
                    raise
                yield StreamText(result[0] + "\n")

    async def _run_steps(self, root: Path, plan: Plan, escape: str, opts: BuildOptions,
                         ignore: IgnoreRules | None, result: list[str]) -> AsyncGenerator[ProgressEvent, None]:
        """The steps, with all their output (``quiet`` is :meth:`_run`'s business); the image built is appended
        to ``result``. An ``aux`` message gives each stage's image when the stage is done, as dockerd's
        ``emitImageID`` (the last one is the build's image)."""
        lex = Lex(escape)
        meta_nodes, stages, names, total = plan.meta_nodes, plan.stages, plan.names, plan.total
        step = 0
        built: dict[str, str | None] = {}     # stage results by name and by index (COPY --from)
        by_name: dict[str, str | None] = {}   # stage results by name only (FROM)
        used_args: set[str] = set()
        cache = self.cache.sources(opts)
        global_args: dict[str, str | None] = {}
        for n in meta_nodes:
            step += 1
            yield StreamText(f"Step {step}/{total} : {n.original.strip()}")
            yield StreamText("\n")
            env = [f"{k}={v}" for k, v in global_args.items() if v is not None]
            for k, val in await in_thread(expand_args, lex, n.args, env):
                global_args[k] = opts.buildargs[k] if opts.buildargs.get(k) is not None else val
            check_env_size((f"{k}={v}" for k, v in global_args.items() if v is not None), "ARG")
        stage: Stage | None = None
        for i, instrs in enumerate(stages):
            for n in instrs:
                step += 1
                cmd = n.value.lower()
                yield StreamText(f"Step {step}/{total} : {n.original.strip()}")
                yield StreamText("\n")
                if cmd == "from":
                    stage = await self._from(n, lex, global_args, by_name, opts)
                    stage.cache = cache
                    if stage.triggers:
                        async for ev in self._triggers(stage, lex, opts, root, ignore, built, used_args):
                            yield ev
                else:
                    assert stage is not None
                    async for ev in self._step(stage, n, lex, opts, root, ignore, built, used_args):
                        yield ev
                assert stage is not None
                yield StreamText(f" ---> {short_id(stage.image_id) if stage.image_id else ''}\n")
            assert stage is not None
            if stage.image_id:
                yield Aux({"ID": stage.image_id})
            if names[i]:
                built[names[i]] = by_name[names[i]] = stage.image_id
            built[str(i)] = stage.image_id
        assert stage is not None
        final_id = stage.image_id
        if final_id is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        unused = [a for a in opts.buildargs if a not in used_args and a not in global_args
                  and a not in PROXY_ARGS]
        if unused:
            yield StreamText(f"[Warning] One or more build-args {go_list(sorted(unused))} were not consumed\n")
        yield StreamText(f"Successfully built {short_id(final_id)}\n")
        for t in opts.tags:
            ref = refs.tag_name_only(refs.parse_normalized_named(t))
            await self.images.tag(final_id, ref)
            yield StreamText(f"Successfully tagged {ref.familiar()}\n")
        result.append(final_id)
        self.events.publish("image", "create", final_id, {"name": final_id})

    async def _from(self, n: Node, lex: Lex, global_args: dict[str, str | None], stages: dict[str, str | None],
                    opts: BuildOptions) -> Stage:
        """FROM (``initializeStage``): an earlier stage by name, ``scratch`` or an image (pulled if absent); the
        default PATH is added when the config has none, and the base image's ONBUILD triggers are taken out of
        the config, to be run at once."""
        env = Env([f"{k}={v}" for k, v in global_args.items() if v is not None])
        name = await in_thread(lex.process_word, n.args[0].value, env) if n.args else ""
        stage_name = n.args[2].value.lower() if len(n.args) >= 3 else ""
        image_id: str | None
        if name.lower() in stages:
            image_id = stages[name.lower()]
        elif name == "scratch":
            image_id = None
        else:
            image_id = await self._image(name, opts)
        cfg: dict[str, Any] = {}
        if image_id is not None:
            rec = self.db.get_image(image_id)
            if rec is None:
                raise ImageNotFound(image_id)
            cfg = dict(self.images.config_of(rec).config or {})
        env_list = list(cfg.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in env_list):
            cfg["Env"] = env_list + [f"PATH={DEFAULT_PATH}"]
        cfg["OpenStdin"] = False
        cfg["StdinOnce"] = False
        triggers = list(cfg.get("OnBuild") or [])
        if triggers:
            cfg["OnBuild"] = None
        return Stage(stage_name, image_id, cfg, {}, list(cfg.get("Shell") or ["/bin/sh", "-c"]),
                     meta_args=dict(global_args), triggers=triggers)

    async def _triggers(self, stage: Stage, lex: Lex, opts: BuildOptions, root: Path, ignore: IgnoreRules | None,
                        built: dict[str, str | None], used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        """The base image's ONBUILD triggers, each dispatched like a step of the child
        (``dispatchTriggeredOnBuild``)."""
        triggers, stage.triggers = stage.triggers, []
        yield StreamText(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        for trigger in triggers:
            try:
                nodes, _ = parse(trigger)
            except DockerfileError as exc:
                raise InvalidArgument(str(exc)) from exc
            if len(nodes) != 1:
                raise InvalidArgument("onbuild trigger should be a single expression")
            node = nodes[0]
            if node.value.lower() in ("from", "onbuild", "maintainer"):
                raise InvalidArgument(f"{node.value.upper()} isn't allowed as an ONBUILD trigger")
            try:
                validate_instruction(node)
            except InvalidArgument as exc:
                raise InvalidArgument(str(exc).split(": ", 1)[-1]) from None
            async for ev in self._step(stage, node, lex, opts, root, ignore, built, used_args):
                yield ev

    async def _image(self, name: str, opts: BuildOptions) -> str:
        """The image ``name`` names (pulled if it is not stored, or always with ``pull``)."""
        if not opts.pull:
            try:
                return self.images.resolve(name).id
            except ImageNotFound:
                pass
        ref = refs.tag_name_only(refs.parse_normalized_named(name))
        events = await self.pull(ref.familiar_name if not ref.domain != "docker.io" else ref.name, ref.tag or "",
                                 opts.platform)
        async for _ in events:
            pass
        return self.images.resolve(str(ref)).id

    # ---- one step ---------------------------------------------------------------------------------------------
    async def _step(self, stage: Stage, n: Node, lex: Lex, opts: BuildOptions, root: Path,
                    ignore: IgnoreRules | None, built: dict[str, str | None],
                    used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        """One instruction after FROM. It prints what dockerd prints during the step; the caller prints the
        step's `` ---> <image>`` line."""
        cmd = n.value.lower()
        if cmd == "arg":
            shown = []
            for k, val in await in_thread(expand_args, lex, n.args, stage_env(stage, opts)):
                stage.args[k] = val
                if k in opts.buildargs:
                    used_args.add(k)
                shown.append(f"{k}={val}" if val is not None else k)
            check_env_size(stage_env(stage, opts), "ARG")
            async for ev in self._meta_step(stage, stage.config, "ARG " + " ".join(shown), opts):
                yield ev
            return
        if cmd in BUILDER_METADATA_COMMANDS:
            if n.heredocs:
                raise InvalidArgument(f"heredocs are only supported in RUN, COPY and ADD, not in {n.value.upper()}")
            env = stage_env(stage, opts)
            if n.attributes.get(BUILD_LABEL):  # a --label: the pair as given
                k, v = n.args[0].value, n.args[1].value
                d = Dispatched(dict(stage.config), f"LABEL {k}={v}", stage.cmd_set, None)
                d.config["Labels"] = {**(stage.config.get("Labels") or {}), k: v}
            else:
                d = await in_thread(lambda: builder_dispatch(stage.config, n, env=env, escape=lex.escape,
                                                             cmd_set=stage.cmd_set))
            if cmd == "env":
                check_env_size(stage_env(stage, opts, d.config), "ENV")
            stage.cmd_set = d.cmd_set
            if d.maintainer is not None:
                stage.maintainer = d.maintainer
            if cmd == "shell":
                stage.shell = list(d.config.get("Shell") or stage.shell)
            if cmd == "workdir":
                steps = self._workdir_step(stage, d.config, d.message, opts)
            else:
                steps = self._meta_step(stage, d.config, d.message, opts)
            async for ev in steps:
                yield ev
            return
        if cmd == "run":
            async for ev in self.runs.run_step(stage, n, opts, used_args):
                yield ev
            return
        if cmd in ("copy", "add"):
            async for ev in self.copies.copy_step(stage, n, lex, opts, root, ignore, built):
                yield ev
            return
        raise InvalidArgument(f"unknown instruction: {n.value.upper()}")

    async def _step_container(self, stage: Stage, container_cfg: dict[str, Any], opts: BuildOptions) -> str:
        """The ID of the container a metadata or WORKDIR step commits through (dockerd's ``probeAndCreate``). Such a
        step runs no process, and the container is removed once committed unless ``rm=0``: then it is only an ID,
        recorded as dockerd records it (``Running in``/``Removing intermediate container`` lines, the image's
        ``container`` field). With ``rm=0`` (and no ``forcerm``) dockerd keeps it, so it is a real container
        here too, never started (`docker ps -a`: Created), with the step's config and the parent image."""
        if opts.rm or opts.forcerm or stage.image_id is None:
            return os.urandom(32).hex()
        body = {k: v for k, v in container_cfg.items() if k not in ("Image", "Hostname")}
        body["Image"] = stage.image_id
        body["HostConfig"] = {"NetworkMode": opts.networkmode or "default"}
        cid, _ = await self.containers.create(body)
        return cid

    async def _meta_step(self, stage: Stage, cfg: dict[str, Any], message: str,
                         opts: BuildOptions) -> AsyncIterator[ProgressEvent]:
        """A step that changes only the config (``commit``): an empty layer, ``/bin/sh -c #(nop)  <message>``."""
        full = f"/bin/sh -c #(nop)  {message}"
        hit = await self.cache.probe(stage, cache_parent(stage.image_id, cfg), full, cfg, opts)
        if hit is not None:
            yield StreamText(" ---> Using cache\n")
            return
        cc = dict(cfg)
        cc["Cmd"] = ["/bin/sh", "-c", "#(nop) ", message]
        cid = await self._step_container(stage, cc, opts)
        yield StreamText(f" ---> Running in {cid[:12]}\n")
        stage.container = cid
        await self.committer.commit(stage, cfg, cc, None, full, empty=True, opts=opts)
        if opts.rm or opts.forcerm:
            yield StreamText(f"Removing intermediate container {cid[:12]}\n")

    async def _workdir_step(self, stage: Stage, cfg: dict[str, Any], message: str,
                            opts: BuildOptions) -> AsyncIterator[ProgressEvent]:
        """WORKDIR (``dispatchWorkdir``): the directory is made in the step's container (root-owned, 0755), so the
        step has a layer unless it existed; history ``/bin/sh -c #(nop) WORKDIR <dir>``."""
        full = f"/bin/sh -c #(nop) {message}"
        hit = await self.cache.probe(stage, cache_parent(stage.image_id, cfg), full, cfg, opts)
        if hit is not None:
            yield StreamText(" ---> Using cache\n")
            return
        workdir = str(cfg.get("WorkingDir") or "/")
        layer = await self.rootfs.layer_from_rootfs(stage, lambda rootfs: make_workdir(rootfs, workdir), opts)
        cc = dict(cfg)
        cc["Cmd"] = ["/bin/sh", "-c", "#(nop) " + message]
        cid = await self._step_container(stage, cc, opts)  # after the directory is made: dockerd's create makes it
        yield StreamText(f" ---> Running in {cid[:12]}\n")
        stage.container = cid
        await self.committer.commit(stage, cfg, cc, layer, full, empty=layer is None, opts=opts)
        if opts.rm or opts.forcerm:
            yield StreamText(f"Removing intermediate container {cid[:12]}\n")


def _event_size(ev: ProgressEvent) -> int:
    return len(ev.text) if isinstance(ev, StreamText) else 256
