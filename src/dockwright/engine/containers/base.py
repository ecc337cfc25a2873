"""The shared part of the containers service (:class:`ContainersBase`): its dependencies, the containers in
memory and their records, the bookkeeping of operations in progress, and each container's paths and rootfs mount.
The stages (create, lifecycle, removal) and
:class:`~dockwright.engine.containers.service.ContainersService` build on it."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

from ...content.store import ContentStore
from ...errors import ContainerNotFound, InvalidArgument
from ...metadata.containers import ContainerRecords
from ...metadata.db import MetadataDB
from ...network.endpoint import Attachment
from ...network.service import NetworkService
from ...runtime import Runc
from ...snapshots import OverlaySnapshotter, is_mountpoint, mount_all, unmount
from ..events import EventBus
from ..images.service import ImagesService
from ..prune import PruneLock
from ..volumes import VolumesService
from .record import Container, container_from_row, container_row

__all__ = ["ContainersBase"]

log = logging.getLogger("dockwright.containers")


class ContainersBase:
    """What the stages of the containers service share: its dependencies, the containers (in memory, written
    through to the metadata database), the operations in progress, and each container's paths and rootfs mount."""

    def __init__(self, root: Path, *, records: ContainerRecords, db: MetadataDB, images: ImagesService,
                 events: EventBus, content: ContentStore, snapshotter: OverlaySnapshotter, runc: Runc,
                 network: NetworkService, volumes: VolumesService) -> None:
        self.root = root
        self.records = records
        self.db = db
        self.images = images
        self.events = events
        self.content = content
        self.snapshotter = snapshotter
        self.network = network
        self.runc = runc
        root.mkdir(parents=True, exist_ok=True)
        self._created: dict[str, asyncio.Event] = {}
        self._pending_attach: dict[str, list[asyncio.Event]] = {}
        self._finished: dict[str, tuple[float, int]] = {}
        self._removed: dict[str, tuple[float, int]] = {}
        self._runtime_gone: set[str] = set()  # deleted from runc already (after their exit)
        self.volumes = volumes
        self.volumes.users = self.volume_users
        self._prune = PruneLock()
        self._cache: dict[str, Container] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._exit_events: dict[str, asyncio.Event] = {}
        self._removed_events: dict[str, asyncio.Event] = {}
        self._removing: set[str] = set()  # ids whose removal is in progress (dockerd's RemovalInProgress)
        self._names_in_use: dict[str, str] = {}  # name → id of a container being created (not cached yet)
        self._starting: dict[str, asyncio.Event] = {}  # ids being started: set when the start is over
        self._committing: dict[str, list[asyncio.Event]] = {}  # ids being committed: each set when its commit ends
        self._lock = asyncio.Lock()
        self._file_ops: dict[str, int] = {}  # ids → file operations (docker cp) holding the rootfs mounted
        self._file_ops_over: dict[str, asyncio.Event] = {}  # set when a container's last one ends
        # called (synchronously, never raising) when a container's exit is published: the exec service drops the
        # execs that never started, as dockerd's Cleanup
        self.exit_hooks: list[Callable[[Container], None]] = []
        for c in self._load_all():
            self._cache[c.id] = c
        images.container_usage = self.usage

    # ---- records ----------------------------------------------------------------------------------------------
    def _load_all(self) -> list[Container]:
        """Every stored container. A record an older version stored with values of the wrong type (``Cmd: 5``,
        ``Env: "A=1"`` — bodies it did not decode into dockerd's types) is repaired, with a warning, so that it
        cannot break the list and inspect for every client."""
        out = []
        for r in self.records.all():
            c, problems = container_from_row(r)
            if problems:
                log.warning("container %s: stored record repaired: %s", c.id, "; ".join(problems))
                try:
                    self._save(c)
                except Exception as exc:  # noqa: BLE001 - repaired in memory; the next save stores it
                    log.warning("container %s: saving the repaired record: %s", c.id, exc)
            out.append(c)
        return out

    def _save(self, c: Container) -> None:
        self.records.save(container_row(c))

    def usage(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of every container of image ``image_id``: the image service asks."""
        return [(c.id, c.running) for c in self._cache.values() if c.image_id == image_id]

    def volume_users(self, name: str) -> list[str]:
        """The containers (any state) whose mounts reference volume ``name``."""
        return [c.id for c in self._cache.values()
                if any(m.get("Type") == "volume" and m.get("Name") == name for m in c.mounts)]

    def all(self) -> list[Container]:
        """Every container, newest first."""
        return sorted(self._cache.values(), key=lambda c: c.created, reverse=True)

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without /), or unique ID prefix — dockerd's lookup order."""
        if ref in self._cache:
            return self._cache[ref]
        name = ref.lstrip("/")
        for c in self._cache.values():
            if c.name == name:
                return c
        if ref and re.fullmatch(r"[0-9a-f]+", ref):
            hits = [c for c in self._cache.values() if c.id.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise ContainerNotFound(ref)

    def counts(self) -> tuple[int, int, int, int]:
        """(all, running, paused, stopped) container counts."""
        cs = list(self._cache.values())
        running = sum(1 for c in cs if c.running and not c.state.get("Paused"))
        paused = sum(1 for c in cs if c.state.get("Paused"))
        return len(cs), running, paused, len(cs) - running - paused

    def _event(self, c: Container, action: str, extra: dict[str, str] | None = None) -> None:
        attrs = dict(c.config.get("Labels") or {})
        attrs.update({"image": c.image_ref, "name": c.name})
        attrs.update(extra or {})
        self.events.publish("container", action, c.id, attrs)

    def _dir(self, cid: str) -> Path:
        return self.root / cid

    def _rootfs(self, c: Container) -> Path:
        return self._dir(c.id) / "rootfs"

    def _bundle(self, c: Container) -> Path:
        return self._dir(c.id) / "bundle"

    def _log_path(self, c: Container) -> Path:
        return self._dir(c.id) / f"{c.id}-json.log"

    async def _mount(self, c: Container) -> Path:
        target = self._rootfs(c)
        target.mkdir(parents=True, exist_ok=True)
        if not is_mountpoint(target):
            mounts = await asyncio.to_thread(self.snapshotter.mounts, c.id)
            await asyncio.to_thread(mount_all, mounts, target)
        return target

    async def _unmount(self, c: Container) -> None:
        if self._file_ops.get(c.id):
            return  # a file operation holds it: unmounted when the last one ends, unless running by then
        target = self._rootfs(c)
        if target.exists() and is_mountpoint(target):
            try:
                await asyncio.to_thread(unmount, target)
            except OSError:
                await asyncio.to_thread(unmount, target, detach=True)


    async def _disconnect(self, c: Container, att: Attachment | None) -> None:
        """Release the container's endpoint (its exit, or a start that failed after connecting); never raises."""
        try:
            await self.network.disconnect(c.id, att)
        except Exception as exc:  # noqa: BLE001
            log.warning("releasing the network of %s: %s", c.id, exc)

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container (implemented by :class:`~dockwright.engine.containers.removal.ContainerRemoval`)."""
        raise NotImplementedError
