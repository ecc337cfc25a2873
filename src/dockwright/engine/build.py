"""The classic builder (``POST /build``, ``docker build`` with ``DOCKER_BUILDKIT=0``), with dockerd 20.10's
classic builder as the reference for every output line, history entry and config.

Each instruction is a step on top of the previous image, as dockerd's classic builder does: metadata steps commit
an image with an empty-layer history entry (``/bin/sh -c #(nop)  ENV …``) and print the ``Running in``/``Removing
intermediate container`` lines of the container dockerd commits them through (a real, never started container when
``rm=0`` keeps it); WORKDIR makes its directory (a layer unless it existed); RUN runs a container in runc on an
overlay snapshot of the parent (VOLUMEs as anonymous volumes) and commits its upper directory; COPY/ADD copy
context files, an image's files (``--from``), heredocs or (ADD) downloaded URLs into a snapshot and commit the
diff, named in the history by dockerd's checksums (:mod:`..build.srchash`). FROM runs the base image's ONBUILD
triggers. Every step's result is an intermediate image whose parent is the previous one, and the cache is keyed by
(parent image, config, the step as recorded in the history), so an unchanged rebuild is all "Using cache"; with
``cachefrom`` the given images' histories are the cache, as dockerd's ``ImageCache``. A step's container is removed
as dockerd's ``dispatch`` removes it (``forcerm``: always; ``rm``: after a success; a failed RUN's container stays
otherwise). Each stage's image is an ``aux`` message when the stage is done; ``quiet`` holds the output back, sent
only if the build fails. Layers are written deterministically (sorted entries, numeric owners; mtimes clamped to
``SOURCE_DATE_EPOCH`` when that build arg is given) and stored as plain tars (OCI ``tar`` media type; the digest is
the DiffID): no deflate on the build's critical path, as dockerd's graph driver, and push/save send them as they
are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, TypeVar

from .. import reference as refs
from .. import dockerfile as dfile
from ..build import srchash
from ..build.paths import follow_in_scope
from ..build.remote_add import RemoteFile, download, is_url
from ..errors import DockwrightError, ImageNotFound, InvalidArgument, NotSupported, Unavailable
from ..build.copy import copy_sources
from ..layers.apply import adopt_snapshot, ensure_chain
from ..layers.diff import write_layer_from_upper
from ..metadata.db import LayerRecord
from ..oci import mediatypes as mt
from ..oci.config import container_config
from ..oci.digest import sha256_digest, short_id
from ..oci.gojson import go_dumps, rfc3339_nano
from ..oci.platform import Platform, host_platform
from ..snapshots import mount_all, unmount
from .containers import EMPTY_LAYER_DIFF_ID
from .progress import Aux, Progress, ProgressEvent, StreamText, run_with_events
from .resources import verify_extra_hosts, verify_resources

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["BuildService", "BuildOptions", "BuildError"]

log = logging.getLogger("dockwright.build")

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    parent TEXT NOT NULL,
    created_by TEXT NOT NULL,
    image_id TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    usage_count INTEGER NOT NULL DEFAULT 1,
    size INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'regular',
    description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (parent, created_by)
);
"""

#: the attribute of the LABEL steps the ``labels`` option adds (their key and value are not expanded)
BUILD_LABEL = "build-label"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")


