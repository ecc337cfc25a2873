"""RUN: the step's command in a container on the stage's image (its VOLUMEs as anonymous volumes), its output
streamed, its upper directory committed as the layer, and its container removed as dockerd's ``dispatch``
removes it."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from ..content.store import ContentStore
from ..dockerfile import Node
from ..errors import DockwrightError, InvalidArgument
from ..layers.diff import write_layer_from_upper
from ..metadata.db import LayerRecord
from ..oci import mediatypes as mt
from ..progress import ProgressEvent, StreamText
from ..snapshots import OverlaySnapshotter
from .cache import BuildCache
from .commit import StepCommitter
from .deps import BuildContainers, BuildImages, VerifyExtraHosts, VerifyResources
from .options import PROXY_ARGS, BuildError, BuildOptions
from .paths import follow_in_scope
from .rootfs import EMPTY_LAYER_DIFF_ID, RootfsLayers, source_date_epoch
from .stages import Stage, arg_value
from .stages import cache_parent as _cache_parent

__all__ = ["RunSteps"]

log = logging.getLogger("dockwright.build")


class RunSteps:
    """The RUN steps of a build: containers from ``containers``, layers into ``content``."""

    def __init__(self, root: Path, containers: BuildContainers, content: ContentStore,
                 snapshotter: OverlaySnapshotter, images: BuildImages, cache: BuildCache, committer: StepCommitter,
                 rootfs: RootfsLayers, verify_extra_hosts: VerifyExtraHosts,
                 verify_resources: VerifyResources) -> None:
        self.root = root
        self.containers = containers
        self.content = content
        self.snapshotter = snapshotter
        self.images = images
        self.cache = cache
        self.committer = committer
        self.rootfs = rootfs
        self.verify_extra_hosts = verify_extra_hosts
        self.verify_resources = verify_resources

    async def run_step(self, stage: Stage, n: Node, opts: BuildOptions,
                       used_args: set[str]) -> AsyncIterator[ProgressEvent]:
        """One RUN instruction (``dispatchRun``); build args it passes are added to ``used_args``."""
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
            val = arg_value(stage, opts, k)
            if val is not None and k not in env_keys:
                argenv.append(f"{k}={val}")
                if k in opts.buildargs:
                    used_args.add(k)
        shown_args = sorted(a for a in argenv if a.partition("=")[0] in stage.args)
        created_by = (f"|{len(shown_args)} {' '.join(shown_args)} {shown}" if shown_args else shown)
        cache_parent = _cache_parent(stage.image_id, stage.config)
        if await self.cache.probe(stage, cache_parent, created_by, stage.config, opts) is not None:
            yield StreamText(" ---> Using cache\n")
            return
        # what dockerd's ContainerCreate checks of the build's resource options, here as there (a cached RUN skips it)
        self.verify_extra_hosts(opts.extrahosts)
        self.verify_resources(memory=opts.memory, memswap=opts.memswap, cpuperiod=opts.cpuperiod,
                              cpuquota=opts.cpuquota, cpusetcpus=opts.cpusetcpus, cpusetmems=opts.cpusetmems,
                              shmsize=opts.shmsize)
        # VOLUMEs: an anonymous volume each, as dockerd gives the step's container — it starts with the image's
        # files there, and what RUN writes into it is not part of the layer
        volumes = sorted((stage.config.get("Volumes") or {}).keys())
        vol_root = self.root / "tmp" / f"build-vol-{os.urandom(8).hex()}" if volumes else None
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
            cid, _ = await self.containers.create(body)
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
            ticket = self.containers.reserve_attach(cid)
            att_task = asyncio.ensure_future(self.containers.attach(cid, stdin=False, stdout=True, stderr=True,
                                                                     ticket=ticket))
            await self.containers.start(cid)
            att = await att_task
            async for s, data in att:
                text = data.decode("utf-8", errors="replace")
                yield StreamText(text if s == 1 else f"\x1b[91m{text}\x1b[0m")
            await att.close()
            res = await self.containers.wait(cid, "not-running")
            code = int(res.get("StatusCode", 0))
            if code != 0:
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}", code)
            c = self.containers.get(cid)
            writer = self.content.writer()
            try:
                upper = self.snapshotter.upper_dir(c.id)
                clamp = source_date_epoch(opts)
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
            await self.committer.commit(stage, dict(stage.config), cc, layer, created_by, empty=empty, opts=opts,
                                        cache_parent=cache_parent)
            if empty:
                await self.images.collect({digest})
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
            await self.containers.remove(cid, force=True)
        except DockwrightError as exc:
            log.warning("removing the intermediate container %s: %s", cid[:12], exc)
            return False
        if vol_root is not None:
            shutil.rmtree(vol_root, ignore_errors=True)
        return True

    async def _volumes(self, image_id: str, volumes: list[str], vol_root: Path) -> list[str]:
        """Directories for a RUN's anonymous volumes, filled with what the image has at each path (dockerd copies
        it into a new volume), as ``Binds``."""
        view_key, view_dir = await self.rootfs.mount_image(image_id)
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
            await self.rootfs.unmount_image(view_key, view_dir)
