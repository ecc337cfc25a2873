"""The containers service: create/start/wait/stop/kill/pause/remove, logs, changes, export and commit.

A container is a writable overlay snapshot on top of its image's layer chain (snapshots made lazily from the
stored compressed blobs), plus an OCI bundle run detached by runc through a small shim that keeps the logs and
the exit code, so containers survive a daemon restart. Records live in the metadata database.
"""

from __future__ import annotations

import asyncio
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
from typing import Any, AsyncIterator

from .. import reference as refs
from ..build.changes import apply_changes
from ..errors import Conflict, ContainerNotFound, ImageNotFound, InvalidArgument, NotFound
from ..metadata.db import LayerRecord, MetadataDB
from ..oci import mediatypes as mt
from ..oci.config import container_config
from ..oci.gojson import go_dumps, rfc3339_nano
from .events import EventBus
from .images import ImagesService

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
    for key in ("StopSignal", "Healthcheck", "OnBuild", "Shell"):
        if not out.get(key) and img.get(key):
            out[key] = img.get(key)
    return out


class ContainersService:
    def __init__(self, root: Path, exec_root: Path, db: MetadataDB, images: ImagesService, events: EventBus, *,
                 runtime_binary: str = "runc") -> None:
        self.root = root
        self.exec_root = exec_root
        self.db = db
        self.images = images
        self.events = events
        self.runtime_binary = runtime_binary
        root.mkdir(parents=True, exist_ok=True)
        db.executescript(SCHEMA)
        self._cache: dict[str, Container] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._exit_events: dict[str, asyncio.Event] = {}
        self._removed_events: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        for c in self._load_all():
            self._cache[c.id] = c
        images.container_usage = self.usage

    # ---- records ----------------------------------------------------------------------------------------------
    def _load_all(self) -> list[Container]:
        rows = self.db.query("SELECT id, name, image_id, image_ref, created, config, host_config, state FROM containers")
        return [Container(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), json.loads(r[7]))
                for r in rows]

    def _save(self, c: Container) -> None:
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO containers(id, name, image_id, image_ref, created, config, "
                         "host_config, state) VALUES (?,?,?,?,?,?,?,?)",
                         (c.id, c.name, c.image_id, c.image_ref, c.created, json.dumps(c.config),
                          json.dumps(c.host_config), json.dumps(c.state)))

    def usage(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.running) for c in self._cache.values() if c.image_id == image_id]

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
        else:
            taken = {c.name for c in self._cache.values()}
            while True:
                name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
                if name not in taken:
                    break
        cid = os.urandom(32).hex()
        host_config = dict(body.get("HostConfig") or {})
        req = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        cfg = merge_config(self.images.config_of(rec).config, req)
        cfg["Image"] = image_ref
        if not cfg.get("Hostname"):
            cfg["Hostname"] = cid[:12]
        if not cfg.get("Cmd") and not cfg.get("Entrypoint"):
            raise InvalidArgument("no command specified")
        c = Container(cid, name, rec.id, image_ref, rfc3339_nano(), cfg, host_config, _new_state())
        self._dir(cid).mkdir(parents=True, exist_ok=True)
        await self._prepare_rootfs(c, rec)
        self._save(c)
        self._cache[cid] = c
        self.images._changed()  # noqa: SLF001 - container counts are part of the image list
        self._event(c, "create")
        return cid, []

    async def _prepare_rootfs(self, c: Container, rec: Any) -> None:
        raise NotImplementedError

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        raise NotImplementedError
