"""Engine: opens a data root (lock, content store, metadata DB) and wires the services."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import IO

from .. import __version__
from ..content.store import ContentStore
from ..distribution import RegistryClient, RegistryHosts
from ..distribution.auth import AuthConfig
from ..errors import Unavailable
from ..metadata.containers import ContainerRecords
from ..metadata.db import MetadataDB
from ..metadata.gc import GCMetadata
from ..metadata.volumes import VolumeRecords
from ..network.service import NetworkService
from ..progress import ProgressEvent
from ..runtime import Runc
from ..snapshots import OverlaySnapshotter
from .archive import ArchiveService
from .build import BuildService
from .buildkit import BuildKitService
from .config import EngineConfig
from .containers.service import ContainersService
from .distribution import DistributionService
from .events import EventBus
from .exec import ExecService
from .gc import GarbageCollector
from .images.service import ImagesService
from .system import ENGINE_VERSION, SystemService
from .volumes import VolumesService

__all__ = ["Engine", "private_dir", "secure_layout"]

log = logging.getLogger("dockwright")

# dockerd's modes since its fix for CVE-2021-41091 (v20.10.9): the data root, containers/, containers/<id> and the
# overlay directory are 0710 root:root, so that no other user can reach a running container's rootfs (and run its
# set-user-ID binaries as root on the host); what only the daemon reads is 0700/0600.
DATA_ROOT_MODE = 0o710
CONTAINERS_MODE = 0o710  # containers/ and containers/<id>
PRIVATE_MODE = 0o700  # content/, tmp/, containers/<id>/bundle, the exec root
EXEC_ROOT_MODE = 0o700


def private_dir(path: Path, mode: int) -> None:
    """Create ``path`` (with its parents) with ``mode``, or set ``mode`` on the existing directory."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if (os.stat(path).st_mode & 0o7777) != mode:
        os.chmod(path, mode)


def secure_layout(root: Path, exec_root: Path) -> None:
    """Give a data root (new, or made by an older dockwright with 0755 directories) dockerd's modes: what the
    stores create themselves (content/, snapshots/, the databases) they fix on open."""
    private_dir(root / "tmp", PRIVATE_MODE)
    containers = root / "containers"
    private_dir(containers, CONTAINERS_MODE)
    for entry in os.scandir(containers):
        if entry.is_dir(follow_symlinks=False):
            private_dir(Path(entry.path), CONTAINERS_MODE)
            bundle = Path(entry.path) / "bundle"
            if bundle.is_dir():
                private_dir(bundle, PRIVATE_MODE)
    if exec_root.is_dir():
        private_dir(exec_root, EXEC_ROOT_MODE)


