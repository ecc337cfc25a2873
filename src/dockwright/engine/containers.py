"""The containers service: create/start/wait/stop/restart/kill/pause/rename/remove/prune, top, logs, changes, export
and commit.

A container is a writable overlay snapshot on top of its image's layer chain (snapshots made lazily from the
stored compressed blobs), plus an OCI bundle run detached by runc through a small shim that keeps the logs and
the exit code, so containers survive a daemon restart. Records live in the metadata database.

Its mounts are dockerd's mount points, decided at create and stored with the container: ``Binds`` and ``Mounts``
(bind mounts and named or anonymous volumes of the volumes service), then an anonymous volume for each path of
the image's (and the request's) ``Volumes`` that nothing else mounts; a new (empty) volume gets the image's files
at its path, as dockerd copies them. Volumes are bind mounted at start (``mount`` / ``unmount`` events) and the
anonymous ones go with the container on ``rm -v`` and auto-removal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal as _signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, AsyncIterator, Callable, Coroutine

from ..content.store import ContentStore
from ..dockerfile import apply_changes
from ..errors import Conflict, ContainerNotFound, ImageNotFound, InvalidArgument, NotFound, SystemError_
from ..filters import Filters
from ..layers.apply import ensure_chain
from ..layers.diff import changes as diff_changes
from ..layers.diff import write_layer_from_upper
from ..metadata.db import LayerRecord, MetadataDB
from ..network.endpoint import Attachment
from ..network.ports import requested_ports
from ..network.service import NetworkNotFound, NetworkService
from ..oci import mediatypes as mt
from ..oci.config import container_config
from ..oci.gojson import go_dumps, parse_rfc3339, rfc3339_nano
from ..runtime import ContainerSpec, Runc, build_bundle, read_json_log
from ..runtime.bundle import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS
from ..runtime.users import resolve_in_root
from ..snapshots import OverlaySnapshotter, is_mountpoint, mount_all, unmount
from ..timestamps import parse_timestamp
from .events import EventBus
from .images import ImagesService
from .resources import verify_extra_hosts, verify_resources
from .volumes import VolumesService, bind_daemon_root, image_volume, parse_bind, parse_mount

__all__ = ["ContainersService", "Container"]

log = logging.getLogger("dockwright.containers")

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    image_id TEXT NOT NULL,
    image_ref TEXT NOT NULL,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    host_config TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
"""
_NETWORK_COLUMN = "ALTER TABLE containers ADD COLUMN network TEXT NOT NULL DEFAULT ''"
_MOUNTS_COLUMN = "ALTER TABLE containers ADD COLUMN mounts TEXT NOT NULL DEFAULT ''"

_ADJ = ["admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly", "keen",
        "loving", "modest", "nifty", "optimistic", "quirky", "relaxed", "serene", "tender", "upbeat", "vibrant"]
_NAMES = ["albattani", "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper", "turing", "lovelace",
          "noether", "pascal", "ritchie", "shannon", "tesla", "wozniak", "yalow", "zhukovsky", "kepler", "mendel"]
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

SIGNALS = {name[3:]: int(getattr(_signal, name)) for name in dir(_signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(_signal, name), int)}


def parse_signal(s: str | int | None, default: int = 15) -> int:
    if s is None or s == "":
        return default
    if isinstance(s, int):
        return s
    t = str(s).upper().removeprefix("SIG")
    if t.isdigit():
        return int(t)
    if t in SIGNALS:
        return SIGNALS[t]
    raise InvalidArgument(f"Invalid signal: {s}")


@dataclass
class Container:
    id: str
    name: str
    image_id: str
    image_ref: str
    created: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    network: Attachment | None = None  # its endpoint (operational fields empty while it is not running)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # mount points (engine.volumes' records)

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    @property
    def status(self) -> str:
        return str(self.state.get("Status", "created"))


def _new_state() -> dict[str, Any]:
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
            "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z"}


