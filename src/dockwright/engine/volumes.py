"""The volumes service: dockerd's ``local`` volume driver.

A volume is a directory ``<data-root>/volumes/<name>/_data`` (``volumes/`` and ``volumes/<name>`` mode 0701,
``_data`` 0755, as dockerd's) with its record — driver, labels, options, creation time, whether it is anonymous
— in the metadata database (table ``volumes``). A volume created without a name is *anonymous*: a random
64-hex name and the label ``com.docker.volume.anonymous`` (dockerd 23+), which is what ``volume prune`` removes
by default from API 1.42 on and what ``docker rm -v`` removes with its container.

Options are the local driver's (``type``, ``device``, ``o``; ``size`` needs quotas, which dockwright has not):
such a volume is mounted (``mount -t type -o o device _data``) while a running container uses it, and unmounted
after the last one stops.

Which containers use a volume is the containers service's knowledge: it sets :attr:`VolumesService.users`
(name → container IDs, any state) and holds the names it is about to reference (:meth:`hold`) so that a prune
or a removal in between cannot take a volume from a container being created. Events are dockerd's: ``create``,
``destroy``, ``mount``, ``unmount`` (published by the containers service through :meth:`mounted`) and ``prune``.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Conflict, InvalidArgument, NotFound, SystemError_
from ..filters import Filters
from ..metadata.volumes import VolumeRecords, VolumeRow
from ..snapshots import Mount, is_mountpoint, mount_all, unmount
from ..snapshots.du import dir_size
from .events import EventBus
from .prune import PruneLock

__all__ = ["VolumesService", "Volume", "ANONYMOUS_LABEL", "valid_volume_name", "VolumeNotFound",
           "created_at"]

log = logging.getLogger("dockwright.volumes")

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DRIVER = "local"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_VALID_OPTS = ("type", "device", "o", "size")
VOLUMES_MODE = 0o701  # volumes/ and volumes/<name>, as dockerd's
LIST_FILTERS = ("dangling", "name", "driver", "label")
PRUNE_FILTERS = ("label", "label!", "all")


class VolumeNotFound(NotFound):
    """``get <name>: no such volume``."""

    def __init__(self, name: str, op: str = "get") -> None:
        super().__init__(f"{op} {name}: no such volume")
        self.name = name


@dataclass
class Volume(VolumeRow):
    """A volume: its record, its ``_data`` directory and (from list/get) the containers using it."""

    mountpoint: Path
    users: list[str] = field(default_factory=list)  # containers referencing it, filled by list()/get()


def valid_volume_name(name: str) -> None:
    """The local driver's name check, with dockerd's words (the caller adds ``create <name>: ``)."""
    if len(name) == 1:
        raise InvalidArgument("volume name is too short, names should be at least two alphanumeric characters")
    if not _NAME_RE.match(name):
        raise InvalidArgument(f'"{name}" includes invalid characters for a local volume name, only '
                              f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                              f"use absolute path")


def created_at(ts: float) -> str:
    """dockerd's ``CreatedAt``: RFC 3339 to the second in the daemon's time zone (``Z`` for UTC)."""
    text = datetime.datetime.fromtimestamp(int(ts)).astimezone().isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class VolumesService:
    """dockerd's ``local`` volume driver and its volume store: create, list, remove, prune, mount."""

    def __init__(self, root: Path, records: VolumeRecords, events: EventBus) -> None:
        self.root = root
        self.records = records
        self.events = events
        self.users: Callable[[str], list[str]] = lambda name: []  # set by the containers service
        self._held: dict[str, int] = {}  # names a create in progress is about to reference
        self._active: dict[str, set[str]] = {}  # volumes with options: the running containers that mount them
        self._prune = PruneLock()
        root.mkdir(parents=True, exist_ok=True)
        if os.stat(root).st_mode & 0o7777 != VOLUMES_MODE:
            os.chmod(root, VOLUMES_MODE)
        self._cache: dict[str, Volume] = {}
        for r in records.all():
            self._cache[r.name] = Volume(r.name, r.driver, r.labels, r.options, r.created, r.anonymous,
                                         self._data(r.name))
        self._adopt()

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _data(self, name: str) -> Path:
        return self.root / name / "_data"

    def _adopt(self) -> None:
        """Directories of ``volumes/`` that have no record (a crash between the two, or made by hand): volumes, as
        dockerd's local driver finds them by listing its directory."""
        for entry in os.scandir(self.root):
            if entry.name in self._cache or not entry.is_dir(follow_symlinks=False):
                continue
            if not _NAME_RE.match(entry.name) or not os.path.isdir(os.path.join(entry.path, "_data")):
                continue
            v = Volume(entry.name, DRIVER, None, None, os.stat(entry.path).st_ctime, False, self._data(entry.name))
            self._save(v)
            self._cache[v.name] = v
            log.warning("volume %s: directory without a record, adopted", v.name)

    def _save(self, v: Volume) -> None:
        self.records.save(VolumeRow(v.name, v.driver, v.labels, v.options, v.created, v.anonymous))

    # ---- queries ----------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        """Whether volume ``name`` exists."""
        return name in self._cache

    def get(self, name: str) -> Volume:
        """Volume ``name`` with its users (:class:`VolumeNotFound` when there is none)."""
        v = self._cache.get(name)
        if v is None:
            raise VolumeNotFound(name)
        v.users = self.users(name)
        return v

    def all(self) -> list[Volume]:
        """Every volume with its users, by name."""
        out = []
        for v in sorted(self._cache.values(), key=lambda v: v.name):
            v.users = self.users(v.name)
            out.append(v)
        return out

    def list(self, f: Filters | None = None) -> list[Volume]:
        """``GET /volumes``: dockerd's filters ``dangling``, ``name`` (a regular expression), ``driver``, ``label``."""
        f = f or Filters()
        f.validate(LIST_FILTERS)
        dangling: bool | None = None
        if f.contains("dangling"):
            dangling = f.get_bool_or_default("dangling", True)
        out = []
        for v in self.all():
            if dangling is not None and (not v.users) != dangling:
                continue
            if f.contains("name") and not f.match("name", v.name):
                continue
            if f.contains("driver") and not f.exact_match("driver", v.driver):
                continue
            if f.contains("label") and not f.match_kv_list("label", v.labels or {}):
                continue
            out.append(v)
        return out

    def size(self, name: str) -> int:
        """The apparent size of a volume's files."""
        return dir_size(self._data(name))

    # ---- create -----------------------------------------------------------------------------------------------
    def create(self, name: str = "", driver: str = "", options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> Volume:
        """``POST /volumes/create`` (and a container's volumes): the volume, made if it does not exist yet. As
        dockerd, a volume of that name that exists already is returned as it is, and ``create`` is published
        either way."""
        anonymous = not name
        if anonymous:
            name = os.urandom(32).hex()
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        self.check_create(name, driver, options)
        v = self._cache.get(name)
        if v is None:
            d = self._dir(name)
            try:
                d.mkdir(mode=VOLUMES_MODE, exist_ok=True)
                os.chmod(d, VOLUMES_MODE)
                self._data(name).mkdir(mode=0o755, exist_ok=True)
            except OSError as exc:
                raise SystemError_(f"create {name}: {exc}") from exc
            v = Volume(name, DRIVER, dict(labels) if labels else None, dict(options) if options else None,
                       time.time(), anonymous, self._data(name))
            try:
                self._save(v)
            except BaseException:
                shutil.rmtree(d, ignore_errors=True)
                raise
            self._cache[name] = v
        self.events.publish("volume", "create", name, {"driver": v.driver})
        v.users = self.users(name)
        return v

    def check_create(self, name: str, driver: str = "", options: dict[str, str] | None = None) -> None:
        """What :meth:`create` refuses, with dockerd's words, without making anything."""
        driver = driver or DRIVER
        if driver != DRIVER:
            raise NotFound(f"create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        if name in self._cache:
            return
        try:
            valid_volume_name(name)
            _valid_options(options or {})
        except InvalidArgument as exc:
            raise InvalidArgument(f"create {name}: {exc}") from None

    def hold(self, name: str) -> None:
        """A container being created is about to reference ``name``: it is in use from now on."""
        self._held[name] = self._held.get(name, 0) + 1

    def release(self, name: str) -> None:
        """Undo one :meth:`hold`."""
        n = self._held.get(name, 0) - 1
        if n > 0:
            self._held[name] = n
        else:
            self._held.pop(name, None)

    def _in_use(self, name: str, but: str = "") -> builtins.list[str]:
        users = [cid for cid in self.users(name) if cid != but]
        if self._held.get(name):
            users = users or ["(a container being created)"]
        return users

    # ---- remove / prune ---------------------------------------------------------------------------------------
    async def remove(self, name: str, *, force: bool = False, but: str = "") -> None:
        """``DELETE /volumes/{name}``: refused while a container (other than ``but``, the one being removed with
        its anonymous volumes) references it; a missing volume with ``force`` is not an error."""
        v = self._cache.get(name)
        if v is None:
            if force:
                return
            raise VolumeNotFound(name)
        users = self._in_use(name, but)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        await self._destroy(v)

    async def _destroy(self, v: Volume) -> None:
        self.records.delete(v.name)
        self._cache.pop(v.name, None)
        self._active.pop(v.name, None)
        d = self._dir(v.name)
        gone = self.root / f".rm-{v.name}-{os.urandom(4).hex()}"

        def drop() -> None:
            data = self._data(v.name)
            if is_mountpoint(data):
                unmount(data, detach=True)
            try:
                os.rename(d, gone)
            except FileNotFoundError:
                return
            shutil.rmtree(gone, ignore_errors=True)

        await asyncio.to_thread(drop)
        self.events.publish("volume", "destroy", v.name, {"driver": v.driver})

    async def prune(self, f: Filters | None = None, *, all_volumes: bool = False) -> tuple[builtins.list[str], int]:
        """``POST /volumes/prune``: the local volumes no container references, anonymous ones only unless
        ``all_volumes`` (API < 1.42, or the ``all`` filter); volumes with driver options are kept, as dockerd
        20.10 keeps them. Returns the names removed and the space reclaimed."""
        f = f or Filters()
        f.validate(PRUNE_FILTERS)
        if f.contains("all"):
            all_volumes = f.get_bool_or_default("all", False) or all_volumes
        deleted: list[str] = []
        reclaimed = 0
        with self._prune.hold():
            for v in list(self._cache.values()):
                if self._in_use(v.name) or v.options:
                    continue
                if not all_volumes and not v.anonymous and ANONYMOUS_LABEL not in (v.labels or {}):
                    continue
                if not f.match_labels(v.labels or {}):
                    continue
                size = await asyncio.to_thread(self.size, v.name)
                try:
                    await self._destroy(v)
                except Exception as exc:  # noqa: BLE001 - as dockerd: a volume that cannot go is left
                    log.warning("prune: removing volume %s: %s", v.name, exc)
                    continue
                deleted.append(v.name)
                reclaimed += size
        self.events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    # ---- mounts -----------------------------------------------------------------------------------------------
    def mount(self, name: str, cid: str) -> Path:
        """The host path a container bind mounts for volume ``name`` (mounting a volume with options first)."""
        v = self.get(name)
        data = self._data(name)
        if not data.is_dir():  # removed by hand: dockerd's local driver makes it again
            data.mkdir(mode=0o755, parents=True, exist_ok=True)
        if v.options:
            users = self._active.setdefault(name, set())
            if not is_mountpoint(data):
                opts = v.options
                words = tuple(w for w in (opts.get("o") or "").split(",") if w)
                try:
                    mount_all([Mount(opts.get("type", ""), opts.get("device", ""), words)], data)
                except SystemError_ as exc:
                    cause = exc.__cause__
                    why = (os.strerror(cause.errno) if isinstance(cause, OSError) and cause.errno else str(exc))
                    raise SystemError_(f"error while mounting volume '{data}': failed to mount local volume: mount "
                                       f"{opts.get('device', '')}:{data}, data: {opts.get('o', '')}: "
                                       f"{why.lower()}") from exc
            users.add(cid)
        return data

    def unmount(self, name: str, cid: str) -> None:
        """Container ``cid`` stopped using volume ``name``: a volume with options is unmounted after its last
        user."""
        users = self._active.get(name)
        if users is None:
            return
        users.discard(cid)
        if users:
            return
        del self._active[name]
        data = self._data(name)
        try:
            if is_mountpoint(data):
                unmount(data, detach=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("unmounting volume %s: %s", name, exc)

    def running(self, name: str, cid: str) -> None:
        """After a daemon restart: ``cid`` runs with volume ``name`` mounted (no mount, no event)."""
        v = self._cache.get(name)
        if v is not None and v.options:
            self._active.setdefault(name, set()).add(cid)

    def mounted(self, name: str, cid: str, destination: str, rw: bool, propagation: str) -> None:
        """Publish the ``mount`` event of a container's start."""
        self.events.publish("volume", "mount", name, {
            "container": cid, "destination": destination, "driver": DRIVER, "propagation": propagation,
            "read/write": "true" if rw else "false"})

    def unmounted(self, name: str, cid: str) -> None:
        """Publish the ``unmount`` event after a container's run."""
        self.events.publish("volume", "unmount", name, {"container": cid, "driver": DRIVER})


def _valid_options(opts: dict[str, str]) -> None:
    """The local driver's ``validateOpts``."""
    if not opts:
        return
    for key in opts:
        if key not in _VALID_OPTS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if "size" in opts:
        raise InvalidArgument("quota size requested but no quota support")
    for key in ("device", "type"):
        if not opts.get(key):
            raise InvalidArgument(f'missing required option: "{key}"')
