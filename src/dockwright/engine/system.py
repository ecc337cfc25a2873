"""The system service: version, info and disk usage — facts about the engine and the host, as typed results
(``VersionInfo``, ``SystemInfo``, ``DiskUsage``); ``api/system`` renders dockerd's JSON."""

from __future__ import annotations

import os
import platform
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..metadata.db import MetadataDB
from ..oci.gojson import rfc3339_nano
from ..oci.platform import host_platform
from ..snapshots import OverlaySnapshotter
from .config import EngineConfig
from .containers.service import ContainersService
from .events import EventBus
from .images.service import ImagesService
from .types import ContainerDiskUsage, DiskUsage, IndexInfo, SystemInfo, VersionInfo, VolumeDiskUsage

__all__ = ["SystemService", "ENGINE_VERSION", "API_VERSION", "MIN_API_VERSION"]

# The Docker Engine release whose API we speak; reported as the server version (with our own in Components).
ENGINE_VERSION = "28.5.2"
API_VERSION = "1.51"
MIN_API_VERSION = "1.24"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_release() -> tuple[str, str]:
    name, version = "Linux", ""
    try:
        with open("/etc/os-release") as f:
            kv = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        name = kv.get("PRETTY_NAME", name).strip('"')
        version = kv.get("VERSION_ID", "").strip('"')
    except OSError:
        pass
    return name, version


class SystemService:
    """Facts about the engine and its host: versions, ``info``, disk usage."""

    def __init__(self, config: EngineConfig, *, db: MetadataDB, events: EventBus, images: ImagesService,
                 containers: ContainersService, snapshotter: OverlaySnapshotter,
                 build_cache: Callable[[], list[dict[str, Any]]]) -> None:
        self.config = config
        self.root = Path(config.data_root)
        self._db, self._events, self._images = db, events, images
        self._containers, self._snapshotter, self._build_cache = containers, snapshotter, build_cache
        self.started = time.time()
        id_file = self.root / "engine-id"
        if not id_file.exists():
            id_file.write_text(str(uuid.uuid4()))
        self.id = id_file.read_text().strip()

    def version(self) -> VersionInfo:
        """``docker version``: the Docker Engine release and API spoken, dockwright's own version, the host's."""
        return VersionInfo(
            version=ENGINE_VERSION, api_version=API_VERSION, min_api_version=MIN_API_VERSION,
            dockwright_version=__version__, python_version=platform.python_version(), os="linux",
            arch=host_platform().architecture, kernel_version=platform.uname().release,
            experimental=self.config.experimental, git_commit="dockwright",
            build_time="2026-11-01T00:00:00.000000000+00:00")

    def info(self) -> SystemInfo:
        """``docker info``: container and image counts, the host, the engine's configuration."""
        cfg = self.config
        os_name, os_version = _os_release()
        uname = platform.uname()
        mirrors = [m if m.endswith("/") else m + "/" for m in cfg.registry_mirrors]
        insecure_cidrs = ["127.0.0.0/8", "::1/128"]
        index_configs = {"docker.io": IndexInfo("docker.io", mirrors, secure=True, official=True)}
        for reg in cfg.insecure_registries:
            if "/" in reg:
                insecure_cidrs.append(reg)
            else:
                index_configs[reg] = IndexInfo(reg, [], secure=False, official=False)
        total, running, paused, stopped = self._containers.counts()
        return SystemInfo(
            id=self.id, name=socket.gethostname(), containers=total, containers_running=running,
            containers_paused=paused, containers_stopped=stopped, images=self._db.counts(), driver="overlay2",
            docker_root_dir=str(self.root), debug=cfg.debug, experimental=cfg.experimental, labels=list(cfg.labels),
            server_version=ENGINE_VERSION, kernel_version=uname.release, operating_system=os_name,
            os_version=os_version, architecture=uname.machine, ncpu=os.cpu_count() or 1, mem_total=_mem_total(),
            cgroup_version="2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
            nfd=len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0,
            n_events_listener=self._events.listeners, system_time=rfc3339_nano(),
            http_proxy=os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
            https_proxy=os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
            no_proxy=os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
            runtime_path=cfg.runtime, insecure_registry_cidrs=insecure_cidrs, index_configs=index_configs,
            mirrors=mirrors)

    def container_size(self, container_id: str, image_id: str) -> tuple[int, int]:
        """dockerd's GetContainerLayerSize: ``SizeRw`` is the apparent size of the files in the container's own
        layer (pkg/directory.Size: non-directories, each inode once, so an unstarted container's is 0) and
        ``SizeRootFs`` that plus the size of the image's layers. (0, 0) when the container has no layer (any
        more)."""
        sn = self._snapshotter
        try:
            size_rw = sn.usage(container_id).apparent_size
            parent = sn.stat(container_id).parent
        except Exception:  # noqa: BLE001 - removed meanwhile: dockerd logs and reports nothing
            return 0, 0
        if parent is None:
            return size_rw, 0
        rec = self._db.get_image(image_id)
        if rec is not None:
            return size_rw, rec.size + size_rw
        below = 0  # the image is gone (removed with -f): its layers are still the container's
        try:
            while parent is not None:
                below += sn.usage(parent).apparent_size
                parent = sn.stat(parent).parent
        except Exception:  # noqa: BLE001
            return size_rw, -1
        return size_rw, below + size_rw

    def df(self, types: list[str] | None = None) -> DiskUsage:
        """``docker system df``: the disk images, containers, volumes and the build cache use (``types``: which
        of ``image``, ``container``, ``volume``, ``build-cache``; all by default)."""
        want = set(types or ["container", "image", "volume", "build-cache"])
        images = self._images
        out = DiskUsage()
        if "image" in want:
            out.layers_size = images.layers_size()
            out.images = images.list(all=False, shared_size=True, container_count=True)
        if "container" in want:
            out.containers = [ContainerDiskUsage(c, *self.container_size(c.id, c.image_id))
                              for c in self._containers.all()]
        if "volume" in want:  # as dockerd: not those with mount options
            vols = self._containers.volumes
            out.volumes = [VolumeDiskUsage(v, len(v.users), vols.size(v.name)) for v in vols.all() if not v.options]
        if "build-cache" in want:
            out.build_cache = [{k: v for k, v in r.items() if not k.startswith("_")}
                               for r in self._build_cache()]
        return out
