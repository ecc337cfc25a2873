"""Container removal (:class:`ContainerRemoval`): ``rm`` (with ``-f`` and ``-v``), what it waits for, and
``container prune``."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal as _signal
import time
from typing import Any

from ...errors import Conflict, NotFound
from ...filters import Filters
from ...oci.gojson import parse_rfc3339
from ..prune import prune_until
from .lifecycle import REMOVED_MEMORY, ContainerLifecycle
from .record import Container

__all__ = ["ContainerRemoval"]

log = logging.getLogger("dockwright.containers")


class ContainerRemoval(ContainerLifecycle):
    """The removal stage of the containers service."""

    # ---- remove -----------------------------------------------------------------------------------------------
    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container (``force`` kills a running one first). One removal at a time: another request
        meanwhile is a conflict, as dockerd's "removal … is already in progress"."""
        c = self.get(ref)
        if c.id in self._removing:
            raise Conflict(f"removal of container {ref} is already in progress")
        if c.running and not force:
            state = "paused" if c.state.get("Paused") else "running"
            raise Conflict(f"cannot remove container \"/{c.name}\": container is {state}: stop the "
                           f"container before removing or force remove")
        self._removing.add(c.id)
        try:
            starting = self._starting.get(c.id)
            if starting is not None:  # as dockerd's container lock: the start finishes first
                await starting.wait()
            for committing in list(self._committing.get(c.id, ())):  # a commit holds its container's layer
                await committing.wait()
            while self._file_ops.get(c.id):  # as dockerd's container lock: a docker cp in progress ends first
                await self._file_ops_over.setdefault(c.id, asyncio.Event()).wait()
            if c.running and not force:
                raise Conflict(f"cannot remove container \"/{c.name}\": container is running: stop the "
                               f"container before removing or force remove")
            if c.running:
                await self._kill_for_removal(c)
            if c.id not in self._cache:
                return
            try:
                await self._remove_stopped(c, volumes=volumes)
            except Exception as exc:
                if c.id in self._cache:  # as dockerd's SetRemovalError: `wait --condition removed` ends with it
                    c.state["Error"] = f"unable to remove container {c.id}: {exc}"
                    ev = self._removed_events.pop(c.id, None)
                    if ev is not None:
                        ev.set()
                raise
        finally:
            self._removing.discard(c.id)

    async def _kill_for_removal(self, c: Container) -> None:
        ev = await self._thaw_and_signal(c, _signal.SIGKILL, all=True)
        try:
            await asyncio.wait_for(ev.wait(), 30)
        except TimeoutError:
            # the runtime never reported the exit: stop watching and record it as lost
            log.warning("container %s did not exit after SIGKILL; removing it anyway", c.id)
            task = self._watchers.pop(c.id, None)
            if task is not None:
                task.cancel()
            if c.running:
                self._publish_exit(c, None)

    async def _remove_stopped(self, c: Container, *, volumes: bool = False) -> None:
        if c.id not in self._runtime_gone:
            try:
                await self.runc.delete(c.id, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._runtime_gone.discard(c.id)
        await self._unmount(c)
        try:
            await asyncio.to_thread(self.snapshotter.remove, c.id)
        except Exception as exc:  # noqa: BLE001
            log.warning("removing the snapshot of %s: %s", c.id, exc)
        await asyncio.to_thread(shutil.rmtree, self._dir(c.id), True)
        if volumes:  # dockerd's removeMountPoints: the anonymous volumes go, unless another container uses one
            for mp in c.mounts:
                if mp.get("Type") == "volume" and mp.get("Anonymous"):
                    try:
                        await self.volumes.remove(str(mp.get("Name")), but=c.id)
                    except (Conflict, NotFound):
                        pass
                    except Exception as exc:  # noqa: BLE001
                        log.warning("removing volume %s of %s: %s", mp.get("Name"), c.id, exc)
        self.records.delete(c.id)
        # from here on nothing awaits: the container is gone for everyone at once
        self._cache.pop(c.id, None)
        now = time.time()
        for key, (when, _) in list(self._removed.items()):
            if now - when > REMOVED_MEMORY:
                del self._removed[key]
        self._removed[c.id] = (now, int(c.state.get("ExitCode", 0)))
        self._removed[c.name] = self._removed[c.id]
        self._finished.pop(c.id, None)
        self._pending_attach.pop(c.id, None)
        created = self._created.pop(c.id, None)
        if created is not None:
            created.set()  # attaches waiting for a start wake up and fail to connect: their streams end
        self.images._changed()  # noqa: SLF001
        self._event(c, "destroy")
        done = self._exit_events.pop(c.id, None)
        if done is not None:
            done.set()  # anyone still following this container's logs or waiting for it stops now (as dockerd)
        ev = self._removed_events.pop(c.id, None)
        if ev is not None:
            ev.set()


    async def prune(self, f: Filters | None = None) -> dict[str, Any]:
        """dockerd's ContainersPrune: every container that is not running (``until``, ``label``, ``label!``),
        removed without its volumes; the space is their writable layers'. ``prune`` event."""
        f = f or Filters()
        f.validate(("until", "label", "label!"))
        until = prune_until(f)
        deleted: list[str] = []
        reclaimed = 0
        with self._prune.hold():
            for c in self.all():
                if c.running or c.id in self._removing or c.id not in self._cache:
                    continue
                if until is not None and (parse_rfc3339(c.created) or 0) > until:
                    continue
                if not f.match_labels(c.config.get("Labels") or {}):
                    continue
                try:
                    size = (await asyncio.to_thread(self.snapshotter.usage, c.id)).apparent_size
                except Exception:  # noqa: BLE001
                    size = 0
                try:
                    await self.remove(c.id)
                except Exception as exc:  # noqa: BLE001 - as dockerd: logged, the others are pruned
                    log.warning("failed to prune container %s: %s", c.id, exc)
                    continue
                reclaimed += size
                deleted.append(c.id)
        self.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

