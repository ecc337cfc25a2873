"""Container creation (:class:`ContainerCreation`): checks of the create body, the name, the mount points and
their volumes, the rootfs snapshot; all or nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

from ...errors import Conflict, ImageNotFound, InvalidArgument, SystemError_
from ...layers.apply import ensure_chain
from ...network.ports import requested_ports
from ...network.service import NetworkNotFound
from ...oci.gojson import rfc3339_nano
from ...runtime.users import resolve_in_root
from ..mounts import bind_daemon_root, image_volume, parse_bind, parse_mount
from ..resources import verify_extra_hosts, verify_resources
from .base import ContainersBase
from .config import ADJECTIVES, NAME_RE, SURNAMES, host_config_defaults, merge_config
from .record import Container, new_state

__all__ = ["ContainerCreation"]

log = logging.getLogger("dockwright.containers")


class ContainerCreation(ContainersBase):
    """The create stage of the containers service."""

    # ---- create -----------------------------------------------------------------------------------------------
    async def create(self, body: dict[str, Any], name: str = "", platform: str = "") -> tuple[str, list[str]]:
        """Create a container from a create body; its ID and warnings (see :meth:`_create`)."""
        async with self.images.operation("create"):  # leases the snapshots it unpacks until its own exists
            return await self._create(body, name, platform)

    async def _create(self, body: dict[str, Any], name: str = "", platform: str = "") -> tuple[str, list[str]]:
        """Create a container from a create body (the API has decoded it into dockerd's types). All or nothing:
        a create that fails leaves no record, no snapshot and no ``containers/<id>/`` directory."""
        image_ref = body.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("config cannot be empty in order to create a container")
        try:
            rec = self.images.resolve(image_ref)
        except ImageNotFound as exc:
            raise ImageNotFound(image_ref, f"No such image: {image_ref}") from exc
        if name:
            if not NAME_RE.match(name):
                raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            for c in self._cache.values():
                if c.name == name:
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{c.id}". You have to remove (or rename) that container to be able to reuse '
                                   f"that name.")
            if name in self._names_in_use:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{self._names_in_use[name]}". You have to remove (or rename) that container to be '
                               f"able to reuse that name.")
        else:
            taken = {c.name for c in self._cache.values()} | set(self._names_in_use)
            while True:
                name = f"{random.choice(ADJECTIVES)}_{random.choice(SURNAMES)}"
                if name not in taken:
                    break
        cid = os.urandom(32).hex()
        host_config = host_config_defaults(dict(body.get("HostConfig") or {}))
        req = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        cfg = merge_config(self.images.config_of(rec).config, req)
        cfg["Image"] = image_ref
        if not cfg.get("Hostname"):
            cfg["Hostname"] = cid[:12]
        if not cfg.get("Cmd") and not cfg.get("Entrypoint"):
            raise InvalidArgument("no command specified")
        verify_extra_hosts(list(host_config.get("ExtraHosts") or []))
        verify_resources(memory=int(host_config.get("Memory") or 0), memswap=int(host_config.get("MemorySwap") or 0),
                         cpuperiod=int(host_config.get("CpuPeriod") or 0),
                         cpuquota=int(host_config.get("CpuQuota") or 0),
                         cpusetcpus=str(host_config.get("CpusetCpus") or ""),
                         cpusetmems=str(host_config.get("CpusetMems") or ""),
                         shmsize=int(host_config.get("ShmSize") or 0))
        # what dockerd checks of the network settings at create: the network exists, the ports parse
        mode = str(host_config.get("NetworkMode") or "default")
        if mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:"):
            raise NetworkNotFound(mode)
        requested_ports(cfg.get("ExposedPorts"), host_config.get("PortBindings"),
                        bool(host_config.get("PublishAllPorts")))
        points = self._mount_points(cfg, host_config)
        c = Container(cid, name, rec.id, image_ref, rfc3339_nano(), cfg, host_config, new_state())
        self._names_in_use[name] = cid  # from here until the record is in the cache, no other create takes it
        held: list[str] = []
        made: list[str] = []  # anonymous volumes this create made: they go if it fails
        try:
            self._dir(cid).mkdir(mode=0o710, parents=True, exist_ok=True)  # dockerd's container root mode
            # the snapshot work runs in threads: a cancelled create lets it finish before it cleans up after it
            prepare = asyncio.ensure_future(self._prepare_rootfs(c, rec))
            try:
                await asyncio.shield(prepare)
            except asyncio.CancelledError:
                await asyncio.wait([prepare])
                raise
            c.mounts = self._create_volumes(points, held, made)
            if any(m.get("CopyData") for m in c.mounts):
                await self._copy_image_data(c)
            self._save(c)
        except BaseException:
            self._discard(cid)
            for vol in held:
                self.volumes.release(vol)
            held = []
            for vol in made:
                try:
                    await self.volumes.remove(vol, force=True)
                except Exception as exc:  # noqa: BLE001
                    log.warning("removing volume %s of the failed create %s: %s", vol, cid, exc)
            raise
        finally:
            self._names_in_use.pop(name, None)
            for vol in held:
                self.volumes.release(vol)
        self._cache[cid] = c
        self.images._changed()  # noqa: SLF001 - container counts are part of the image list
        self._event(c, "create")
        return cid, []

    def _mount_points(self, cfg: dict[str, Any], hc: dict[str, Any]) -> list[dict[str, Any]]:
        """dockerd's registerMountPoints, checks only: ``Binds`` then ``Mounts`` (no destination twice, dockerd's
        messages), then an anonymous volume for each path of ``Config.Volumes`` that nothing mounts yet. The volumes
        are not made here (see :meth:`_create_volumes`)."""
        points: list[dict[str, Any]] = []
        for dest in hc.get("Tmpfs") or {}:
            if not str(dest).startswith("/"):
                raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
        dests: set[str] = {os.path.normpath(str(t)) for t in hc.get("Tmpfs") or {}}
        driver = str(hc.get("VolumeDriver") or "")
        for raw in hc.get("Binds") or []:
            mp = parse_bind(str(raw), driver)
            if mp["Destination"] in dests:
                raise InvalidArgument(f"Duplicate mount point: {mp['Destination']}")
            dests.add(mp["Destination"])
            points.append(mp)
        for m in hc.get("Mounts") or []:
            mp = parse_mount(m)
            if mp["Destination"] in dests:
                raise InvalidArgument(f"Duplicate mount point: {m.get('Target')}")
            dests.add(mp["Destination"])
            points.append(mp)
        for mp in points:
            bind_daemon_root(mp, str(self.root.parent))
        for dest in sorted(cfg.get("Volumes") or {}):
            mp = image_volume(str(dest))
            if mp["Destination"] in dests or not mp["Destination"].startswith("/"):
                continue
            dests.add(mp["Destination"])
            points.append(mp)
        for mp in points:  # a named volume that does not exist yet must be one dockerd would make
            if mp["Type"] == "volume" and mp["Name"] and not self.volumes.exists(mp["Name"]):
                self.volumes.check_create(mp["Name"], mp.get("Driver") or "", mp.get("DriverOpts"))
        return points

    def _create_volumes(self, points: list[dict[str, Any]], held: list[str], made: list[str]) -> list[dict[str, Any]]:
        """The volumes of the mount points, made (``create`` events) and held for the container being created."""
        out = []
        for mp in points:
            mp = dict(mp)
            if mp["Type"] == "volume":
                v = self.volumes.create(mp["Name"], mp.get("Driver") or "", mp.pop("DriverOpts", None),
                                        mp.pop("VolumeLabels", None))
                self.volumes.hold(v.name)
                held.append(v.name)
                if not mp["Name"]:
                    made.append(v.name)
                mp.update({"Name": v.name, "Source": str(v.mountpoint), "Driver": v.driver})
            out.append(mp)
        return out

    async def _copy_image_data(self, c: Container) -> None:
        """dockerd's populateVolumes: a volume that is empty gets what the image has at its path (the files, their
        owners and modes, and those of the directory itself). An image volume over a file is an error."""
        rootfs = await self._mount(c)
        try:
            for mp in c.mounts:
                if not mp.get("CopyData"):
                    continue
                src = resolve_in_root(rootfs, mp["Destination"])
                if not os.path.lexists(src):
                    continue
                if not src.is_dir():
                    if mp.get("Anonymous") and mp.get("Mode") == "":
                        raise SystemError_(f"cannot mount volume over existing file, file exists {src}")
                    continue
                dst = Path(mp["Source"])
                if any(os.scandir(dst)):
                    continue
                proc = await asyncio.create_subprocess_exec(
                    "cp", "-a", "--", f"{src}/.", f"{dst}/", stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                if proc.returncode != 0:
                    raise SystemError_(f"copying the image's {mp['Destination']} into volume {mp['Name']}: "
                                       f"{err.decode(errors='replace').strip()}")
        finally:
            await self._unmount(c)

    def _discard(self, cid: str) -> None:
        """Undo a create that failed part-way: its record, its snapshot and its directory, whichever exist."""
        try:
            self.records.delete(cid)
        except Exception as exc:  # noqa: BLE001
            log.warning("removing the record of the failed create %s: %s", cid, exc)
        try:
            if self.snapshotter.exists(cid):
                self.snapshotter.remove(cid)
        except Exception as exc:  # noqa: BLE001
            log.warning("removing the snapshot of the failed create %s: %s", cid, exc)
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    async def _prepare_rootfs(self, c: Container, rec: Any) -> None:
        full = self.db.get_image(rec.id, with_layers=True)
        layers = [(chain, (lambda d=digest: self.content.open(d)))
                  for _, chain, digest in (full.layers if full else [])]
        top = await asyncio.to_thread(ensure_chain, self.snapshotter, layers, sync=False) if layers else None
        await asyncio.to_thread(self.snapshotter.prepare, c.id, top)

