"""The classic builder (``POST /build``, ``docker build`` with ``DOCKER_BUILDKIT=0``).

Each instruction is a step on top of the previous image, as dockerd's classic builder does: metadata steps
commit an image with an empty-layer history entry (``/bin/sh -c #(nop)  ENV …``); RUN runs a container in runc
on an overlay snapshot of the parent and commits its upper directory; COPY/ADD copy context files into a
snapshot and commit the diff. Every step's result is an intermediate image whose parent is the previous one, and
the cache is keyed by (parent image, the step as recorded in the history, with COPY sources by content
checksum), so an unchanged rebuild is all "Using cache". Layers are written deterministically (sorted entries,
numeric owners; mtimes clamped to ``SOURCE_DATE_EPOCH`` when that build arg is given) and stored as plain tars
(OCI ``tar`` media type; the digest is the DiffID): no deflate on the build's critical path, as dockerd's graph
driver, and push/save send them as they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from .. import reference as refs
from ..build import changes as dfile
from ..build.changes import apply_changes
from ..errors import DockwrightError, ImageNotFound, InvalidArgument, NotSupported
from ..build.copy import copy_sources
from ..layers.apply import adopt_snapshot, ensure_chain
from ..layers.diff import write_layer_from_upper
from ..metadata.db import LayerRecord
from ..oci import mediatypes as mt
from ..oci.config import container_config
from ..oci.digest import sha256_digest, short_id
from ..oci.gojson import go_dumps, rfc3339_nano
from ..oci.platform import host_platform
from ..snapshots import mount_all, unmount
from .containers import EMPTY_LAYER_DIFF_ID
from .progress import Aux, ProgressEvent, StreamText

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

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")
METADATA = {"env", "label", "cmd", "entrypoint", "expose", "volume", "workdir", "user", "stopsignal",
            "healthcheck", "onbuild", "shell", "maintainer", "arg"}


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
    cpushares: int = 0
    shmsize: int = 0
    #: full path → (size, sha256 hex) of context files hashed while the context streamed in
    context_digests: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class _Stage:
    name: str
    image_id: str | None            # None: scratch / nothing yet
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])


def _go_q(items: list[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


class BuildService:
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        engine.db.executescript(CACHE_SCHEMA)

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

    async def prune(self, *, all: bool = False, filters: Any = None, keep: int = 0) -> tuple[list[str], int]:
        """Drop build cache records (and the intermediate images only they kept alive)."""
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
            if keep and total <= keep:
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
    async def parse(self, dockerfile_text: bytes) -> tuple[list[Any], str]:
        try:
            return dfile._parse(dockerfile_text.decode("utf-8", errors="replace"))  # noqa: SLF001
        except dfile._Error as exc:  # noqa: SLF001
            raise InvalidArgument(f"dockerfile parse error on line 1: {exc}") from exc

    async def build(self, root: Path, dockerfile_text: bytes, opts: BuildOptions,
                    ignore: Any = None) -> AsyncIterator[ProgressEvent]:
        nodes, escape = await self.parse(dockerfile_text)
        valid = METADATA | {"from", "run", "copy", "add"}
        lines = dockerfile_text.decode("utf-8", errors="replace").splitlines()
        at = 0
        for n in nodes:
            word = n.value.lower()
            while at < len(lines) and not (lines[at].strip().lower().startswith(word)
                                           and not lines[at].lstrip().startswith("#")):
                at += 1
            if word not in valid:
                raise InvalidArgument(f"dockerfile parse error on line {at + 1}: unknown instruction: "
                                      f"{n.value.upper()}")
            at += 1
        return self._run(root, nodes, escape, opts, ignore)

    async def _run(self, root: Path, nodes: list[Any], escape: str, opts: BuildOptions,
                   ignore: Any) -> AsyncIterator[ProgressEvent]:
        lex = dfile._Lex(escape)  # noqa: SLF001
        # global ARGs before the first FROM
        global_args: dict[str, str | None] = {}
        i = 0
        while i < len(nodes) and nodes[i].value.lower() == "arg":
            for a in nodes[i].args:
                k, _, v = a.value.partition("=")
                global_args[k] = opts.buildargs.get(k, v if "=" in a.value else None)
            i += 1
        # stages
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
                  else str(k)) for k, s in enumerate(stages)]
        if opts.target:
            if opts.target.lower() not in names:
                raise InvalidArgument(f"failed to reach build target {opts.target} in Dockerfile")
            stages = stages[: names.index(opts.target.lower()) + 1]
        total = sum(len(s) for s in stages)
        step = 0
        built: dict[str, str | None] = {}
        used_args: set[str] = set()
        stage: _Stage | None = None
        for k, instrs in enumerate(stages):
            for n in instrs:
                step += 1
                cmd = n.value.lower()
                if not opts.quiet:
                    yield StreamText(f"Step {step}/{total} : {n.original.strip()}\n")
                if cmd == "from":
                    stage = await self._from(n, lex, global_args, built, opts)
                    if not opts.quiet and stage.image_id:
                        yield StreamText(f" ---> {short_id(stage.image_id)}\n")
                    continue
                assert stage is not None
                async for ev in self._step(stage, n, lex, opts, root, ignore, built, used_args):
                    if not opts.quiet or isinstance(ev, Aux):
                        yield ev
            assert stage is not None
            built[names[k]] = stage.image_id
            built[str(k)] = stage.image_id
        assert stage is not None
        final_id = stage.image_id
        if final_id is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        if opts.labels:
            cfg = dict(stage.config)
            labels = dict(cfg.get("Labels") or {})
            labels.update(opts.labels)
            cfg["Labels"] = labels
            final_id, _ = await self._meta(stage, cfg, "LABEL " + " ".join(f"{k}={v}" for k, v in
                                                                            sorted(opts.labels.items())), opts)
        unused = [a for a in opts.buildargs if a not in used_args and a not in global_args
                  and a not in PROXY_ARGS]
        if unused and not opts.quiet:
            yield StreamText(f"[Warning] One or more build-args {_go_list(sorted(unused))} were not consumed\n")
        yield Aux({"ID": final_id})
        if not opts.quiet:
            yield StreamText(f"Successfully built {short_id(final_id)}\n")
        for t in opts.tags:
            ref = refs.tag_name_only(refs.parse_normalized_named(t))
            await self.engine.images.tag(final_id, ref)
            if not opts.quiet:
                yield StreamText(f"Successfully tagged {ref.familiar()}\n")
        if opts.quiet:
            yield StreamText(final_id + "\n")
        self.engine.events.publish("image", "create", final_id, {"name": final_id})

    async def _from(self, n: Any, lex: Any, global_args: dict[str, str | None], built: dict[str, str | None],
                    opts: BuildOptions) -> _Stage:
        env = dfile._Env([f"{k}={v}" for k, v in global_args.items() if v is not None])  # noqa: SLF001
        name = lex.process_word(n.args[0].value, env) if n.args else ""
        stage_name = n.args[2].value.lower() if len(n.args) >= 3 else ""
        if name.lower() in built:
            image_id = built[name.lower()]
        elif name == "scratch":
            image_id = None
        else:
            image_id = await self._image(name, opts)
        if image_id is None:
            return _Stage(stage_name, None, {"Env": [f"PATH={DEFAULT_PATH}"]}, {})
        rec = self.engine.db.get_image(image_id)
        if rec is None:
            raise ImageNotFound(image_id)
        cfg = dict(self.engine.images.config_of(rec).config)
        return _Stage(stage_name, image_id, cfg, {}, list(cfg.get("Shell") or ["/bin/sh", "-c"]))

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
    def _env(self, stage: _Stage, opts: BuildOptions) -> list[str]:
        env = list(stage.config.get("Env") or [])
        keys = {e.split("=", 1)[0] for e in env}
        for k, v in stage.args.items():
            val = opts.buildargs.get(k, v) if k in opts.buildargs else v
            if val is not None and k not in keys:
                env.append(f"{k}={val}")
        return env

    async def _step(self, stage: _Stage, n: Any, lex: Any, opts: BuildOptions, root: Path, ignore: Any,
                    built: dict[str, str | None], used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        cmd = n.value.lower()
        if cmd == "arg":
            for a in n.args:
                k, _, v = a.value.partition("=")
                stage.args[k] = v if "=" in a.value else None
                if k in opts.buildargs:
                    used_args.add(k)
            created_by = "ARG " + " ".join(a.value for a in n.args)
            image_id = await self._meta(stage, stage.config, created_by, opts)
            async for ev in self._emit_meta(image_id):
                yield ev
            return
        if cmd in METADATA:
            cfg = self._apply_meta(stage, n, opts)
            created_by = self._meta_text(cmd, n, cfg, stage)
            if cmd == "shell":
                stage.shell = list(cfg.get("Shell") or stage.shell)
            image_id = await self._meta(stage, cfg, created_by, opts)
            async for ev in self._emit_meta(image_id):
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

    async def _emit_meta(self, result: tuple[str, bool]) -> AsyncIterator[ProgressEvent]:
        image_id, cached = result
        if cached:
            yield StreamText(" ---> Using cache\n")
        yield StreamText(f" ---> {short_id(image_id)}\n")

    def _apply_meta(self, stage: _Stage, n: Any, opts: BuildOptions) -> dict[str, Any]:
        base = dict(stage.config)
        if n.value.lower() == "maintainer":
            return base
        argenv = {k: (opts.buildargs.get(k, v) if k in opts.buildargs else v) for k, v in stage.args.items()}
        injected = {k: v for k, v in argenv.items() if v is not None
                    and k not in {e.split("=", 1)[0] for e in base.get("Env") or []}}
        tmp = dict(base)
        tmp["Env"] = list(base.get("Env") or []) + [f"{k}={v}" for k, v in injected.items()]
        text = n.original
        if n.heredocs:
            raise InvalidArgument(f"heredocs are only supported in RUN and COPY, not in {n.value.upper()}")
        if n.value.lower() == "shell":
            try:
                shell = json.loads(text.split(None, 1)[1])
            except (ValueError, IndexError) as exc:
                raise InvalidArgument("SHELL requires the arguments to be in JSON form") from exc
            out = dict(base)
            out["Shell"] = shell
            return out
        try:
            out = apply_changes(tmp, [text])
        except InvalidArgument as exc:
            raise InvalidArgument(f"dockerfile parse error: {exc}") from exc
        env = []
        for e in out.get("Env") or []:
            k, _, v = e.partition("=")
            if k in injected and v == injected[k] and n.value.lower() != "env":
                continue
            if k in injected and v == injected[k] and n.value.lower() == "env" and f"{k}=" not in text:
                continue
            env.append(e)
        out["Env"] = env or None
        return out

    def _meta_text(self, cmd: str, n: Any, cfg: dict[str, Any], stage: _Stage) -> str:
        c = cmd.upper()
        if cmd in ("cmd", "entrypoint"):
            return f"{c} {_go_q(list(cfg.get(c.capitalize() if cmd == 'cmd' else 'Entrypoint') or []))}" \
                if cmd == "entrypoint" else f"CMD {_go_q(list(cfg.get('Cmd') or []))}"
        if cmd == "env":
            return "ENV " + " ".join(f"{a.value}={b.value}" for a, b in zip(n.args[::2], n.args[1::2]))
        if cmd == "label":
            return "LABEL " + " ".join(f"{a.value}={b.value}" for a, b in zip(n.args[::2], n.args[1::2]))
        if cmd == "workdir":
            return f"WORKDIR {cfg.get('WorkingDir', '')}"
        if cmd == "expose":
            return "EXPOSE " + " ".join(a.value for a in n.args)
        if cmd == "volume":
            return "VOLUME " + _go_q([a.value for a in n.args])
        return n.original.strip()

    async def _meta(self, stage: _Stage, cfg: dict[str, Any], created_by: str,
                    opts: BuildOptions) -> tuple[str, bool]:
        full = f"/bin/sh -c #(nop)  {created_by}"
        if not opts.nocache:
            hit = self._cache_get((stage.image_id or "") + "|" + json.dumps(cfg, sort_keys=True), full)
            if hit is not None:
                stage.image_id = hit
                stage.config = cfg
                return hit, True
        return await self._commit_meta(stage, cfg, created_by, opts), False

    async def _commit_meta(self, stage: _Stage, cfg: dict[str, Any], created_by: str, opts: BuildOptions) -> str:
        full = f"/bin/sh -c #(nop)  {created_by}"
        cc = dict(cfg)
        cc["Cmd"] = ["/bin/sh", "-c", "#(nop) ", created_by]
        return await self._commit(stage, cfg, cc, None, full, empty=True, opts=opts)

    async def _commit(self, stage: _Stage, cfg: dict[str, Any], container_cfg: dict[str, Any],
                      layer: LayerRecord | None, created_by: str, *, empty: bool, opts: BuildOptions,
                      cache_parent: str | None = None) -> str:
        eng = self.engine
        parent_id = stage.image_id
        layers: list[LayerRecord] = []
        parent_cfg: dict[str, Any] = {}
        if parent_id is not None:
            prec = eng.db.get_image(parent_id, with_layers=True)
            if prec is None:
                raise ImageNotFound(parent_id)
            parent_cfg = eng.images.config_of(prec).data
            for _, _, dg in prec.layers:
                lr = eng.db.get_layer(dg)
                if lr is None:
                    raise ImageNotFound(parent_id, f"layer {dg} of image {parent_id} is missing")
                layers.append(lr)
        if layer is not None:
            layers.append(layer)
        now = self._created(opts)
        hist = list(parent_cfg.get("history") or [])
        h: dict[str, Any] = {"created": now, "created_by": created_by}
        if empty:
            h["empty_layer"] = True
        hist.append(h)
        plat = host_platform()
        top: dict[str, Any] = {
            "architecture": parent_cfg.get("architecture") or plat.architecture,
            "config": container_config(cfg), "container_config": container_config(container_cfg),
            "created": now, "docker_version": eng.images.engine_version, "history": hist,
            "os": parent_cfg.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        }
        raw = go_dumps(dict(sorted(top.items())))
        image_id, _ = await eng.images.commit_image(raw, layers, parent=parent_id or "")
        key_parent = (cache_parent if cache_parent is not None else
                      (parent_id or "") + "|" + json.dumps(cfg, sort_keys=True))
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
        if n.attributes.get("json"):
            args = [a.value for a in n.args]
            shown = _go_q(args)
        else:
            script = n.args[0].value if n.args else ""
            if n.heredocs:
                script = n.heredocs[0].content
            args = list(stage.shell) + [script]
            shown = " ".join(args)
        argenv = []
        for k, v in stage.args.items():
            val = opts.buildargs.get(k, v) if k in opts.buildargs else v
            if val is not None:
                argenv.append(f"{k}={val}")
                if k in opts.buildargs:
                    used_args.add(k)
        created_by = (f"|{len(argenv)} {' '.join(argenv)} {shown}" if argenv else shown)
        cache_parent = stage.image_id + "|" + json.dumps(stage.config, sort_keys=True)
        if not opts.nocache:
            hit = self._cache_get(cache_parent, created_by)
            if hit is not None:
                stage.image_id = hit
                yield StreamText(" ---> Using cache\n")
                yield StreamText(f" ---> {short_id(hit)}\n")
                return
        body = {"Image": stage.image_id, "Cmd": args, "Entrypoint": None,
                "Env": list(stage.config.get("Env") or []) + argenv, "User": stage.config.get("User", ""),
                "WorkingDir": stage.config.get("WorkingDir", ""),
                "HostConfig": {"NetworkMode": opts.networkmode or "default", "ExtraHosts": opts.extrahosts,
                               "Memory": opts.memory, "CpuShares": opts.cpushares, "ShmSize": opts.shmsize}}
        cid, _ = await eng.containers.create(body)
        yield StreamText(f" ---> Running in {cid[:12]}\n")
        removed = False
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
                if opts.forcerm:
                    await eng.containers.remove(cid, force=True)
                    removed = True
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
            cc["Cmd"] = args
            image_id = await self._commit(stage, dict(stage.config), cc, layer, created_by, empty=empty, opts=opts,
                                          cache_parent=cache_parent)
            if empty:
                await eng.images.collect({digest})
        finally:
            if not removed and (opts.rm or opts.forcerm):
                try:
                    await eng.containers.remove(cid, force=True)
                    removed = True
                except DockwrightError:
                    pass
        if removed:
            yield StreamText(f"Removing intermediate container {cid[:12]}\n")
        yield StreamText(f" ---> {short_id(image_id)}\n")

    # ---- COPY / ADD -------------------------------------------------------------------------------------------
    async def _copy_step(self, stage: _Stage, n: Any, lex: Any, opts: BuildOptions, root: Path, ignore: Any,
                         built: dict[str, str | None]) -> AsyncIterator[ProgressEvent]:
        from ..build.context import context_checksum, resolve_sources
        eng = self.engine
        cmd = n.value.upper()
        flags = dict(f.lstrip("-").split("=", 1) if "=" in f else (f.lstrip("-"), "") for f in n.flags)
        env = dfile._Env(self._env(stage, opts))  # noqa: SLF001
        words = [lex.process_word(a.value, env) for a in n.args]
        if n.heredocs:
            raise NotSupported(f"{cmd} with a heredoc is not supported by this builder yet")
        if len(words) < 2:
            raise InvalidArgument(f"{cmd} requires at least two arguments, but only one was provided. "
                                  f"Destination could not be determined.")
        srcs, dest = words[:-1], words[-1]
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
        try:
            files: list[Path] = []
            for s in srcs:
                if cmd == "ADD" and (s.startswith("http://") or s.startswith("https://")):
                    raise NotSupported("ADD of a URL is not supported by this builder yet")
                files.extend(resolve_sources(src_root, s, src_ignore) if src_ignore is not None else
                             resolve_sources(src_root, s, _NoIgnore()))
            kind = "dir" if any(p.is_dir() for p in files) or len(files) > 1 else "file"
            checksum = await asyncio.to_thread(context_checksum, src_root,
                                               [str(p.relative_to(src_root)) for p in files],
                                               opts.context_digests if src_root is root else None)
            created_by = f"/bin/sh -c #(nop) {cmd} {kind}:{checksum.split(':')[-1]} in {dest} "
            if flags.get("chown"):
                created_by += f"--chown={flags['chown']} "
            if flags.get("chmod"):
                created_by += f"--chmod={flags['chmod']} "
            cache_parent = (stage.image_id or "") + "|" + json.dumps(stage.config, sort_keys=True)
            if not opts.nocache:
                hit = self._cache_get(cache_parent, created_by)
                if hit is not None:
                    stage.image_id = hit
                    yield StreamText(" ---> Using cache\n")
                    yield StreamText(f" ---> {short_id(hit)}\n")
                    return
            key = f"extract-copy-{os.urandom(8).hex()}"  # "extract-": removed at start-up if left by a crash
            parent_chain = await self._chain(stage.image_id)
            await asyncio.to_thread(eng.snapshotter.prepare, key, parent_chain)
            target = eng.root / "tmp" / key
            target.mkdir(parents=True)
            adopted = False
            try:
                mounts = await asyncio.to_thread(eng.snapshotter.mounts, key)
                await asyncio.to_thread(mount_all, mounts, target)
                try:
                    uid, gid = _resolve_chown(flags.get("chown", ""), target)
                    await asyncio.to_thread(copy_sources, files, target, dest, srcs, uid, gid,
                                            flags.get("chmod", ""), cmd == "ADD")
                finally:
                    await asyncio.to_thread(unmount, target)
                writer = eng.content.writer()
                try:
                    clamp = float(opts.buildargs["SOURCE_DATE_EPOCH"]) if opts.buildargs.get("SOURCE_DATE_EPOCH") \
                        else None
                    res_l = await asyncio.to_thread(write_layer_from_upper, eng.snapshotter.upper_dir(key), writer,
                                                    mtime_clamp=clamp, level=None)
                    digest = await asyncio.to_thread(writer.commit, res_l.digest, res_l.size)
                except BaseException:
                    writer.abort()
                    raise
                if clamp is None:
                    # the upper directory is what the layer unpacks to: it becomes the layer's snapshot, so
                    # the next RUN does not unpack the layer again (with a clamp the mtimes differ)
                    chain = (res_l.diff_id if parent_chain is None
                             else sha256_digest(f"{parent_chain} {res_l.diff_id}".encode()))
                    adopted = await asyncio.to_thread(adopt_snapshot, eng.snapshotter, key, chain)
            finally:
                shutil.rmtree(target, ignore_errors=True)
                if not adopted:
                    await asyncio.to_thread(eng.snapshotter.remove, key)
            layer = LayerRecord(digest, res_l.diff_id, mt.OCI_LAYER, res_l.size, res_l.diff_size, res_l.tar_size)
            cc = dict(stage.config)
            cc["Cmd"] = ["/bin/sh", "-c", f"#(nop) {cmd} {kind}:{checksum.split(':')[-1]} in {dest} "]
            image_id = await self._commit(stage, dict(stage.config), cc, layer, created_by, empty=False, opts=opts,
                                          cache_parent=cache_parent)
        finally:
            if view_key is not None:
                await self._unmount_image(view_key, view_dir)
        yield StreamText(f" ---> {short_id(image_id)}\n")

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


class _NoIgnore:
    def matches(self, path: str) -> bool:
        return False


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


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


def _copy_into(files: list[Path], src_root: Path, target: Path, dest: str, srcs: list[str], uid: int, gid: int,
               chmod: str, is_add: bool) -> None:
    """COPY semantics: a directory source copies its contents; several sources need a directory destination."""
    dest_is_dir = dest.endswith("/") or len(files) > 1 or len(srcs) > 1
    rel_dest = dest.lstrip("/")
    dst_base = target / rel_dest
    mode = int(chmod, 8) if chmod else None

    def own(p: Path) -> None:
        os.lchown(p, uid, gid)
        if mode is not None and not p.is_symlink():
            os.chmod(p, mode)

    def ensure_dir(d: Path) -> None:
        if not d.exists():
            d.mkdir(parents=True, exist_ok=True)

    for src in files:
        if src.is_dir() and not src.is_symlink():
            ensure_dir(dst_base)
            for dirpath, dirnames, filenames in os.walk(src):
                rel = Path(dirpath).relative_to(src)
                d = dst_base / rel
                ensure_dir(d)
                if rel != Path("."):
                    own(d)
                for fn in filenames + [x for x in dirnames if (Path(dirpath) / x).is_symlink()]:
                    sp = Path(dirpath) / fn
                    dp = d / fn
                    _copy_one(sp, dp)
                    own(dp)
            continue
        if is_add and _is_tar(src):
            ensure_dir(dst_base)
            with tarfile.open(src) as tf:
                tf.extractall(dst_base, filter="data")
            continue
        if dest_is_dir:
            ensure_dir(dst_base)
            dp = dst_base / src.name
        else:
            ensure_dir(dst_base.parent)
            dp = dst_base if not dst_base.is_dir() else dst_base / src.name
        _copy_one(src, dp)
        own(dp)


def _copy_one(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        else:
            dst.unlink()
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


def _is_tar(p: Path) -> bool:
    try:
        return tarfile.is_tarfile(p)
    except OSError:
        return False