class Engine:
    """The image engine, usable in-process: ``Engine(EngineConfig(data_root=...))`` or ``Engine.open(path)``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        root = Path(config.data_root)
        private_dir(root, DATA_ROOT_MODE)
        self.root = root
        self._lock_file: IO[str] | None = self._lock(root)
        secure_layout(root, Path(config.exec_root))
        self.content = ContentStore(root / "content")
        self.db = MetadataDB(root / "metadata.db")
        self.events = EventBus()
        self.images = ImagesService(self.content, self.db, self.events, engine_version=ENGINE_VERSION,
                                    compression_level=config.compression_level, fsync=config.fsync)
        self.archive = ArchiveService(self.images, self.content, self.db, self.events, tmp_dir=root / "tmp",
                                      fsync=config.fsync, level=config.compression_level)
        self._distribution: DistributionService | None = None
        self.images.registry = lambda: self.distribution  # pull, through the registry side
        self.images.archives = self.archive  # save and load
        self.snapshotter = OverlaySnapshotter(root / "snapshots")
        self.network = NetworkService(config.network, root, Path(config.exec_root))
        container_records = ContainerRecords(self.db)
        volumes = VolumesService(root / "volumes", VolumeRecords(self.db), self.events)
        self.containers = ContainersService(root / "containers", records=container_records, db=self.db,
                                            images=self.images, events=self.events, content=self.content,
                                            snapshotter=self.snapshotter,
                                            runc=Runc(config.runtime, root=Path(config.exec_root) / "runc"),
                                            network=self.network, volumes=volumes)
        self.exec = ExecService(self.containers)

        def pull(name: str, tag: str, platform: str) -> Awaitable[AsyncIterator[ProgressEvent]]:
            return self.distribution.pull(name, tag, platform=platform)  # the registry side is made on first use

        self.build = BuildService(root, db=self.db, content=self.content, snapshotter=self.snapshotter,
                                  images=self.images, containers=self.containers, events=self.events, pull=pull)
        def bk_pull(name: str, tag: str, platform: str,
                    creds: tuple[str, str]) -> Awaitable[AsyncIterator[ProgressEvent]]:
            user, secret = creds
            auth = (AuthConfig(username=user, password=secret) if user
                    else AuthConfig(identitytoken=secret) if secret else None)
            return self.distribution.pull(name, tag, platform=platform, auth=auth)

        net = self.network.config
        self.buildkit = BuildKitService(root, Path(config.exec_root), db=self.db, content=self.content,
                                        snapshotter=self.snapshotter, images=self.images, pull=bk_pull,
                                        network=self.network, runtime=config.runtime,
                                        dns=(list(net.dns), list(net.dns_search), list(net.dns_opts)))
        self.system = SystemService(config, db=self.db, events=self.events, images=self.images,
                                    containers=self.containers, snapshotter=self.snapshotter,
                                    build_cache=lambda: self.build.cache_records() + self.buildkit.disk_usage())
        self.leases = self.images.leases
        self.gc = GarbageCollector(self.content, GCMetadata(self.db), self.leases, self.snapshotter,
                                   tmp_dir=root / "tmp")
        self.images.gc = self.gc
        # start-up recovery: stale mounts, the temporary area, every lease of a previous process, then a collection
        rep = self.gc.recover(root, Path(config.exec_root))
        self.startup_recovery = rep
        self.startup_report = rep.as_dict()
        (log.warning if not rep.empty else log.info)("startup recovery %s", rep.line())
        if rep.missing_blobs:
            log.error("startup check: %d blob(s) referenced by images are missing: %s",
                      len(rep.missing_blobs), ", ".join(rep.missing_blobs[:5]))

    async def start(self) -> None:
        """Work that needs the event loop at daemon start: the default bridge network, then the running
        containers found again (and the network of those that ended meanwhile released)."""
        private_dir(Path(self.config.exec_root), EXEC_ROOT_MODE)
        await self.network.start()
        await self.containers.recover()
        await self.buildkit.recover()

    @classmethod
    def open(cls, data_root: str | os.PathLike[str], **kwargs: object) -> Engine:
        """Open (creating it if need be) the data root ``data_root``; ``kwargs`` are :class:`EngineConfig`'s
        fields (``exec_root``, ``insecure_registries``, ``fsync``…)."""
        return cls(EngineConfig(data_root=Path(data_root), **kwargs))  # type: ignore[arg-type]

    @staticmethod
    def _lock(root: Path) -> IO[str]:
        fd = os.open(root / "dockwright.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        f = open(fd, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise Unavailable(f"data root {root} is in use by another dockwright process"
                              + (f" (pid {holder})" if holder else "")
                              + "; stop it or choose another --data-root") from exc
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        return f

    def close(self) -> None:
        """Close the stores and release the data root's lock."""
        try:
            self.snapshotter.close()
        except Exception:  # noqa: BLE001
            pass
        self.db.close()
        if self._lock_file is not None:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            finally:
                self._lock_file.close()
                self._lock_file = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def distribution(self) -> DistributionService:
        """The registry side (created on first use, inside the running event loop)."""
        if self._distribution is None:
            cfg = self.config
            hosts = RegistryHosts(mirrors=list(cfg.registry_mirrors), insecure=list(cfg.insecure_registries),
                                  mirrors_by_host=dict(cfg.registry_mirrors_by_host),
                                  certs_dirs=list(cfg.certs_dirs))
            client = RegistryClient(hosts, user_agent=f"docker/{ENGINE_VERSION} dockwright/{__version__}")
            self._distribution = DistributionService(self.images, self.content, self.db, self.events, client,
                                                     max_downloads=cfg.max_concurrent_downloads,
                                                     max_uploads=cfg.max_concurrent_uploads)
        return self._distribution

    async def aclose(self) -> None:
        """Close network clients and the spare shim (call from the event loop), then the stores."""
        await self.containers.runc.close()
        await self.network.close()
        if self._distribution is not None:
            await self._distribution.client.close()
            self._distribution = None
        self.close()

    @property
    def version(self) -> str:
        """dockwright's own version."""
        return __version__