def merge_config(image_cfg: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """dockerd's container config from the create request over the image config (daemon.merge)."""
    out = dict(req)
    img = image_cfg or {}
    if not out.get("User"):
        out["User"] = img.get("User", "")
    if not out.get("ExposedPorts") and img.get("ExposedPorts"):
        out["ExposedPorts"] = img.get("ExposedPorts")
    env = list(img.get("Env") or [])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in out.get("Env") or []:
        k = e.split("=", 1)[0]
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    out["Env"] = env
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = img.get("Cmd")
        out["Entrypoint"] = img.get("Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = img.get("WorkingDir", "")
    labels = dict(img.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    if not out.get("Volumes") and img.get("Volumes"):
        out["Volumes"] = img.get("Volumes")
    for key in ("StopSignal", "Healthcheck"):  # not OnBuild nor Shell: dockerd's container has neither
        if not out.get(key) and img.get(key):
            out[key] = img.get(key)
    return out


class ContainersService:
    def __init__(self, root: Path, exec_root: Path, db: MetadataDB, images: ImagesService, events: EventBus,
                 content: ContentStore, snapshotter: OverlaySnapshotter, *, runtime_binary: str = "runc",
                 network: NetworkService, volumes: VolumesService | None = None) -> None:
        self.root = root
        self.exec_root = exec_root
        self.db = db
        self.images = images
        self.events = events
        self.content = content
        self.snapshotter = snapshotter
        self.runtime_binary = runtime_binary
        self.network = network
        self.runc = Runc(runtime_binary, root=exec_root / "runc")
        root.mkdir(parents=True, exist_ok=True)
        self._created: dict[str, asyncio.Event] = {}
        self._pending_attach: dict[str, list[asyncio.Event]] = {}
        self._finished: dict[str, tuple[float, int]] = {}
        self._removed: dict[str, tuple[float, int]] = {}
        self._runtime_gone: set[str] = set()  # deleted from runc already (after their exit)
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.query("PRAGMA table_info(containers)")}
        if "network" not in columns:
            db.executescript(_NETWORK_COLUMN)  # a data root of a version before networking
        if "mounts" not in columns:
            db.executescript(_MOUNTS_COLUMN)  # a data root of a version before volumes
        # the volumes service (<data-root>/volumes beside containers/ unless the engine gives one)
        self.volumes = volumes if volumes is not None else VolumesService(root.parent / "volumes", db, events)
        self.volumes.users = self.volume_users
        self._prune_running = False
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
        rows = self.db.query("SELECT id, name, image_id, image_ref, created, config, host_config, state, network, "
                             "mounts FROM containers")
        out = []
        for r in rows:
            cols: list[dict[str, Any]] = []
            problems: list[str] = []
            for label, text in (("config", r[5]), ("host config", r[6]), ("state", r[7])):
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError):
                    value = None
                if not isinstance(value, dict):
                    problems.append(f"its {label} is not a JSON object")
                    value = {}
                cols.append(value)
            c = Container(r[0], r[1], r[2], r[3], r[4], cols[0], cols[1], cols[2] or _new_state())
            try:
                c.network = Attachment.from_json(json.loads(r[8])) if r[8] else None
            except (ValueError, TypeError, KeyError, AttributeError):
                problems.append("its network attachment is unreadable")
            try:
                mounts = json.loads(r[9]) if r[9] else []
                c.mounts = [m for m in mounts if isinstance(m, dict)] if isinstance(mounts, list) else []
            except ValueError:
                problems.append("its mounts are unreadable")
            if not c.mounts and (c.host_config.get("Binds") or c.host_config.get("Mounts")):
                c.mounts = _legacy_mounts(c)  # a record of a version before volumes: its bind mounts
                problems.append("its mount points derived from its Binds and Mounts")
            problems += _repair(c)
            if problems:
                log.warning("container %s: stored record repaired: %s", c.id, "; ".join(problems))
                try:
                    self._save(c)
                except Exception as exc:  # noqa: BLE001 - repaired in memory; the next save stores it
                    log.warning("container %s: saving the repaired record: %s", c.id, exc)
            out.append(c)
        return out

    def _save(self, c: Container) -> None:
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO containers(id, name, image_id, image_ref, created, config, "
                         "host_config, state, network, mounts) VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (c.id, c.name, c.image_id, c.image_ref, c.created, json.dumps(c.config),
                          json.dumps(c.host_config), json.dumps(c.state),
                          json.dumps(c.network.to_json()) if c.network is not None else "",
                          json.dumps(c.mounts) if c.mounts else ""))

    def usage(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.running) for c in self._cache.values() if c.image_id == image_id]

    def volume_users(self, name: str) -> list[str]:
        """The containers (any state) whose mounts reference volume ``name``."""
        return [c.id for c in self._cache.values()
                if any(m.get("Type") == "volume" and m.get("Name") == name for m in c.mounts)]

    def all(self) -> list[Container]:
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

    # ---- create -----------------------------------------------------------------------------------------------
    async def create(self, body: dict[str, Any], name: str = "", platform: str = "") -> tuple[str, list[str]]:
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
            if not _NAME_RE.match(name):
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
                name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
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
        c = Container(cid, name, rec.id, image_ref, rfc3339_nano(), cfg, host_config, _new_state())
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
            with self.db.tx() as conn:
                conn.execute("DELETE FROM containers WHERE id=?", (cid,))
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
        layers = [(chain, (lambda d=digest: self.content.open(d))) for _, chain, digest in (full.layers if full else [])]
        top = await asyncio.to_thread(ensure_chain, self.snapshotter, layers, sync=False) if layers else None
        await asyncio.to_thread(self.snapshotter.prepare, c.id, top)

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

    # ---- start / exit -----------------------------------------------------------------------------------------
    def _spec(self, c: Container, rootfs: Path,
              binds: list[tuple[str | Path, str, bool, str]] | None = None) -> ContainerSpec:
        """The runtime's view of a run; ``binds`` are the container's mounts with each volume's host path."""
        cfg, hc = c.config, c.host_config
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        if not args:
            raise InvalidArgument("no command specified")
        mode = hc.get("NetworkMode") or "default"
        return ContainerSpec(
            id=c.id, rootfs=rootfs, args=args, env=list(cfg.get("Env") or []), cwd=cfg.get("WorkingDir") or "/",
            user=cfg.get("User") or "", hostname=cfg.get("Hostname") or c.id[:12],
            domainname=cfg.get("Domainname") or "", tty=bool(cfg.get("Tty")), open_stdin=bool(cfg.get("OpenStdin")),
            network_mode=mode, binds=list(binds or []), readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            cgroupns=str(hc.get("CgroupnsMode") or ""),
            tmpfs=[(str(m.get("Destination")), str(m.get("TmpfsData") or "")) for m in c.mounts
                   if m.get("Type") == "tmpfs"] + [(str(k), str(v or "")) for k, v in (hc.get("Tmpfs") or {}).items()],
            memory=int(hc.get("Memory") or 0), memory_swap=int(hc.get("MemorySwap") or 0),
            cpu_shares=int(hc.get("CpuShares") or 0), shm_size=int(hc.get("ShmSize") or 0),
            labels=dict(cfg.get("Labels") or {}), extra_hosts=list(hc.get("ExtraHosts") or []),
            # the container's own DNS settings, else the daemon's (--dns, --dns-search, --dns-opt)
            dns=list(hc.get("Dns") or self.network.config.dns),
            dns_search=list(hc.get("DnsSearch") or self.network.config.dns_search),
            dns_options=list(hc.get("DnsOptions") or self.network.config.dns_opts))

    async def start(self, ref: str) -> bool:
        """Start; False when it was already running (HTTP 304). A removal waits for a start in progress (as
        dockerd's container lock); a failed start of an AutoRemove container removes it."""
        c = self.get(ref)
        failed: Exception | None = None
        async with self._lock:
            if c.running:
                return False
            if c.id in self._removing or c.id not in self._cache:
                raise Conflict("container is marked for removal and cannot be started")
            starting = self._starting[c.id] = asyncio.Event()
            try:
                await self._start_locked(c)
            except Exception as exc:
                failed = exc
            finally:
                del self._starting[c.id]
                starting.set()
        if failed is not None:
            if c.host_config.get("AutoRemove") and c.id in self._cache and c.id not in self._removing:
                try:
                    await self.remove(c.id, force=True, volumes=True)
                except (ContainerNotFound, Conflict):
                    pass
                except Exception as e:  # noqa: BLE001
                    log.warning("auto-remove of %s failed: %s", c.id, e)
            raise failed
        self._event(c, "start")
        return True

    async def _start_locked(self, c: Container) -> None:
        rootfs = await self._mount(c)
        bundle = self._bundle(c)
        if bundle.exists():  # a restart: clear what the last run left
            if c.id not in self._runtime_gone and await self.runc.state(c.id):
                await self.runc.delete(c.id, force=True)
            shutil.rmtree(bundle, ignore_errors=True)
        self._runtime_gone.discard(c.id)
        att: Attachment | None = None
        mounted: list[str] = []
        if (c.host_config.get("NetworkMode") or "default") in ("default", "bridge") \
                and self.network.config.bridge == "none":
            c.config["NetworkDisabled"] = True  # dockerd's connectToNetwork with the bridge disabled (-b none)
        try:
            binds = self._mount_volumes(c, mounted)
            spec = self._spec(c, rootfs, binds)
            hc = c.host_config
            att = await self.network.connect(c.id, c.name, spec.network_mode, exposed=c.config.get("ExposedPorts"),
                                             port_bindings=hc.get("PortBindings"),
                                             publish_all=bool(hc.get("PublishAllPorts")))
            if att is not None and att.network == "bridge":
                spec.netns_path, spec.ip_address = att.sandbox_key, att.ip_address
            spec.host_gateway_ip = self.network.host_gateway_ip
            await asyncio.to_thread(build_bundle, spec, bundle)
            await self.runc.create(c.id, bundle, log_path=self._log_path(c), stdin=spec.open_stdin)
        except Exception as exc:
            await self._disconnect(c, att)
            self._unmount_volumes(c, mounted, events=False)
            await self._unmount(c)
            self._start_failed(c, exc)
            raise
        created = self._created.setdefault(c.id, asyncio.Event())
        created.set()
        pending = self._pending_attach.get(c.id)
        if pending:  # let `docker run`'s attach connect before the process runs
            try:
                await asyncio.wait_for(asyncio.gather(*[p.wait() for p in pending]), 5)
            except asyncio.TimeoutError:
                pass
        try:
            await self.runc.start(c.id)
        except Exception as exc:
            try:
                await self.runc.delete(c.id, force=True)
            except Exception:  # noqa: BLE001
                pass
            self._runtime_gone.add(c.id)
            await self._disconnect(c, att)
            self._unmount_volumes(c, mounted)
            await self._unmount(c)
            self._start_failed(c, exc)
            raise
        c.network = att if att is not None else self.network.detached(c.host_config.get("NetworkMode") or "default")
        st = await self.runc.state(c.id)
        c.state.update({"Status": "running", "Running": True, "Paused": False, "Pid": int((st or {}).get("pid", 0)),
                        "ExitCode": 0, "Error": "", "StartedAt": rfc3339_nano(),
                        "FinishedAt": "0001-01-01T00:00:00Z"})
        self._save(c)
        ev = self._exit_events.get(c.id)
        if ev is None or ev.is_set():  # keep the event a wait(next-exit) sent before start waits on
            self._exit_events[c.id] = asyncio.Event()
        self._watchers[c.id] = asyncio.ensure_future(self._watch(c))

    def _mount_volumes(self, c: Container, mounted: list[str]) -> list[tuple[str | Path, str, bool, str]]:
        """The bind mounts of a run: each volume mounted (``mount`` event), its name added to ``mounted``."""
        binds: list[tuple[str | Path, str, bool, str]] = []
        for mp in c.mounts:
            dest, ro = str(mp.get("Destination") or ""), not mp.get("RW", True)
            if mp.get("Type") == "volume":
                path = self.volumes.mount(str(mp.get("Name")), c.id)
                mounted.append(str(mp.get("Name")))
                self.volumes.mounted(str(mp.get("Name")), c.id, dest, not ro, str(mp.get("Propagation") or ""))
                binds.append((path, dest, ro, "rprivate"))
            elif mp.get("Type") == "bind":
                binds.append((str(mp.get("Source") or ""), dest, ro, str(mp.get("Propagation") or "rprivate")))
        return binds

    def _unmount_volumes(self, c: Container, names: list[str] | None = None, *, events: bool = True) -> None:
        """A run is over: its volumes are released (``unmount`` events, as dockerd's after ``die``)."""
        if names is None:
            names = [str(m.get("Name")) for m in c.mounts if m.get("Type") == "volume"]
        for name in names:
            try:
                self.volumes.unmount(name, c.id)
            except Exception as exc:  # noqa: BLE001
                log.warning("releasing volume %s of %s: %s", name, c.id, exc)
            if events:
                self.volumes.unmounted(name, c.id)

    async def _disconnect(self, c: Container, att: Attachment | None) -> None:
        """Release the container's endpoint (its exit, or a start that failed after connecting); never raises."""
        try:
            await self.network.disconnect(c.id, att)
        except Exception as exc:  # noqa: BLE001
            log.warning("releasing the network of %s: %s", c.id, exc)

    def _start_failed(self, c: Container, exc: Exception) -> None:
        """As dockerd: the error is recorded, exit code 127 for a command not found (126 otherwise), waiters and
        attaches released (start() then removes an AutoRemove container)."""
        msg = str(exc)
        code = 127 if ("not found" in msg or "no such file" in msg.lower()) else 126
        c.state.update({"Running": False, "ExitCode": code, "Error": msg})  # Status stays created (or exited)
        self._finished[c.id] = (time.time(), code)
        self._save(c)
        ev = self._exit_events.get(c.id)
        if ev is not None:
            ev.set()
        created = self._created.pop(c.id, None)
        if created is not None:
            created.set()  # pending attaches wake up and fail to connect: their streams end

    async def _watch(self, c: Container) -> None:
        try:
            status = await self.runc.wait_exit(c.id, bundle=self._bundle(c))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lost shim: the container is gone
            log.warning("waiting for container %s failed: %s", c.id, exc)
            status = None
        await self._exited(c, status)

    async def _exited(self, c: Container, status: Any) -> None:
        """The container's init has exited (its output is all in the log). As dockerd's handleContainerExit:
        clean up first (runc's state, the rootfs mount), then publish the exit — state, exit event, ``die`` — in
        one step with no await in between, so that whoever sees the container stopped (``wait``, ``logs``,
        ``ps``, ``rm``) also finds its exit event set. The publication also happens when this task is cancelled
        during the clean-up; then an AutoRemove container is removed."""
        try:
            try:
                await self.runc.delete(c.id, force=True)
                self._runtime_gone.add(c.id)
            except ContainerNotFound:
                self._runtime_gone.add(c.id)
            except Exception as exc:  # noqa: BLE001
                log.warning("deleting container %s from the runtime: %s", c.id, exc)
            await self._disconnect(c, c.network)
            try:
                await self._unmount(c)
            except Exception as exc:  # noqa: BLE001
                log.warning("unmounting the rootfs of %s: %s", c.id, exc)
        finally:
            self._publish_exit(c, status)
            self._unmount_volumes(c)
        if c.host_config.get("AutoRemove") and c.id in self._cache and c.id not in self._removing:
            try:
                await self.remove(c.id, force=True, volumes=True)
            except (ContainerNotFound, Conflict):
                pass  # removed meanwhile, or being removed by a request
            except Exception as exc:  # noqa: BLE001
                log.warning("auto-remove of %s failed: %s", c.id, exc)

    def _publish_exit(self, c: Container, status: Any) -> None:
        """Record a container's exit and wake everyone waiting for it. Synchronous on purpose: nothing can run
        between the state change and the exit event."""
        code = int(status.exit_code) if status is not None else 255
        c.state.update({"Status": "exited", "Running": False, "Paused": False, "Pid": 0, "ExitCode": code,
                        "OOMKilled": bool(getattr(status, "oom_killed", False)),
                        "FinishedAt": rfc3339_nano()})
        self._finished[c.id] = (time.time(), code)
        if c.network is not None:
            c.network = self.network.detached(c.host_config.get("NetworkMode") or "default", c.network)
        if self._watchers.get(c.id) is asyncio.current_task():
            del self._watchers[c.id]
        self._created.pop(c.id, None)
        ev = self._exit_events.get(c.id)
        if ev is not None:
            ev.set()
        try:
            self._save(c)
        except Exception as exc:  # noqa: BLE001 - the exit is known in memory; the next one saves it
            log.warning("saving the state of %s: %s", c.id, exc)
        self._event(c, "die", {"exitCode": str(code)})
        for hook in list(self.exit_hooks):
            try:
                hook(c)
            except Exception as exc:  # noqa: BLE001
                log.warning("exit hook for %s: %s", c.id, exc)

    async def recover(self) -> None:
        """After a daemon restart: find running containers again, or record how they ended; then the network
        service publishes the survivors' ports again and releases everything else."""
        alive: dict[str, tuple[str, Attachment]] = {}
        for c in list(self._cache.values()):
            if not c.running:
                continue
            st = await self.runc.state(c.id)
            if st and st.get("status") in ("running", "paused", "created"):
                c.state["Paused"] = st.get("status") == "paused"
                self._exit_events[c.id] = asyncio.Event()
                self._watchers[c.id] = asyncio.ensure_future(self._watch(c))
                for mp in c.mounts:
                    if mp.get("Type") == "volume":
                        self.volumes.running(str(mp.get("Name")), c.id)
                if c.network is not None:
                    alive[c.id] = (c.name, c.network)
                continue
            status = self.runc.exit_status(self._bundle(c))
            await self._exited(c, status)
        await self.network.recover({cid: v for cid, v in alive.items() if self._cache.get(cid) is not None
                                    and self._cache[cid].running})

    # ---- wait / stop / kill / pause ---------------------------------------------------------------------------
    def wait(self, ref: str, condition: str = "not-running") -> Coroutine[Any, Any, dict[str, Any]]:
        """``{"StatusCode": …, "Error": …}`` once ``condition`` holds. The waiter is registered by this call,
        before the returned awaitable runs (as dockerd registers it before answering the request's headers), so
        an exit that follows the call is never missed. Errors (no such container, bad condition) raise here."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        try:
            c = self.get(ref)
        except ContainerNotFound:
            gone = self._removed.get(ref)
            if condition == "removed" and gone and time.time() - gone[0] < _REMOVED_MEMORY:
                return _value({"StatusCode": gone[1], "Error": None})
            raise
        recent = self._finished.get(c.id)
        if condition in ("", "not-running") and not c.running:
            return _value({"StatusCode": c.state.get("ExitCode", 0), "Error": None})
        if condition == "next-exit" and not c.running and recent and time.time() - recent[0] < 2:
            return _value({"StatusCode": recent[1], "Error": None})  # exited just before this request arrived
        if condition == "removed":
            return self._wait_removed(c, self._removed_events.setdefault(c.id, asyncio.Event()))
        ev = self._exit_events.setdefault(c.id, asyncio.Event())
        if ev.is_set() and condition == "next-exit":
            ev = self._exit_events[c.id] = asyncio.Event()
        return self._wait_exit(c, ev)

    @staticmethod
    async def _wait_exit(c: Container, ev: asyncio.Event) -> dict[str, Any]:
        await ev.wait()  # set by the exit, or by the removal (as dockerd's waiters end when a container goes)
        return {"StatusCode": c.state.get("ExitCode", 0), "Error": None}

    async def _wait_removed(self, c: Container, ev: asyncio.Event) -> dict[str, Any]:
        await ev.wait()
        code = int(c.state.get("ExitCode", 0))
        if c.id in self._cache:  # the removal failed (dockerd's SetRemovalError)
            return {"StatusCode": code, "Error": {"Message": str(c.state.get("Error") or "removal failed")}}
        return {"StatusCode": code, "Error": None}

    async def kill(self, ref: str, signal: str | int | None = None) -> None:
        """Send a signal. SIGKILL (the default) answers once the exit is recorded, as dockerd's ``Kill`` (wait
        for not-running, 10 s; then SIGKILL again and 2 s more); any other signal answers at once, the
        container may go on running. A container that is not running is a conflict; one that is exiting
        already (the runtime no longer has a process to signal) is not an error, as dockerd."""
        c = self.get(ref)
        sig = parse_signal(signal, _signal.SIGKILL)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if sig != _signal.SIGKILL:
            try:
                await self.runc.kill(c.id, sig)
            except (Conflict, ContainerNotFound):
                log.debug("kill %s with signal %d: it is exiting already", c.id, sig)
            self._event(c, "kill", {"signal": str(sig)})
            return
        ev = self._exit_events.setdefault(c.id, asyncio.Event())  # this run's: set when its exit is recorded
        paused = bool(c.state.get("Paused"))
        try:
            await self.runc.kill(c.id, sig, all=True)
        except (Conflict, ContainerNotFound):
            paused = False  # exiting already: its watcher records the exit
        if paused:  # the signal is delivered once the processes thaw (dockerd unpauses after the kill)
            try:
                await self.runc.resume(c.id)
            except Exception as exc:  # noqa: BLE001
                log.debug("resuming %s after SIGKILL: %s", c.id, exc)
        self._event(c, "kill", {"signal": str(sig)})
        await self._wait_recorded_exit(c, ev)

    async def _wait_recorded_exit(self, c: Container, ev: asyncio.Event) -> None:
        """After SIGKILL: until the exit is recorded (dockerd: 10 s, then SIGKILL again and 2 s more)."""
        try:
            await asyncio.wait_for(ev.wait(), 10)
            return
        except asyncio.TimeoutError:
            log.error("container %s failed to exit within 10 seconds of kill - trying SIGKILL again", c.id)
        try:
            await self.runc.kill(c.id, _signal.SIGKILL, all=True)
        except (Conflict, ContainerNotFound):
            pass
        try:
            await asyncio.wait_for(ev.wait(), 2)
        except asyncio.TimeoutError:
            raise SystemError_("tried to kill container, but did not receive an exit event") from None

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> bool:
        """Stop; False when it was not running (HTTP 304)."""
        c = self.get(ref)
        if not c.running:
            return False
        sig = parse_signal(signal or c.config.get("StopSignal"), _signal.SIGTERM)
        t = 10 if timeout is None else timeout
        ev = self._exit_events.setdefault(c.id, asyncio.Event())
        if c.state.get("Paused"):
            try:
                await self.runc.resume(c.id)
            except (Conflict, ContainerNotFound):
                pass
        try:
            await self.runc.kill(c.id, sig)
        except (Conflict, ContainerNotFound):
            pass  # exiting already: its exit event comes
        self._event(c, "kill", {"signal": str(sig)})  # as dockerd's stop: the stop signal, then SIGKILL if need be
        try:
            if t >= 0:
                await asyncio.wait_for(ev.wait(), t)
            else:
                await ev.wait()
        except asyncio.TimeoutError:
            try:
                await self.runc.kill(c.id, _signal.SIGKILL, all=True)
            except (Conflict, ContainerNotFound):
                pass
            self._event(c, "kill", {"signal": str(int(_signal.SIGKILL))})
            await self._wait_recorded_exit(c, ev)
        self._event(c, "stop")
        return True

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is already paused")
        try:
            await self.runc.pause(c.id)
        except ContainerNotFound:
            raise Conflict(f"Container {c.id} is not running") from None
        except SystemError_:
            if not c.running or (await self.runc.state(c.id) or {}).get("status") != "running":
                raise Conflict(f"Container {c.id} is not running") from None  # it exited meanwhile
            raise
        c.state.update({"Paused": True, "Status": "paused"})
        self._save(c)
        self._event(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if not c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is not paused")
        try:
            await self.runc.resume(c.id)
        except ContainerNotFound:
            raise Conflict(f"Container {c.id} is not running") from None
        c.state.update({"Paused": False, "Status": "running"})
        self._save(c)
        self._event(c, "unpause")

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
        ev = self._exit_events.setdefault(c.id, asyncio.Event())
        if c.state.get("Paused"):
            try:
                await self.runc.resume(c.id)
            except (Conflict, ContainerNotFound):
                pass
        try:
            await self.runc.kill(c.id, _signal.SIGKILL, all=True)
        except (Conflict, ContainerNotFound):
            pass  # it is exiting already: its watcher publishes the exit
        try:
            await asyncio.wait_for(ev.wait(), 30)
        except asyncio.TimeoutError:
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
        with self.db.tx() as conn:
            conn.execute("DELETE FROM containers WHERE id=?", (c.id,))
        # from here on nothing awaits: the container is gone for everyone at once
        self._cache.pop(c.id, None)
        now = time.time()
        for key, (when, _) in list(self._removed.items()):
            if now - when > _REMOVED_MEMORY:
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

    # ---- restart / rename / top / prune -----------------------------------------------------------------------
    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        """dockerd's ContainerRestart: stop a running container (as ``stop``), start it, ``restart`` event. Any
        failure after the lookup is dockerd's 500 ``Cannot restart container <ref>: …``."""
        c = self.get(ref)
        try:
            if c.running:
                auto = c.host_config.get("AutoRemove")
                c.host_config["AutoRemove"] = False  # as dockerd: not removed by the exit of its restart
                try:
                    await self.stop(c.id, timeout, signal)
                finally:
                    c.host_config["AutoRemove"] = auto
            await self.start(c.id)
        except Exception as exc:
            raise SystemError_(f"Cannot restart container {ref}: {exc}") from exc
        self._event(c, "restart")

    def rename(self, ref: str, new_name: str) -> None:
        """dockerd's ContainerRename, with its errors; ``rename`` event with ``oldName``."""
        if not ref or not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        if not new_name.startswith("/"):
            new_name = "/" + new_name
        c = self.get(ref)
        old = "/" + c.name
        if old == new_name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        bare = new_name[1:]
        if not _NAME_RE.match(bare):
            raise InvalidArgument(f"Error when allocating new name: Invalid container name ({new_name}), only "
                                  f"[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        holder = next((o.id for o in self._cache.values() if o.name == bare), None) or self._names_in_use.get(bare)
        if holder is not None:
            raise Conflict(f'Error when allocating new name: Conflict. The container name "{new_name}" is already '
                           f'in use by container "{holder}". You have to remove (or rename) that container to be '
                           f"able to reuse that name.")
        c.name = bare
        try:
            self._save(c)
        except BaseException:
            c.name = old[1:]
            raise
        self.images._changed()  # noqa: SLF001
        self.network.rename(c.id, bare)
        self._event(c, "rename", {"oldName": old})

    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        """dockerd's ContainerTop: the host's ``ps`` (``-ef`` by default) restricted to the processes of the
        container's cgroup; ``Titles`` and ``Processes`` parsed as dockerd parses them. ``top`` event."""
        ps_args = ps_args or "-ef"
        for k, v in re.findall(r"\s+([^\s]*)=\s*(PID[^\s]*)", ps_args):
            if k != "pid":
                raise SystemError_(f'specifying "{k}={v}" is not allowed')
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = await self._pids(c)
        args = ps_args.split(" ")
        proc = await asyncio.create_subprocess_exec("ps", *args, "-q", ",".join(str(p) for p in pids),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:  # some ps options (f) cannot go with -q: again without it
            proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            if proc.returncode != 0:
                line = err.decode(errors="replace").split("\n", 1)[0]
                raise SystemError_(f"ps: {line or f'exit status {proc.returncode}'}")
        result = parse_ps_output(out.decode(errors="replace"), pids)
        self._event(c, "top")
        return result

    async def _pids(self, c: Container) -> list[int]:
        """The processes of the container's cgroup (its ``cgroup.procs``, found from its init's
        ``/proc/<pid>/cgroup``); what ``runc ps`` says when that cannot be read."""
        pid = int(c.state.get("Pid") or 0)
        pids = await asyncio.to_thread(_cgroup_pids, pid) if pid else None
        if pids is None:
            code, out, err = await self.runc._run("ps", "--format", "json", c.id)  # noqa: SLF001
            if code != 0:
                raise SystemError_(f"listing the processes of {c.id}: {err.strip()}")
            pids = [int(p) for p in json.loads(out or b"[]") or []]
        return pids

    async def prune(self, f: Filters | None = None) -> dict[str, Any]:
        """dockerd's ContainersPrune: every container that is not running (``until``, ``label``, ``label!``),
        removed without its volumes; the space is their writable layers'. ``prune`` event."""
        f = f or Filters()
        f.validate(("until", "label", "label!"))
        until: float | None = None
        if f.contains("until"):
            vals = f.get("until")
            if len(vals) > 1:
                raise InvalidArgument("more than one until filter specified")
            until = parse_timestamp(vals[0], time.time())
        if self._prune_running:
            raise Conflict("a prune operation is already running")
        self._prune_running = True
        deleted: list[str] = []
        reclaimed = 0
        try:
            for c in self.all():
                if c.running or c.id in self._removing or c.id not in self._cache:
                    continue
                if until is not None and (parse_rfc3339(c.created) or 0) > until:
                    continue
                labels = c.config.get("Labels") or {}
                if not f.match_kv_list("label", labels):
                    continue
                if f.contains("label!") and f.match_kv_list("label!", labels):
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
        finally:
            self._prune_running = False
        self.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def graph_driver(self, c: Container) -> dict[str, Any]:
        """dockerd's overlay2 ``GraphDriver``: the container's real snapshot directories (the lower layers, top
        first; the rootfs mount; its own upper and work directories)."""
        try:
            upper = self.snapshotter.upper_dir(c.id)
            lowers = self.snapshotter.lower_dirs(c.id)
        except Exception:  # noqa: BLE001 - no snapshot (removed meanwhile)
            return {"Data": None, "Name": "overlay2"}
        data: dict[str, str] = {}
        if lowers:
            data["LowerDir"] = ":".join(str(p) for p in lowers)
        data["MergedDir"] = str(self._rootfs(c))
        data["UpperDir"] = str(upper)
        data["WorkDir"] = str(upper.parent / "work")
        return {"Data": data, "Name": "overlay2"}

    # ---- the rootfs for file operations (docker cp: engine.container_fs) ------------------------------------
    @contextlib.asynccontextmanager
    async def rootfs_for_files(self, ref: str) -> AsyncIterator[tuple[Container, Path]]:
        """The container and its root file system mounted, for a file operation (``docker cp``), as dockerd's
        ``daemon.Mount`` for one: a stopped container's is mounted for the operation and unmounted after the last
        one ends (unless it was started meanwhile); while one runs, an exit leaves the rootfs mounted and a
        removal waits for it."""
        c = self.get(ref)
        if c.id in self._removing:
            raise Conflict(f"removal of container {ref} is already in progress")
        self._file_ops[c.id] = self._file_ops.get(c.id, 0) + 1
        try:
            if c.running:
                rootfs = self._rootfs(c)
            else:
                async with self._lock:  # not while a start mounts it
                    rootfs = await self._mount(c)
            yield c, rootfs
        finally:
            left = self._file_ops[c.id] - 1
            if left:
                self._file_ops[c.id] = left
            else:
                del self._file_ops[c.id]
                try:
                    async with self._lock:
                        if not c.running and c.id not in self._file_ops:
                            await self._unmount(c)
                except Exception as exc:  # noqa: BLE001
                    log.warning("unmounting the rootfs of %s after a file operation: %s", c.id, exc)
                finally:
                    over = self._file_ops_over.pop(c.id, None)
                    if over is not None:
                        over.set()

    # ---- logs / attach / changes / export ---------------------------------------------------------------------
    def logs(self, ref: str, *, stdout: bool = True, stderr: bool = True, since: float | None = None,
             until: float | None = None, tail: int | None = None, timestamps: bool = False,
             follow: bool = False) -> AsyncIterator[tuple[int, bytes]]:
        """The container's log lines as ``(stream, line)``. Everything is settled by this call, before the
        iteration starts: the log file is opened (a removal that follows cannot take the output away) and, with
        ``follow``, the stream is tied to this run's exit event, so it ends once the container has stopped (or
        is removed) and all it wrote has been read, as dockerd's."""
        c = self.get(ref)
        if follow and c.running:
            stop = self._exit_events.setdefault(c.id, asyncio.Event())  # set by this run's exit, with no gap
        else:
            stop = asyncio.Event()
            stop.set()
        path = self._log_path(c)
        try:
            source: Path | IO[bytes] = open(path, "rb")  # noqa: SIM115 - read_json_log closes it
        except FileNotFoundError:
            source = path  # never started: nothing yet (follow waits for the file until the exit event)
        return _log_lines(read_json_log(source, stdout=stdout, stderr=stderr, since=since, until=until, tail=tail,
                                        timestamps=timestamps, follow=follow, stop=stop))

    def reserve_attach(self, ref: str) -> asyncio.Event | None:
        """Called before the hijack is answered: a start that follows waits for this attach to connect."""
        c = self.get(ref)
        if c.running:
            return None
        if c.state.get("Status") not in ("created", "exited"):
            raise Conflict("You cannot attach to a stopped container, start it first")
        connected = asyncio.Event()
        self._pending_attach.setdefault(c.id, []).append(connected)
        return connected

    async def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool,
                     ticket: asyncio.Event | None = None) -> Any:
        """An attachment to the container's streams; before start it waits for the start (as `docker run`)."""
        c = self.get(ref)
        if ticket is None and not c.running:
            ticket = self.reserve_attach(ref)
        try:
            if ticket is not None:
                created = self._created.setdefault(c.id, asyncio.Event())
                await created.wait()
            return await self.runc.attach(c.id, stdin=stdin, stdout=stdout, stderr=stderr,
                                          stdin_once=bool(c.config.get("StdinOnce")))
        finally:
            if ticket is not None:
                ticket.set()
                lst = self._pending_attach.get(c.id, [])
                if ticket in lst:
                    lst.remove(ticket)

    async def changes(self, ref: str) -> list[tuple[int, str]]:
        c = self.get(ref)
        upper = self.snapshotter.upper_dir(c.id)
        lowers = self.snapshotter.lower_dirs(c.id)
        return await asyncio.to_thread(diff_changes, upper, lowers)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        c = self.get(ref)
        was_mounted = is_mountpoint(self._rootfs(c))
        rootfs = await self._mount(c)
        # names as dockerd's export writes them: "bin/sh", not "./bin/sh" (hard link targets too)
        top = sorted(await asyncio.to_thread(os.listdir, rootfs))
        proc = await asyncio.create_subprocess_exec("tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf",
                                                    "-", *(["--", *top] if top else ["-T", "/dev/null"]),
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)

        async def gen() -> AsyncIterator[bytes]:
            try:
                assert proc.stdout is not None
                while True:
                    chunk = await proc.stdout.read(1 << 20)
                    if not chunk:
                        break
                    yield chunk
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                if not was_mounted and not c.running:
                    await self._unmount(c)
            self._event(c, "export")
        return gen()

    # ---- commit -----------------------------------------------------------------------------------------------
    async def commit(self, ref: str, *, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     pause: bool = True, changes: list[str] | None = None,
                     config: dict[str, Any] | None = None) -> str:
        c = self.get(ref)
        if c.id in self._removing:
            raise Conflict(f"You cannot commit container {c.id} which is being removed")
        held = asyncio.Event()  # a removal (an auto-remove after the exit too) waits until the commit is done
        self._committing.setdefault(c.id, []).append(held)
        try:
            async with self.images.operation("commit"):  # leases its layer blob and the parent's until the image exists
                return await self._commit(c.id, repo=repo, tag=tag, comment=comment, author=author, pause=pause,
                                          changes=changes, config=config)
        finally:
            held.set()
            holders = self._committing.get(c.id, [])
            if held in holders:
                holders.remove(held)
            if not holders:
                self._committing.pop(c.id, None)

    async def _commit(self, ref: str, *, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                      pause: bool = True, changes: list[str] | None = None,
                      config: dict[str, Any] | None = None) -> str:
        c = self.get(ref)
        target = self.images.import_target(repo, tag)
        base_cfg = config if config else c.config
        new_cfg = apply_changes(dict(base_cfg), list(changes or []))
        new_cfg = _merge_missing(new_cfg, c.config)
        paused_here = False
        if c.running and pause and not c.state.get("Paused"):
            try:  # as dockerd: a pause that fails (the container stopped meanwhile) is ignored
                await self.runc.pause(c.id)
                paused_here = True
            except Exception as exc:  # noqa: BLE001
                log.debug("commit of %s without pausing it: %s", c.id, exc)
        writer = self.content.writer()
        try:
            upper = self.snapshotter.upper_dir(c.id)
            res = await asyncio.to_thread(write_layer_from_upper, upper, writer)
            digest = await asyncio.to_thread(writer.commit, res.digest, res.size)
        except BaseException:
            writer.abort()
            raise
        finally:
            if paused_here:
                try:
                    await self.runc.resume(c.id)
                except Exception as exc:  # noqa: BLE001 - killed while paused: nothing to resume
                    log.debug("resuming %s after its commit: %s", c.id, exc)
        self.images.lease(digest)
        try:
            parent = self.db.get_image(c.image_id, with_layers=True)
            if parent is None:
                raise ImageNotFound(c.image_id)
            parent_cfg = self.images.config_of(parent).data
            empty = res.diff_id == EMPTY_LAYER_DIFF_ID
            now = rfc3339_nano()
            diff_ids = list((parent_cfg.get("rootfs") or {}).get("diff_ids") or [])
            if not empty:
                diff_ids.append(res.diff_id)
            hist = list(parent_cfg.get("history") or [])
            h: dict[str, Any] = {"created": now}
            if author:
                h["author"] = author
            h["created_by"] = " ".join(c.config.get("Cmd") or [])
            if comment:
                h["comment"] = comment
            if empty:
                h["empty_layer"] = True
            hist.append(h)
            top: dict[str, Any] = {
                "architecture": parent_cfg.get("architecture", ""), "config": container_config(new_cfg),
                "container": c.id, "container_config": container_config(c.config), "created": now,
                "docker_version": self.images.engine_version, "history": hist, "os": parent_cfg.get("os", "linux"),
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
            if author:
                top["author"] = author
            if comment:
                top["comment"] = comment
            if parent_cfg.get("variant"):
                top["variant"] = parent_cfg["variant"]
            raw = go_dumps(dict(sorted(top.items())))
            layers = []
            for _, _, dg in parent.layers:
                lr = self.db.get_layer(dg)
                if lr is None:
                    raise ImageNotFound(c.image_id, f"layer {dg} of image {c.image_id} is missing")
                layers.append(lr)
            if not empty:
                layers.append(LayerRecord(digest, res.diff_id, mt.DOCKER_LAYER, res.size, res.diff_size,
                                          res.tar_size))
            image_id, _ = await self.images.commit_image(raw, layers, parent=parent.id,
                                                         tags=[target] if target else [])
        finally:
            self.images.release(digest)
        if empty:
            await self.images.collect({digest})
        self._event(c, "commit", {"comment": comment})
        if target is not None:
            self.images._log(image_id, target.familiar(), "tag")  # noqa: SLF001
        return image_id


def _legacy_mounts(c: Container) -> list[dict[str, Any]]:
    """The bind mounts of a container stored before mount points were (older versions only ran bind mounts)."""
    out = []
    for raw in c.host_config.get("Binds") or []:
        try:
            mp = parse_bind(str(raw))
        except Exception as exc:  # noqa: BLE001
            log.warning("container %s: bind %r dropped: %s", c.id, raw, exc)
            continue
        if mp["Type"] == "bind":
            out.append(mp)
    for m in c.host_config.get("Mounts") or []:
        if isinstance(m, dict) and (m.get("Type") or "bind") == "bind":
            try:
                out.append(parse_mount({**m, "Type": "bind"}))
            except Exception as exc:  # noqa: BLE001
                log.warning("container %s: mount %r dropped: %s", c.id, m, exc)
    return out


def _cgroups_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def host_config_defaults(hc: dict[str, Any]) -> dict[str, Any]:
    """What dockerd fills in a container's HostConfig at create (adaptContainerSettings and the daemon's
    defaults), on the values the request did not set: ``ShmSize`` 64 MiB, ``IpcMode`` private, ``CgroupnsMode``
    (private on cgroup v2, host on v1), ``Runtime`` runc, ``LogConfig`` json-file, ``OomKillDisable`` false,
    ``ConsoleSize`` [0, 0] and, unless privileged, the default masked and read-only paths; a ``MemorySwappiness``
    of -1 and a ``PidsLimit`` of 0 or less (unlimited) are null."""
    if not hc.get("ShmSize"):
        hc["ShmSize"] = 67108864
    if not hc.get("IpcMode"):
        hc["IpcMode"] = "private"
    if not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "private" if _cgroups_v2() else "host"
    if not hc.get("Runtime"):
        hc["Runtime"] = "runc"
    lc = dict(hc.get("LogConfig") or {})
    if not lc.get("Type"):
        lc["Type"] = "json-file"
    if lc.get("Config") is None:
        lc["Config"] = {}
    hc["LogConfig"] = lc
    if hc.get("OomKillDisable") is None:
        hc["OomKillDisable"] = False
    if not hc.get("ConsoleSize"):
        hc["ConsoleSize"] = [0, 0]
    if not hc.get("Privileged"):
        if hc.get("MaskedPaths") is None:
            hc["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if hc.get("ReadonlyPaths") is None:
            hc["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    if hc.get("MemorySwappiness") == -1:  # the CLI's "unset"
        hc["MemorySwappiness"] = None
    if isinstance(hc.get("PidsLimit"), int) and hc["PidsLimit"] <= 0:  # unlimited
        hc["PidsLimit"] = None
    return hc


def _cgroup_pids(pid: int) -> list[int] | None:
    """The PIDs in the cgroup of process ``pid``: its ``pids`` (or another v1) controller's ``cgroup.procs``, or
    the unified hierarchy's; None when none can be read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    candidates: list[Path] = []
    v1: dict[str, str] = {}
    unified = ""
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            unified = parts[2]
            continue
        for ctrl in parts[1].split(","):
            v1[ctrl] = parts[2]
        v1[parts[1]] = parts[2]
    for ctrl in ("pids", "memory", "cpu,cpuacct", "cpu", "freezer", "devices"):
        if ctrl in v1:
            candidates.append(root / ctrl / v1[ctrl].lstrip("/"))
    if unified:
        candidates += [root / unified.lstrip("/"), root / "unified" / unified.lstrip("/")]
    for d in candidates:
        try:
            text = (d / "cgroup.procs").read_text()
        except OSError:
            continue
        pids = [int(x) for x in text.split()]
        if pid in pids:
            return pids
    return None


def parse_ps_output(output: str, pids: list[int]) -> dict[str, Any]:
    """dockerd's parsePSOutput: titles from the first line; the lines of the container's PIDs (and the thread
    lines, PID ``-``, that follow one), the last column taking the rest of the line."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise SystemError_("Couldn't find PID field in ps output")
    idx = titles.index("PID")
    wanted = set(pids)
    processes: list[list[str]] = []
    contained = False
    for line in lines[1:]:
        if not line:
            continue
        fields = _fields(line)
        if len(fields) <= idx:
            continue
        if fields[idx] == "-":
            if contained:
                processes.append(_process(fields, len(titles)))
            continue
        try:
            p = int(fields[idx])
        except ValueError:
            raise SystemError_(f"Unexpected pid '{fields[idx]}': strconv.Atoi: parsing \"{fields[idx]}\": "
                               f"invalid syntax") from None
        contained = p in wanted
        if contained:
            processes.append(_process(fields, len(titles)))
    return {"Processes": processes, "Titles": titles}


def _fields(line: str) -> list[str]:
    return [f for f in re.split(r"[\t\n\f\r ]+", line) if f]


def _process(fields: list[str], n: int) -> list[str]:
    return fields[:n - 1] + [" ".join(fields[n - 1:])]


# The types the engine (and the list/inspect shapes) rely on in a stored record: what the API's typed decoding
# guarantees for every new one. A value of another type in an old record is dropped (a string where a StrSlice
# is expected becomes a one-element list, as dockerd decodes it).
_RECORD_TYPES: dict[str, dict[str, str]] = {
    "config": {
        "Cmd": "strslice", "Entrypoint": "strslice", "Shell": "strslice", "Env": "strings", "OnBuild": "strings",
        "Labels": "labels", "ExposedPorts": "object", "Volumes": "object", "Healthcheck": "object",
        "User": "str", "WorkingDir": "str", "Hostname": "str", "Domainname": "str", "Image": "str",
        "StopSignal": "str", "MacAddress": "str", "Tty": "bool", "OpenStdin": "bool", "StdinOnce": "bool",
        "AttachStdin": "bool", "AttachStdout": "bool", "AttachStderr": "bool", "ArgsEscaped": "bool",
        "NetworkDisabled": "bool", "StopTimeout": "int",
    },
    "host_config": {
        "Binds": "strings", "ExtraHosts": "strings", "Dns": "strings", "DnsSearch": "strings",
        "DnsOptions": "strings", "VolumesFrom": "strings", "Links": "strings", "GroupAdd": "strings",
        "SecurityOpt": "strings", "CapAdd": "strslice", "CapDrop": "strslice", "Mounts": "objects",
        "Memory": "int", "MemorySwap": "int", "CpuShares": "int", "ShmSize": "int", "NanoCpus": "int",
        "NetworkMode": "str", "AutoRemove": "bool", "ReadonlyRootfs": "bool", "Privileged": "bool",
        "RestartPolicy": "object", "LogConfig": "object", "PortBindings": "object", "Sysctls": "labels",
        "Tmpfs": "labels",
    },
}


def _fits(kind: str, v: Any) -> bool:
    if v is None:
        return True
    if kind in ("strings", "strslice"):
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "labels":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if kind == "object":
        return isinstance(v, dict)
    if kind == "objects":
        return isinstance(v, list) and all(isinstance(x, dict) for x in v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    return isinstance(v, int) and not isinstance(v, bool)  # int


def _repair(c: Container) -> list[str]:
    """Make a stored record fit :data:`_RECORD_TYPES`; what was changed, for the log."""
    problems = []
    for part, types in _RECORD_TYPES.items():
        d: dict[str, Any] = getattr(c, part)
        for key, kind in types.items():
            v = d.get(key)
            if _fits(kind, v):
                continue
            if kind == "strslice" and isinstance(v, str):
                d[key] = [v]
                problems.append(f"{part}.{key} {v!r} made a list")
            else:
                del d[key]
                problems.append(f"{part}.{key} {_short(v)} dropped (not {kind})")
    if not isinstance(c.state.get("Status", ""), str) or not isinstance(c.state.get("ExitCode", 0), int):
        c.state = {**_new_state(), "Status": "exited", "ExitCode": 255}
        problems.append("its state was unreadable: recorded as exited (255)")
    return problems


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_REMOVED_MEMORY = 30.0  # seconds a removed container's exit code is still told to `wait --condition removed`

EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def _merge_missing(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """daemon/commit.go merge: fields unset in the commit config come from the container's config."""
    out = dict(new)
    for k in ("User", "Cmd", "Entrypoint", "WorkingDir", "Env", "ExposedPorts", "Volumes", "Labels", "OnBuild",
              "StopSignal", "Healthcheck", "Shell"):
        if not out.get(k) and old.get(k):
            out[k] = old[k]
    return out


async def _value(value: dict[str, Any]) -> dict[str, Any]:
    return value


async def _log_lines(entries: AsyncIterator[Any]) -> AsyncIterator[tuple[int, bytes]]:
    async for entry in entries:
        yield entry.stream, entry.line