class BuildError(DockwrightError):
    """A failed step; ``code`` is the RUN exit code for errorDetail.code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    quiet: bool = False
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    cachefrom: list[str] = field(default_factory=list)
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    platform: str = ""
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    remote: str = ""
    memory: int = 0
    memswap: int = 0
    cpushares: int = 0
    cpuperiod: int = 0
    cpuquota: int = 0
    cpusetcpus: str = ""
    cpusetmems: str = ""
    cgroupparent: str = ""
    shmsize: int = 0
    ulimits: list[dict[str, Any]] = field(default_factory=list)
    #: ``aux`` messages (each stage's image ID) in the stream: API 1.30 and later
    aux: bool = True
    #: full path → the entry's tarsum (``srchash.context_entry_header`` + bytes) hashed as the context streamed
    #: in: COPY's checksums then read no file again
    context_tarsums: dict[str, str] = field(default_factory=dict)


@dataclass
class _CacheFrom:
    """The ``cachefrom`` images of one build (dockerd's ``ImageCache``): with them, a step is cached only by a
    local image in one of their parent chains, or by their history (see :meth:`BuildService._cache_from`)."""

    sources: list[str]


@dataclass
class _Stage:
    name: str
    image_id: str | None            # None: scratch / nothing yet
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    meta_args: dict[str, str | None] = field(default_factory=dict)  # the global ARGs (before the first FROM)
    maintainer: str = ""            # MAINTAINER: the author of what the stage commits
    cmd_set: bool = False           # a CMD with arguments came in this stage (an ENTRYPOINT then keeps Cmd)
    container: str = ""             # the container the next commit records (``container``, ContainerConfig.Hostname)
    cache: _CacheFrom | None = None
    cache_busted: bool = False      # dockerd's imageProber: after a miss, the stage looks no more
    triggers: list[str] = field(default_factory=list)  # the base image's ONBUILD triggers, run after FROM


class BuildService:
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        engine.db.executescript(CACHE_SCHEMA)
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
            return await _in_thread(fn, cancel)
        except dfile.ParseCancelled:
            raise Unavailable("the daemon is shutting down: the build was not started") from None
        finally:
            self._parsing.discard(cancel)
            cancel.set()  # stops the parse if this task was cancelled while it ran

    # ---- cache records ----------------------------------------------------------------------------------------
    def _cache_get(self, parent: str, created_by: str) -> str | None:
        rows = self.engine.db.query("SELECT image_id FROM build_cache WHERE parent=? AND created_by=?",
                                    (parent, created_by))
        if not rows:
            return None
        image_id = rows[0][0]
        if self.engine.db.get_image(image_id) is None:
            return None
        with self.engine.db.tx() as c:
            c.execute("UPDATE build_cache SET last_used=?, usage_count=usage_count+1 WHERE parent=? AND "
                      "created_by=?", (time.time(), parent, created_by))
        return str(image_id)

    def _cache_put(self, parent: str, created_by: str, image_id: str, size: int, kind: str) -> None:
        now = time.time()
        with self.engine.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO build_cache(parent, created_by, image_id, created, last_used, "
                      "usage_count, size, kind, description) VALUES (?,?,?,?,?,1,?,?,?)",
                      (parent, created_by, image_id, now, now, size, kind, created_by[:200]))

    def cache_records(self) -> list[dict[str, Any]]:
        rows = self.engine.db.query("SELECT parent, created_by, image_id, created, last_used, usage_count, size, "
                                    "kind, description FROM build_cache ORDER BY created")
        out = []
        for parent, created_by, image_id, created, last_used, usage, size, kind, desc in rows:
            out.append({"ID": short_id(image_id) + short_id(parent or "sha256:" + "0" * 64)[:13],
                        "Parents": [parent] if parent else None, "Type": kind, "Description": desc,
                        "InUse": False, "Shared": False, "Size": size,
                        "CreatedAt": rfc3339_nano(int(created * 1e9)),
                        "LastUsedAt": rfc3339_nano(int(last_used * 1e9)), "UsageCount": usage,
                        "_image": image_id, "_parent": parent, "_created": created, "_created_by": created_by})
        return out

    async def prune(self, *, all: bool = False, filters: Any = None, keep: int = 0, max_used: int = 0,
                    min_free: int = 0) -> tuple[list[str], int]:
        """Drop build cache records (and the intermediate images only they kept alive), oldest first.

        Without limits every matching record goes; with limits, records go until all of them hold: the cache
        uses at most ``keep`` (``reserved-space``/``keep-storage``) and ``max_used`` bytes
        (``max-used-space``), and the data root's file system has ``min_free`` bytes free
        (``min-free-space``)."""
        from ..timestamps import parse_timestamp
        f = filters
        until = None
        if f is not None:
            f.validate(("until", "id", "parent", "type", "description", "inuse", "shared", "private"))
            if f.get("until"):
                until = parse_timestamp(f.get("until")[0], time.time())
        deleted: list[str] = []
        reclaimed = 0
        records = self.cache_records()
        total = sum(r["Size"] for r in records)
        for r in records:
            if until is not None and r["_created"] > until:
                continue
            if f is not None and f.get("id") and r["ID"] not in f.get("id"):
                continue
            if f is not None and f.get("type") and r["Type"] not in f.get("type"):
                continue
            if f is not None and f.get("description") and not any(d in r["Description"] for d in f.get("description")):
                continue
            if keep or max_used or min_free:
                if ((not keep or total <= keep) and (not max_used or total <= max_used)
                        and (not min_free or _free_bytes(self.engine.root) >= min_free)):
                    break
            with self.engine.db.tx() as c:
                c.execute("DELETE FROM build_cache WHERE parent=? AND created_by=?", (r["_parent"], r["_created_by"]))
            deleted.append(r["ID"])
            reclaimed += r["Size"]
            total -= r["Size"]
            image_id = r["_image"]
            if not self.engine.db.refs_of(image_id) and not self.engine.db.children(image_id) \
                    and not self.engine.images.container_usage(image_id):
                try:
                    await self.engine.images.remove(image_id, force=False, prune=True)
                except DockwrightError:
                    pass
        if deleted:
            self.engine.events.publish("builder", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    # ---- build ------------------------------------------------------------------------------------------------
    async def parse(self, dockerfile_text: bytes, name: str = "Dockerfile") -> tuple[list[Any], str]:
        """The Dockerfile's instructions, checked (:func:`..build.changes.parse_dockerfile`), parsed off the event
        loop: other clients keep being served, and a daemon told to stop does not wait for it."""
        return await self._parsed(lambda cancel: dfile.parse_dockerfile(dockerfile_text, name, cancel))

    async def build(self, root: Path, dockerfile_text: bytes, opts: BuildOptions,
                    ignore: Any = None, dockerfile_name: str = "Dockerfile") -> AsyncIterator[ProgressEvent]:
        """Check the build's platform (dockerd's ``newBuilder``) and the whole Dockerfile as dockerd's
        ``instructions.Parse`` does (an error is ``dockerfile parse error line N: …``, HTTP 400 before the
        stream starts), then return the build's event stream. Parsing and planning run off the event loop."""
        if opts.platform:
            Platform.parse_specifier(opts.platform)

        def parse_and_plan(cancel: threading.Event) -> tuple[str, _Plan | InvalidArgument]:
            nodes, escape = dfile.parse_dockerfile(dockerfile_text, dockerfile_name, cancel)
            try:
                return escape, _plan(nodes, opts)
            except InvalidArgument as exc:  # raised when the stream starts, as before
                return escape, exc

        escape, plan = await self._parsed(parse_and_plan)
        return self._run(root, plan, escape, opts, ignore)

    async def _run(self, root: Path, plan: "_Plan | InvalidArgument", escape: str, opts: BuildOptions,
                   ignore: Any) -> AsyncIterator[ProgressEvent]:
        """The build's events. With ``quiet`` (``-q``) dockerd writes the build's output into a buffer that is
        sent only if the build fails (before the error); a build that succeeds sends the image ID alone.
        Without ``aux`` (API < 1.30) there are no ``aux`` messages."""
        if isinstance(plan, InvalidArgument):
            raise plan
        # the build's lease: its layer blobs, adopted snapshots and step images are held until it ends
        async with self.engine.images.operation("build"):
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

    async def _run_steps(self, root: Path, plan: "_Plan", escape: str, opts: BuildOptions,
                         ignore: Any, result: list[str]) -> AsyncIterator[ProgressEvent]:
        """The steps, with all their output (``quiet`` is :meth:`_run`'s business); the image built is appended
        to ``result``. An ``aux`` message gives each stage's image when the stage is done, as dockerd's
        ``emitImageID`` (the last one is the build's image)."""
        lex = dfile.Lex(escape)
        meta_nodes, stages, names, total = plan.meta_nodes, plan.stages, plan.names, plan.total
        step = 0
        built: dict[str, str | None] = {}     # stage results by name and by index (COPY --from)
        by_name: dict[str, str | None] = {}   # stage results by name only (FROM)
        used_args: set[str] = set()
        cache = await self._cache_sources(opts)
        global_args: dict[str, str | None] = {}
        for n in meta_nodes:
            step += 1
            yield StreamText(f"Step {step}/{total} : {n.original.strip()}")
            yield StreamText("\n")
            env = [f"{k}={v}" for k, v in global_args.items() if v is not None]
            for k, val in await _in_thread(_expand_args, lex, n.args, env):
                global_args[k] = opts.buildargs[k] if opts.buildargs.get(k) is not None else val
            dfile.check_env_size((f"{k}={v}" for k, v in global_args.items() if v is not None), "ARG")
        stage: _Stage | None = None
        for k, instrs in enumerate(stages):
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
                yield StreamText(f" ---> {short_id(stage.image_id) if stage.image_id else ''}\n")
            assert stage is not None
            if stage.image_id:
                yield Aux({"ID": stage.image_id})
            if names[k]:
                built[names[k]] = by_name[names[k]] = stage.image_id
            built[str(k)] = stage.image_id
        assert stage is not None
        final_id = stage.image_id
        if final_id is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        unused = [a for a in opts.buildargs if a not in used_args and a not in global_args
                  and a not in PROXY_ARGS]
        if unused:
            yield StreamText(f"[Warning] One or more build-args {_go_list(sorted(unused))} were not consumed\n")
        yield StreamText(f"Successfully built {short_id(final_id)}\n")
        for t in opts.tags:
            ref = refs.tag_name_only(refs.parse_normalized_named(t))
            await self.engine.images.tag(final_id, ref)
            yield StreamText(f"Successfully tagged {ref.familiar()}\n")
        result.append(final_id)
        self.engine.events.publish("image", "create", final_id, {"name": final_id})

    async def _cache_sources(self, opts: BuildOptions) -> _CacheFrom | None:
        """The ``cachefrom`` images that exist (dockerd skips, with a warning in its log, the ones it lacks)."""
        if not opts.cachefrom:
            return None
        sources: list[str] = []
        for ref in opts.cachefrom:
            try:
                sources.append(self.engine.images.resolve(ref).id)
            except DockwrightError as exc:
                log.warning("Could not look up %s for cache resolution, skipping: %s", ref, exc)
        return _CacheFrom(sources)

    async def _from(self, n: Any, lex: Any, global_args: dict[str, str | None], stages: dict[str, str | None],
                    opts: BuildOptions) -> _Stage:
        """FROM (``initializeStage``): an earlier stage by name, ``scratch`` or an image (pulled if absent); the
        default PATH is added when the config has none, and the base image's ONBUILD triggers are taken out of
        the config, to be run at once."""
        env = dfile.Env([f"{k}={v}" for k, v in global_args.items() if v is not None])
        name = await _in_thread(lex.process_word, n.args[0].value, env) if n.args else ""
        stage_name = n.args[2].value.lower() if len(n.args) >= 3 else ""
        if name.lower() in stages:
            image_id = stages[name.lower()]
        elif name == "scratch":
            image_id = None
        else:
            image_id = await self._image(name, opts)
        cfg: dict[str, Any] = {}
        if image_id is not None:
            rec = self.engine.db.get_image(image_id)
            if rec is None:
                raise ImageNotFound(image_id)
            cfg = dict(self.engine.images.config_of(rec).config or {})
        env_list = list(cfg.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in env_list):
            cfg["Env"] = env_list + [f"PATH={DEFAULT_PATH}"]
        cfg["OpenStdin"] = False
        cfg["StdinOnce"] = False
        triggers = list(cfg.get("OnBuild") or [])
        if triggers:
            cfg["OnBuild"] = None
        return _Stage(stage_name, image_id, cfg, {}, list(cfg.get("Shell") or ["/bin/sh", "-c"]),
                      meta_args=dict(global_args), triggers=triggers)

    async def _triggers(self, stage: _Stage, lex: Any, opts: BuildOptions, root: Path, ignore: Any,
                        built: dict[str, str | None], used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        """The base image's ONBUILD triggers, each dispatched like a step of the child (``dispatchTriggeredOnBuild``)."""
        triggers, stage.triggers = stage.triggers, []
        yield StreamText(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        for trigger in triggers:
            try:
                nodes, _ = dfile.parse(trigger)
            except dfile.DockerfileError as exc:
                raise InvalidArgument(str(exc)) from exc
            if len(nodes) != 1:
                raise InvalidArgument("onbuild trigger should be a single expression")
            node = nodes[0]
            if node.value.lower() in ("from", "onbuild", "maintainer"):
                raise InvalidArgument(f"{node.value.upper()} isn't allowed as an ONBUILD trigger")
            try:
                dfile.validate_instruction(node)
            except InvalidArgument as exc:
                raise InvalidArgument(str(exc).split(": ", 1)[-1]) from None
            async for ev in self._step(stage, node, lex, opts, root, ignore, built, used_args):
                yield ev

    async def _image(self, name: str, opts: BuildOptions) -> str:
        if not opts.pull:
            try:
                return self.engine.images.resolve(name).id
            except ImageNotFound:
                pass
        ref = refs.tag_name_only(refs.parse_normalized_named(name))
        events = await self.engine.distribution.pull(ref.familiar_name if not ref.domain != "docker.io" else
                                                     ref.name, ref.tag or "", platform=opts.platform)
        async for _ in events:
            pass
        return self.engine.images.resolve(str(ref)).id

    # ---- one step ---------------------------------------------------------------------------------------------
    def _arg_value(self, stage: _Stage, opts: BuildOptions, k: str) -> str | None:
        """A declared ARG's value (``BuildArgs.getBuildArg``): the request's, else the ARG's default, else the
        global ARG's."""
        if opts.buildargs.get(k) is not None:
            return opts.buildargs[k]
        v = stage.args.get(k)
        if v is None:
            v = stage.meta_args.get(k)
        return v

    def _env(self, stage: _Stage, opts: BuildOptions, config: dict[str, Any] | None = None) -> list[str]:
        """What words are expanded against: the config's Env (the stage's, or ``config``) plus the declared
        build args it does not set (``runConfig.Env`` + ``buildArgs.FilterAllowed``)."""
        env = list((stage.config if config is None else config).get("Env") or [])
        keys = {e.split("=", 1)[0] for e in env}
        for k in stage.args:
            val = self._arg_value(stage, opts, k)
            if val is not None and k not in keys:
                env.append(f"{k}={val}")
        return env

    async def _step(self, stage: _Stage, n: Any, lex: Any, opts: BuildOptions, root: Path, ignore: Any,
                    built: dict[str, str | None], used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        """One instruction after FROM. It prints what dockerd prints during the step; the caller prints the
        step's `` ---> <image>`` line."""
        cmd = n.value.lower()
        if cmd == "arg":
            shown = []
            for k, val in await _in_thread(_expand_args, lex, n.args, self._env(stage, opts)):
                stage.args[k] = val
                if k in opts.buildargs:
                    used_args.add(k)
                shown.append(f"{k}={val}" if val is not None else k)
            dfile.check_env_size(self._env(stage, opts), "ARG")
            async for ev in self._meta_step(stage, stage.config, "ARG " + " ".join(shown), opts):
                yield ev
            return
        if cmd in dfile.BUILDER_METADATA_COMMANDS:
            if n.heredocs:
                raise InvalidArgument(f"heredocs are only supported in RUN, COPY and ADD, not in {n.value.upper()}")
            env = self._env(stage, opts)
            if n.attributes.get(BUILD_LABEL):  # a --label: the pair as given
                k, v = n.args[0].value, n.args[1].value
                d = dfile.Dispatched(dict(stage.config), f"LABEL {k}={v}", stage.cmd_set, None)
                d.config["Labels"] = {**(stage.config.get("Labels") or {}), k: v}
            else:
                d = await _in_thread(lambda: dfile.builder_dispatch(stage.config, n, env=env, escape=lex.escape,
                                                                    cmd_set=stage.cmd_set))
            if cmd == "env":
                dfile.check_env_size(self._env(stage, opts, d.config), "ENV")
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
            async for ev in self._run_step(stage, n, opts, used_args):
                yield ev
            return
        if cmd in ("copy", "add"):
            async for ev in self._copy_step(stage, n, lex, opts, root, ignore, built):
                yield ev
            return
        raise InvalidArgument(f"unknown instruction: {n.value.upper()}")

    async def _step_container(self, stage: _Stage, container_cfg: dict[str, Any], opts: BuildOptions) -> str:
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
        cid, _ = await self.engine.containers.create(body)
        return cid

    async def _meta_step(self, stage: _Stage, cfg: dict[str, Any], message: str,
                         opts: BuildOptions) -> AsyncIterator[ProgressEvent]:
        """A step that changes only the config (``commit``): an empty layer, ``/bin/sh -c #(nop)  <message>``."""
        full = f"/bin/sh -c #(nop)  {message}"
        hit = await self._probe(stage, _cache_parent(stage.image_id, cfg), full, cfg, opts)
        if hit is not None:
            yield StreamText(" ---> Using cache\n")
            return
        cc = dict(cfg)
        cc["Cmd"] = ["/bin/sh", "-c", "#(nop) ", message]
        cid = await self._step_container(stage, cc, opts)
        yield StreamText(f" ---> Running in {cid[:12]}\n")
        stage.container = cid
        await self._commit(stage, cfg, cc, None, full, empty=True, opts=opts)
        if opts.rm or opts.forcerm:
            yield StreamText(f"Removing intermediate container {cid[:12]}\n")

    async def _workdir_step(self, stage: _Stage, cfg: dict[str, Any], message: str,
                            opts: BuildOptions) -> AsyncIterator[ProgressEvent]:
        """WORKDIR (``dispatchWorkdir``): the directory is made in the step's container (root-owned, 0755), so the
        step has a layer unless it existed; history ``/bin/sh -c #(nop) WORKDIR <dir>``."""
        full = f"/bin/sh -c #(nop) {message}"
        hit = await self._probe(stage, _cache_parent(stage.image_id, cfg), full, cfg, opts)
        if hit is not None:
            yield StreamText(" ---> Using cache\n")
            return
        workdir = str(cfg.get("WorkingDir") or "/")
        layer = await self._layer_from_rootfs(stage, lambda rootfs: _make_workdir(rootfs, workdir), opts)
        cc = dict(cfg)
        cc["Cmd"] = ["/bin/sh", "-c", "#(nop) " + message]
        cid = await self._step_container(stage, cc, opts)  # after the directory is made: dockerd's create makes it
        yield StreamText(f" ---> Running in {cid[:12]}\n")
        stage.container = cid
        await self._commit(stage, cfg, cc, layer, full, empty=layer is None, opts=opts)
        if opts.rm or opts.forcerm:
            yield StreamText(f"Removing intermediate container {cid[:12]}\n")

    async def _layer_from_rootfs(self, stage: _Stage, change: Any, opts: BuildOptions, *,
                                 keep_empty: bool = False) -> LayerRecord | None:
        """Run ``change(rootfs)`` (blocking, in a thread) on a writable snapshot of the stage's image and write
        what it changed as a layer; None if it changed nothing (unless ``keep_empty``).

        The snapshot's upper directory is exactly what the layer unpacks to, so it becomes the snapshot of the
        layer's ChainID (unless ``SOURCE_DATE_EPOCH`` clamps the layer's mtimes): the next RUN mounts it instead
        of unpacking the layer again."""
        eng = self.engine
        key = f"extract-step-{os.urandom(8).hex()}"  # "extract-": removed at start-up if left by a crash
        parent_chain = await self._chain(stage.image_id)
        await asyncio.to_thread(eng.snapshotter.prepare, key, parent_chain)
        target = eng.root / "tmp" / key
        target.mkdir(parents=True)
        adopted = False
        try:
            mounts = await asyncio.to_thread(eng.snapshotter.mounts, key)
            await asyncio.to_thread(mount_all, mounts, target)
            try:
                await asyncio.to_thread(change, target)
            finally:
                await asyncio.to_thread(unmount, target)
            writer = eng.content.writer()
            try:
                clamp = float(opts.buildargs["SOURCE_DATE_EPOCH"]) if opts.buildargs.get("SOURCE_DATE_EPOCH") else None
                res_l = await asyncio.to_thread(write_layer_from_upper, eng.snapshotter.upper_dir(key), writer,
                                                mtime_clamp=clamp, level=None)
                digest = await asyncio.to_thread(writer.commit, res_l.digest, res_l.size)
            except BaseException:
                writer.abort()
                raise
            if clamp is None and (keep_empty or res_l.diff_id != EMPTY_LAYER_DIFF_ID):
                chain = (res_l.diff_id if parent_chain is None
                         else sha256_digest(f"{parent_chain} {res_l.diff_id}".encode()))
                adopted = await asyncio.to_thread(adopt_snapshot, eng.snapshotter, key, chain)
        finally:
            shutil.rmtree(target, ignore_errors=True)
            if not adopted:
                await asyncio.to_thread(eng.snapshotter.remove, key)
        if res_l.diff_id == EMPTY_LAYER_DIFF_ID and not keep_empty:
            await eng.images.collect({digest})
            return None
        return LayerRecord(digest, res_l.diff_id, mt.OCI_LAYER, res_l.size, res_l.diff_size, res_l.tar_size)

    # ---- cache ------------------------------------------------------------------------------------------------
    async def _probe(self, stage: _Stage, cache_parent: str, created_by: str, cfg: dict[str, Any],
                     opts: BuildOptions) -> str | None:
        """The cached image for a step (dockerd's ``imageProber.Probe``), which becomes the stage's image; None
        on a miss, after which the stage looks no more. Without ``cachefrom`` the local build cache answers;
        with it, a local hit counts only if it is in the parent chain of a ``cachefrom`` image, and the
        ``cachefrom`` images' histories are searched next."""
        if opts.nocache or stage.cache_busted:
            return None
        hit = self._cache_get(cache_parent, created_by)
        if stage.cache is not None:
            if hit is not None and not any(self._is_ancestor(hit, s) for s in stage.cache.sources):
                hit = None
            if hit is None:
                hit = await self._cache_from(stage, created_by, cfg)
        if hit is None:
            stage.cache_busted = True
            return None
        stage.image_id = hit
        stage.config = cfg
        return hit

    def _is_ancestor(self, candidate: str, image_id: str) -> bool:
        """Whether ``candidate`` is in the parent chain of ``image_id`` (dockerd's ``isParent``)."""
        seen: set[str] = set()
        rec = self.engine.db.get_image(image_id)
        while rec is not None and rec.parent and rec.parent not in seen:
            if rec.parent == candidate:
                return True
            seen.add(rec.parent)
            rec = self.engine.db.get_image(rec.parent)
        return False

    async def _cache_from(self, stage: _Stage, created_by: str, cfg: dict[str, Any]) -> str | None:
        """dockerd's ``ImageCache.GetCache`` over the ``cachefrom`` images: one whose history and layers start
        with the stage image's, and whose next history entry is this step, gives the step — the image itself if
        that entry is its last one (it then gets the stage image as parent), else an image made from the
        parent and that entry (``restoreCachedImage``); the build then keeps to that one source."""
        eng = self.engine
        assert stage.cache is not None
        parent_id = stage.image_id
        p_hist: list[Any] = []
        p_diff: list[str] = []
        if parent_id is not None:
            prec = eng.db.get_image(parent_id)
            if prec is None:
                return None
            pcfg = eng.images.config_of(prec)
            p_hist, p_diff = pcfg.history, pcfg.diff_ids
        n = len(p_hist)
        for src in list(stage.cache.sources):
            rec = eng.db.get_image(src)
            if rec is None:
                continue
            tcfg = eng.images.config_of(rec)
            t_hist, t_diff = tcfg.history, tcfg.diff_ids
            if not t_hist or len(t_hist) <= n:
                continue
            if p_hist or p_diff:
                if len(p_diff) > len(t_diff) or t_hist[:n] != p_hist or t_diff[:len(p_diff)] != p_diff:
                    continue
            if (t_hist[n].get("created_by") or "") != created_by:
                continue
            if n == len(t_hist) - 1:
                if parent_id is not None and rec.parent != parent_id:
                    with eng.db.tx() as c:
                        c.execute("UPDATE images SET parent=? WHERE id=?", (parent_id, src))
                return src
            image_id = await self._restore_cached(parent_id, tcfg.data, rec, n, cfg)
            stage.cache.sources = [src]
            return image_id
        return None

    async def _restore_cached(self, parent_id: str | None, target: dict[str, Any], target_rec: Any, index: int,
                              cfg: dict[str, Any]) -> str:
        """``restoreCachedImage``: the parent plus history entry ``index`` of ``target`` (and its layer)."""
        eng = self.engine
        layers = self._layers_of(parent_id)
        parent_hist = eng.images.config_of(eng.db.get_image(parent_id)).history if parent_id else []
        t_hist = list(target.get("history") or [])
        entry = t_hist[index]
        if not entry.get("empty_layer"):
            li = sum(1 for h in t_hist[:index] if not h.get("empty_layer"))
            trec = eng.db.get_image(target_rec.id, with_layers=True)
            layer = eng.db.get_layer(trec.layers[li][2]) if trec is not None and li < len(trec.layers) else None
            if layer is None:
                raise ImageNotFound(target_rec.id, f"layer {li} of image {target_rec.id} is missing")
            layers.append(layer)
        written = dict(cfg)
        written["Image"] = parent_id or ""
        top: dict[str, Any] = {
            "architecture": target.get("architecture") or host_platform().architecture,
            "config": container_config(written), "container_config": container_config({}),
            "created": entry.get("created") or target.get("created"), "docker_version": eng.images.engine_version,
            "history": [*parent_hist, entry], "os": target.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        }
        if target.get("author"):
            top["author"] = target["author"]
        for key in ("os.version", "os.features"):
            if target.get(key):
                top[key] = target[key]
        image_id, _ = await eng.images.commit_image(go_dumps(dict(sorted(top.items()))), layers,
                                                    parent=parent_id or "")
        return image_id

    def _layers_of(self, image_id: str | None) -> list[LayerRecord]:
        eng = self.engine
        if image_id is None:
            return []
        rec = eng.db.get_image(image_id, with_layers=True)
        if rec is None:
            raise ImageNotFound(image_id)
        out = []
        for _, _, dg in rec.layers:
            lr = eng.db.get_layer(dg)
            if lr is None:
                raise ImageNotFound(image_id, f"layer {dg} of image {image_id} is missing")
            out.append(lr)
        return out

    # ---- commit -----------------------------------------------------------------------------------------------
    async def _commit(self, stage: _Stage, cfg: dict[str, Any], container_cfg: dict[str, Any],
                      layer: LayerRecord | None, created_by: str, *, empty: bool, opts: BuildOptions,
                      cache_parent: str | None = None) -> str:
        """Write the step's image as dockerd's ``NewChildImage``: the parent's history plus this step's (with
        the MAINTAINER as author), ``config.Image`` the parent, ``container`` the step's container (not with
        ``SOURCE_DATE_EPOCH``: a random ID would make the image irreproducible)."""
        eng = self.engine
        parent_id = stage.image_id
        layers = self._layers_of(parent_id)
        parent_cfg: dict[str, Any] = {}
        if parent_id is not None:
            prec = eng.db.get_image(parent_id)
            if prec is None:
                raise ImageNotFound(parent_id)
            parent_cfg = eng.images.config_of(prec).data
        if layer is not None:
            layers.append(layer)
        container = "" if opts.buildargs.get("SOURCE_DATE_EPOCH") else stage.container
        stage.container = ""
        now = self._created(opts)
        hist = list(parent_cfg.get("history") or [])
        h: dict[str, Any] = {"created": now}
        if stage.maintainer:
            h["author"] = stage.maintainer
        h["created_by"] = created_by
        if empty:
            h["empty_layer"] = True
        hist.append(h)
        written = dict(cfg)
        written["Image"] = parent_id or ""
        cc = dict(container_cfg)
        cc["Image"] = parent_id or ""
        if container:
            cc["Hostname"] = container[:12]
        if created_by.startswith("/bin/sh -c #(nop) ") and not created_by.startswith("/bin/sh -c #(nop)  "):
            cc["Cmd"] = ["/bin/sh", "-c", created_by[len("/bin/sh -c "):]]  # COPY/ADD/WORKDIR: the history's words
        plat = host_platform()
        top: dict[str, Any] = {
            "architecture": parent_cfg.get("architecture") or plat.architecture,
            "config": container_config(written), "container_config": container_config(cc),
            "created": now, "docker_version": eng.images.engine_version, "history": hist,
            "os": parent_cfg.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        }
        if parent_cfg.get("variant"):
            top["variant"] = parent_cfg["variant"]
        if stage.maintainer:
            top["author"] = stage.maintainer
        if container:
            top["container"] = container
        raw = await asyncio.to_thread(go_dumps, dict(sorted(top.items())))
        if len(raw) > MAX_IMAGE_CONFIG_SIZE:
            raise InvalidArgument(f"the image config of this step ({len(raw)} bytes) exceeds the maximum allowed "
                                  f"size of {MAX_IMAGE_CONFIG_SIZE} bytes")
        image_id, _ = await eng.images.commit_image(raw, layers, parent=parent_id or "")
        key_parent = cache_parent if cache_parent is not None else _cache_parent(parent_id, cfg)
        self._cache_put(key_parent, created_by, image_id, layer.diff_size if layer else 0,
                        "regular" if layer else "internal")
        stage.image_id = image_id
        stage.config = cfg
        return image_id

    def _created(self, opts: BuildOptions) -> str:
        sde = opts.buildargs.get("SOURCE_DATE_EPOCH")
        if sde:
            try:
                return rfc3339_nano(int(sde) * 1_000_000_000)
            except ValueError:
                pass
        return rfc3339_nano()

    # ---- RUN --------------------------------------------------------------------------------------------------
    async def _run_step(self, stage: _Stage, n: Any, opts: BuildOptions,
                        used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        eng = self.engine
        if stage.image_id is None:
            raise InvalidArgument("no image to RUN in: FROM scratch has no shell")
        for f in n.flags:
            name = f.lstrip("-").split("=", 1)[0]
            raise InvalidArgument(f"the --{name} option requires BuildKit. Refer to "
                                  "https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit "
                                  "enabled")
        if n.attributes.get("json"):
            args = [a.value for a in n.args]
        else:
            script = n.args[0].value if n.args else ""
            if n.heredocs:
                script = n.heredocs[0].content
            args = list(stage.shell) + [script]
        shown = " ".join(args)
        # the declared build args the config's Env does not set (FilterAllowed): in the container's Env, and
        # (sorted; proxy args only when declared) in the history as "|N k=v … cmd" (prependEnvOnCmd)
        env_keys = {e.partition("=")[0] for e in stage.config.get("Env") or []}
        argenv: list[str] = []
        for k in dict.fromkeys([*stage.args, *(p for p in PROXY_ARGS if opts.buildargs.get(p) is not None)]):
            val = self._arg_value(stage, opts, k)
            if val is not None and k not in env_keys:
                argenv.append(f"{k}={val}")
                if k in opts.buildargs:
                    used_args.add(k)
        shown_args = sorted(a for a in argenv if a.partition("=")[0] in stage.args)
        created_by = (f"|{len(shown_args)} {' '.join(shown_args)} {shown}" if shown_args else shown)
        cache_parent = _cache_parent(stage.image_id, stage.config)
        if await self._probe(stage, cache_parent, created_by, stage.config, opts) is not None:
            yield StreamText(" ---> Using cache\n")
            return
        # what dockerd's ContainerCreate checks of the build's resource options, here as there (a cached RUN skips it)
        verify_extra_hosts(opts.extrahosts)
        verify_resources(memory=opts.memory, memswap=opts.memswap, cpuperiod=opts.cpuperiod,
                         cpuquota=opts.cpuquota, cpusetcpus=opts.cpusetcpus, cpusetmems=opts.cpusetmems,
                         shmsize=opts.shmsize)
        # VOLUMEs: an anonymous volume each, as dockerd gives the step's container — it starts with the image's
        # files there, and what RUN writes into it is not part of the layer
        volumes = sorted((stage.config.get("Volumes") or {}).keys())
        vol_root = eng.root / "tmp" / f"build-vol-{os.urandom(8).hex()}" if volumes else None
        binds: list[str] = []
        if vol_root is not None:
            binds = await self._volumes(stage.image_id, volumes, vol_root)
        # the command as the whole entrypoint: the image's ENTRYPOINT does not wrap a RUN (dockerd overrides it)
        body = {"Image": stage.image_id, "Entrypoint": args, "Cmd": None,
                "Env": list(stage.config.get("Env") or []) + argenv, "User": stage.config.get("User", ""),
                "WorkingDir": stage.config.get("WorkingDir", ""),
                "HostConfig": {"NetworkMode": opts.networkmode or "default", "ExtraHosts": opts.extrahosts,
                               "Memory": opts.memory, "MemorySwap": opts.memswap, "CpuShares": opts.cpushares,
                               "CpuPeriod": opts.cpuperiod, "CpuQuota": opts.cpuquota,
                               "CpusetCpus": opts.cpusetcpus, "CpusetMems": opts.cpusetmems,
                               "CgroupParent": opts.cgroupparent, "Ulimits": opts.ulimits or None,
                               "ShmSize": opts.shmsize, "Binds": binds}}
        try:
            cid, _ = await eng.containers.create(body)
        except BaseException:
            if vol_root is not None:
                shutil.rmtree(vol_root, ignore_errors=True)
            raise
        stage.container = cid
        yield StreamText(f" ---> Running in {cid[:12]}\n")
        # the step's container goes as dockerd's dispatch removes it: with forcerm whatever happened, with rm after
        # a success; a failed step's container is kept otherwise (`docker ps -a`: Exited (N)), and with rm=0 every
        # step's container is. A cancelled build (the client went away) removes it, as dockerd's containerManager.
        done = failed = False
        try:
            ticket = eng.containers.reserve_attach(cid)
            att_task = asyncio.ensure_future(eng.containers.attach(cid, stdin=False, stdout=True, stderr=True,
                                                                    ticket=ticket))
            await eng.containers.start(cid)
            att = await att_task
            async for s, data in att:
                text = data.decode("utf-8", errors="replace")
                yield StreamText(text if s == 1 else f"\x1b[91m{text}\x1b[0m")
            await att.close()
            res = await eng.containers.wait(cid, "not-running")
            code = int(res.get("StatusCode", 0))
            if code != 0:
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}", code)
            c = eng.containers.get(cid)
            writer = eng.content.writer()
            try:
                upper = eng.snapshotter.upper_dir(c.id)
                clamp = float(opts.buildargs["SOURCE_DATE_EPOCH"]) if opts.buildargs.get("SOURCE_DATE_EPOCH") \
                    else None
                res_l = await asyncio.to_thread(write_layer_from_upper, upper, writer, mtime_clamp=clamp,
                                                level=None)
                digest = await asyncio.to_thread(writer.commit, res_l.digest, res_l.size)
            except BaseException:
                writer.abort()
                raise
            empty = res_l.diff_id == EMPTY_LAYER_DIFF_ID
            layer = None if empty else LayerRecord(digest, res_l.diff_id, mt.OCI_LAYER, res_l.size,
                                                   res_l.diff_size, res_l.tar_size)
            cc = dict(stage.config)
            cc["Cmd"] = ([f"|{len(shown_args)}", *shown_args, *args] if shown_args else args)  # dockerd's saveCmd
            await self._commit(stage, dict(stage.config), cc, layer, created_by, empty=empty, opts=opts,
                               cache_parent=cache_parent)
            if empty:
                await eng.images.collect({digest})
            done = True
        except Exception:
            failed = True
            if opts.forcerm and await self._remove_step_container(cid, vol_root):
                yield StreamText(f"Removing intermediate container {cid[:12]}\n")  # before the error, as dockerd
            raise
        finally:
            if not done and not failed:  # cancelled
                await self._remove_step_container(cid, vol_root)
        if (opts.rm or opts.forcerm) and await self._remove_step_container(cid, vol_root):
            yield StreamText(f"Removing intermediate container {cid[:12]}\n")

    async def _remove_step_container(self, cid: str, vol_root: Path | None) -> bool:
        """Remove a step's container (and its volumes' directory); False if that failed."""
        try:
            await self.engine.containers.remove(cid, force=True)
        except DockwrightError as exc:
            log.warning("removing the intermediate container %s: %s", cid[:12], exc)
            return False
        if vol_root is not None:
            shutil.rmtree(vol_root, ignore_errors=True)
        return True

    async def _volumes(self, image_id: str, volumes: list[str], vol_root: Path) -> list[str]:
        """Directories for a RUN's anonymous volumes, filled with what the image has at each path (dockerd copies
        it into a new volume), as ``Binds``."""
        view_key, view_dir = await self._mount_image(image_id)
        try:
            def fill() -> list[str]:
                binds = []
                for i, vol in enumerate(volumes):
                    d = vol_root / str(i)
                    real = follow_in_scope(view_dir, vol)
                    src = view_dir / real if real != "." else view_dir
                    if src.is_dir() and not src.is_symlink():
                        shutil.copytree(src, d, symlinks=True)
                    else:
                        d.mkdir(parents=True)
                    binds.append(f"{d}:{vol}")
                return binds

            return await asyncio.to_thread(fill)
        finally:
            await self._unmount_image(view_key, view_dir)

    # ---- COPY / ADD -------------------------------------------------------------------------------------------
    async def _copy_step(self, stage: _Stage, n: Any, lex: Any, opts: BuildOptions, root: Path, ignore: Any,
                         built: dict[str, str | None]) -> AsyncIterator[ProgressEvent]:
        """COPY/ADD (``performCopy``): the sources are context files (or an image's files with ``--from``),
        heredocs and, for ADD, URLs; the history names them by dockerd's checksums
        (``COPY [--chown=u:g]<file:…|dir:…|multi:…> in <dest> ``), which is also the cache key."""
        from ..build.context import resolve_sources_named
        from ..build.copy import is_archive
        eng = self.engine
        instr = n.value.upper()
        flags = dict(f.lstrip("-").split("=", 1) if "=" in f else (f.lstrip("-"), "") for f in n.flags)
        env = dfile.Env(self._env(stage, opts))
        raw = [a.value for a in n.args]

        def expand() -> tuple[list[bool], list[str], str]:
            is_doc = [bool(n.heredocs) and dfile.parse_heredoc(r) is not None for r in raw]
            words = [r if doc else lex.process_word(r, env) for r, doc in zip(raw, is_doc)]
            return is_doc, words, lex.process_word(flags["chown"], env) if flags.get("chown") else ""

        is_doc, words, chown_word = await _in_thread(expand)
        if flags.get("chown"):
            flags["chown"] = chown_word
        if len(words) < 2:
            raise InvalidArgument(f"{instr} requires at least two arguments, but only one was provided. "
                                  f"Destination could not be determined")
        if is_doc[-1]:
            raise InvalidArgument(f"{instr} cannot accept a heredoc as a destination")
        srcs, dest_word = words[:-1], words[-1]
        dest = dest_word
        workdir = stage.config.get("WorkingDir") or "/"
        if not dest.startswith("/"):
            dest = os.path.join(workdir, dest) + ("/" if dest.endswith("/") or dest == "." else "")
        src_root = root
        src_ignore = ignore
        view_key = None
        view_dir = None
        if "from" in flags:
            name = flags["from"].lower()
            other = built[name] if name in built else await self._image(flags["from"], opts)
            if other is None:
                raise InvalidArgument(f"invalid from flag value {flags['from']}")
            view_key, view_dir = await self._mount_image(other)
            src_root = view_dir
            src_ignore = None
        extra = eng.root / "tmp" / f"build-src-{os.urandom(8).hex()}"  # heredocs and downloads
        try:
            files: list[Path] = []
            names: list[str] = []  # the name each gets in a directory destination
            ids: list[str] = []
            local = False
            downloaded: list[RemoteFile] = []
            docs = iter(n.heredocs)
            for s, doc in zip(srcs, is_doc):
                if doc:
                    path = await asyncio.to_thread(_write_heredoc, extra / str(len(files)), next(docs), env)
                    files.append(path)
                    names.append(path.name)
                    ids.append(await asyncio.to_thread(srchash.source_hash, path.parent, path.name, lazy=True))
                elif instr == "ADD" and is_url(s):
                    got: list[RemoteFile] = []
                    async for ev in run_with_events(lambda emit, u=s: self._download(u, extra, emit, got)):
                        yield ev
                    yield StreamText("\n")
                    if not got[0].name and dest_word.endswith("/"):
                        raise InvalidArgument(f"ADD failed: cannot determine filename for source {s}")
                    files.append(got[0].path)
                    names.append(got[0].path.name)
                    ids.append(got[0].hash)
                    downloaded.append(got[0])
                else:
                    try:
                        named = resolve_sources_named(src_root, s,
                                                      src_ignore if src_ignore is not None else _NoIgnore())
                        found = [p for p, _ in named]
                    except InvalidArgument as exc:
                        raise InvalidArgument(str(exc).replace("COPY failed:", f"{instr} failed:", 1)) from None
                    local = True
                    files.extend(found)
                    names.extend(nm for _, nm in named)
                    known = opts.context_tarsums if view_dir is None else None
                    ids.extend(await asyncio.to_thread(
                        lambda found=found: [srchash.source_hash(src_root, p, lazy=view_dir is not None, known=known)
                                             for p in found]))
            if not files:
                raise InvalidArgument(f"{instr} failed: no source files were specified")
            src_hash = srchash.combine(ids)
            kind, _, hexpart = src_hash.rpartition(":")
            checksum = "sha256:" + hexpart
            chmod = f"--chmod={flags['chmod']} " if flags.get("chmod") else ""
            chown = f"--chown={flags['chown']}" if flags.get("chown") else ""  # no space before the hash: dockerd's
            created_by = f"/bin/sh -c #(nop) {instr} {chmod}{chown}{src_hash} in {dest_word} "
            # what ADD unpacks: local archives only, never a download or a heredoc
            cmd = "ADD" if instr == "ADD" and local else "COPY"
            if cmd == "ADD" and downloaded and any(await asyncio.to_thread(
                    lambda: [is_archive(r.path) for r in downloaded])):
                raise NotSupported("ADD of a URL that is an archive together with local sources is not supported "
                                   "by this builder: use two ADD instructions")
            cache_parent = _cache_parent(stage.image_id, stage.config)
            if await self._probe(stage, cache_parent, created_by, stage.config, opts) is not None:
                yield StreamText(" ---> Using cache\n")
                return
            chown_spec, chmod_flag = flags.get("chown", ""), flags.get("chmod", "")

            def copy(target: Path) -> None:
                uid, gid = _resolve_chown(chown_spec, target)
                copy_sources(files, target, dest, srcs, uid, gid, chmod_flag, cmd == "ADD", names)

            layer = await self._layer_from_rootfs(stage, copy, opts, keep_empty=True)
            assert layer is not None
            cc = dict(stage.config)
            cc["Cmd"] = ["/bin/sh", "-c", f"#(nop) {cmd} {kind}:{checksum.split(':')[-1]} in {dest} "]
            await self._commit(stage, dict(stage.config), cc, layer, created_by, empty=False, opts=opts,
                               cache_parent=cache_parent)
        finally:
            if view_key is not None:
                await self._unmount_image(view_key, view_dir)
            shutil.rmtree(extra, ignore_errors=True)

    async def _download(self, url: str, tmp: Path, emit: Any, out: list[RemoteFile]) -> None:
        """ADD of a URL: the download, its progress as dockerd's ``Downloading`` bar."""
        def progress(current: int, total: int | None) -> None:
            emit(Progress("Downloading", None, current, total))

        try:
            out.append(await download(url, tmp, progress))
        except DockwrightError as exc:
            raise type(exc)(f"ADD failed: {exc}") from exc

    async def _chain(self, image_id: str | None) -> str | None:
        if image_id is None:
            return None
        eng = self.engine
        rec = eng.db.get_image(image_id, with_layers=True)
        if rec is None or not rec.layers:
            return None
        layers = [(chain, (lambda d=digest: eng.content.open(d))) for _, chain, digest in rec.layers]
        return await asyncio.to_thread(ensure_chain, eng.snapshotter, layers, sync=False)

    async def _mount_image(self, image_id: str) -> tuple[str, Path]:
        eng = self.engine
        key = f"build-view-{os.urandom(8).hex()}"
        chain = await self._chain(image_id)
        target = eng.root / "tmp" / key
        target.mkdir(parents=True)
        if chain is None:
            return key, target
        mounts = await asyncio.to_thread(eng.snapshotter.view, key, chain)
        await asyncio.to_thread(mount_all, mounts, target)
        return key, target

    async def _unmount_image(self, key: str, target: Path | None) -> None:
        eng = self.engine
        if target is not None:
            try:
                await asyncio.to_thread(unmount, target)
            except Exception:  # noqa: BLE001
                pass
            shutil.rmtree(target, ignore_errors=True)
        try:
            await asyncio.to_thread(eng.snapshotter.remove, key)
        except Exception:  # noqa: BLE001
            pass


#: What a quiet build keeps of its output for the case it fails (dockerd keeps it all): past it, the oldest goes.
QUIET_BUFFER = 16 << 20


def _event_size(ev: ProgressEvent) -> int:
    return len(ev.text) if isinstance(ev, StreamText) else 256


#: The largest image config a build step may commit (history, environment, labels…; real ones are kilobytes):
#: past it, every later step would write (and hash) a config as large again, and a build of a few hundred lines
#: could fill the disk with copies of one value.
MAX_IMAGE_CONFIG_SIZE = 16 << 20

_T = TypeVar("_T")


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a daemon thread of its own, for Dockerfile parsing and expansion: the event loop keeps
    serving other clients meanwhile, and a daemon told to stop does not wait for it (the executor of
    ``asyncio.to_thread`` is joined at exit). Cancelling the caller stops waiting; ``fn`` is told to stop through
    an event it checks, where it takes one."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def run() -> None:
        result: Any = None
        exc: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            exc = e
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:
            pass  # the loop is closed: the daemon stopped meanwhile

    threading.Thread(target=run, name="dockwright-dockerfile", daemon=True).start()
    return await fut


@dataclass
class _Plan:
    """A parsed Dockerfile cut into steps: the global ARGs, then the stages to build (each from its FROM; the
    ``target``'s is the last, with the ``--label`` steps added to it), the stages' names and the number of
    steps."""

    meta_nodes: list[Any]
    stages: list[list[Any]]
    names: list[str]
    total: int


def _plan(nodes: list[Any], opts: BuildOptions) -> _Plan:
    # global ARGs before the first FROM: steps of their own, expanded against the ones before
    meta_nodes: list[Any] = []
    i = 0
    while i < len(nodes) and nodes[i].value.lower() == "arg":
        meta_nodes.append(nodes[i])
        i += 1
    stages: list[list[Any]] = []
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
        # set as given, never expanded or unquoted (NewLabelCommand(k, v, true)): see BuildService._step
        label = dfile.parse("LABEL k=v")[0][0]
        label.args[0].value, label.args[1].value = k, v
        label.attributes = {BUILD_LABEL: True}
        label.original = f"LABEL {k}={v}"
        stages[-1].append(label)
    return _Plan(meta_nodes, stages, names, len(meta_nodes) + sum(len(s) for s in stages))


def _expand_args(lex: Any, args: list[Any], env: list[str]) -> list[tuple[str, str | None]]:
    """An ARG's ``name[=value]`` words, expanded against ``env`` (as it was before the instruction)."""
    envs = dfile.Env(env)
    out: list[tuple[str, str | None]] = []
    for a in args:
        k, eq, v = a.value.partition("=")
        out.append((lex.process_word(k, envs), lex.process_word(v, envs) if eq else None))
    return out


class _NoIgnore:
    def matches(self, path: str) -> bool:
        return False


def _cache_parent(image_id: str | None, cfg: dict[str, Any]) -> str:
    """The first half of a build cache key: the parent image and the config the step starts from."""
    return (image_id or "") + "|" + json.dumps(cfg, sort_keys=True)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


def _write_heredoc(directory: Path, doc: Any, env: Any) -> Path:
    """A COPY/ADD heredoc as the file BuildKit makes of it: named by its delimiter, mode 0664, tabs stripped
    for ``<<-``, variables expanded (quotes kept) unless the delimiter was quoted."""
    content = doc.content
    if doc.chomp:
        content = re.sub(r"(?m)^\t+", "", content)
    if doc.expand:
        lex = dfile.Lex("\\")
        lex.skip_process_quotes = True
        content = lex.process_word(content, env)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / doc.name
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    os.chmod(path, 0o664)
    return path


def _make_workdir(rootfs: Path, workdir: str) -> None:
    """``SetupWorkingDirectory``: make ``workdir`` (symlinks resolved inside the rootfs) and its missing parents,
    0755 and owned by root; an existing non-directory fails as dockerd fails."""
    real = follow_in_scope(rootfs, workdir)
    if real == ".":
        return
    path = rootfs / real
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise InvalidArgument(f"Cannot mkdir: {workdir} is not a directory")
    missing = []
    p = path
    while not os.path.lexists(p) and p != rootfs:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except NotADirectoryError:
            raise InvalidArgument(f"Cannot mkdir: {workdir} is not a directory") from None
        os.chmod(d, 0o755)
        os.lchown(d, 0, 0)


def _resolve_chown(spec: str, rootfs: Path) -> tuple[int, int]:
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")

    def lookup(name: str, path: str, default: int | None) -> int:
        if name.isdigit():
            return int(name)
        try:
            for line in (rootfs / path).read_text().splitlines():
                parts = line.split(":")
                if parts and parts[0] == name and len(parts) > 2:
                    return int(parts[2])
        except OSError:
            pass
        if default is not None:
            return default
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find uid for user "
                              f"{name}: no such user: {name}")

    uid = lookup(user, "etc/passwd", None)
    gid = lookup(group, "etc/group", None) if group else uid
    return uid, gid
