"""The typed results of the library API (``Image``, ``ImageSummary``, ``PullResult``…): what the engine's
services return to a Python program. The HTTP handlers render them into dockerd's JSON per API version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..oci.descriptor import Descriptor
from ..oci.platform import Platform

if TYPE_CHECKING:
    from .containers.record import Container as ContainerRecord
    from .volumes import Volume

__all__ = ["Image", "ImageSummary", "HistoryItem", "DeleteItem", "PruneReport", "PullResult", "PushResult",
           "SearchResult", "DistributionInspect", "Descriptor", "Platform",
           "VersionInfo", "SystemInfo", "IndexInfo", "DiskUsage", "ContainerDiskUsage", "VolumeDiskUsage",
           "Container", "ContainerState", "ContainerSummary", "RunResult"]


@dataclass(frozen=True, slots=True)
class Image:
    """An image in the store: its names, its configuration's main fields, and ``raw``, the whole configuration
    JSON. ``graph_driver`` names the unpacked layer directories (overlay2's), None while not unpacked."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    parent: str
    comment: str
    created: str | None  # the configuration's RFC 3339 ``created``, as written
    docker_version: str
    author: str
    architecture: str
    variant: str | None
    os: str
    os_version: str | None
    size: int
    config: dict[str, Any] | None  # the container defaults (``Cmd``, ``Env``, ``Labels``…), as stored
    layers: list[str]  # the DiffIDs, bottom first
    last_tag_time: str | None
    descriptor: Descriptor  # the manifest the image was stored (or pulled) with
    graph_driver: dict[str, str] | None = None
    container: str = ""  # legacy: the build container (a classic builder's commit)
    container_config: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def labels(self) -> dict[str, str]:
        """The image's labels (``config.Labels``), empty when it has none."""
        labels = (self.config or {}).get("Labels")
        return dict(labels) if isinstance(labels, dict) else {}

    @property
    def short_id(self) -> str:
        """The 12 hex digits ``docker images`` shows."""
        return self.id.split(":", 1)[-1][:12]


@dataclass(slots=True)
class ImageSummary:
    """An entry of the image list. ``shared_size`` and ``containers`` are -1 when not computed."""

    id: str
    parent_id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: int  # Unix seconds
    size: int
    shared_size: int
    labels: dict[str, str] | None
    containers: int
    descriptor: Descriptor
    created_f: float = field(default=0.0, repr=False)  # the precise creation time (the list's sort key)
    seq: int = field(default=0, repr=False)  # the store's insertion order (the tie-break)


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One entry of an image's history, newest first; ``id`` is ``<missing>`` for steps with no image here."""

    id: str
    created: int
    created_by: str
    tags: list[str] | None
    size: int
    comment: str


@dataclass(frozen=True, slots=True)
class DeleteItem:
    """One thing a removal did: a name removed (``untagged``) or an image or layer deleted (``deleted``)."""

    untagged: str | None = None
    deleted: str | None = None


@dataclass(slots=True)
class PruneReport:
    """What an image prune removed, and the bytes of layer data it freed."""

    deleted: list[DeleteItem] = field(default_factory=list)
    space_reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class PullResult:
    """A finished pull: the reference pulled, the image it names now, the manifest (or index) digest it was
    pulled by, and whether the pull changed what the reference names."""

    reference: str
    image: Image
    digest: str
    updated: bool


@dataclass(frozen=True, slots=True)
class PushResult:
    """A tag pushed: the tag, the digest of the manifest the registry has for it now, and its size."""

    tag: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A repository a registry's search found (Docker Hub's ``/v1/search``)."""

    name: str
    description: str
    star_count: int
    is_official: bool
    is_automated: bool = False  # deprecated by Docker Hub: always false


@dataclass(frozen=True, slots=True)
class DistributionInspect:
    """What a name resolves to in its registry: the manifest (or index) descriptor and the platforms it serves."""

    descriptor: Descriptor
    platforms: list[Platform]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """The engine's version facts (``docker version``): the Docker Engine release and API it speaks, its own."""

    version: str  # the Docker Engine release whose API this is
    api_version: str
    min_api_version: str
    dockwright_version: str
    python_version: str
    os: str
    arch: str
    kernel_version: str
    experimental: bool
    git_commit: str
    build_time: str


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """A registry's configuration: its mirrors and whether it is reached with TLS verified."""

    name: str
    mirrors: list[str]
    secure: bool
    official: bool


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """What ``docker info`` reports that varies: counts, host facts, the engine's configuration."""

    id: str
    name: str  # the host name
    containers: int
    containers_running: int
    containers_paused: int
    containers_stopped: int
    images: int
    driver: str
    docker_root_dir: str
    debug: bool
    experimental: bool
    labels: list[str]
    server_version: str
    kernel_version: str
    operating_system: str
    os_version: str
    architecture: str
    ncpu: int
    mem_total: int
    cgroup_version: str
    nfd: int
    n_events_listener: int
    system_time: str
    http_proxy: str
    https_proxy: str
    no_proxy: str
    runtime_path: str  # the OCI runtime (``runc``) binary
    insecure_registry_cidrs: list[str]
    index_configs: dict[str, IndexInfo]
    mirrors: list[str]


@dataclass(frozen=True, slots=True)
class ContainerDiskUsage:
    """A container and the disk it uses: its own layer (``size_rw``), and that plus its image's layers."""

    container: ContainerRecord
    size_rw: int
    size_root_fs: int


@dataclass(frozen=True, slots=True)
class VolumeDiskUsage:
    """A volume, how many containers use it, and its size in bytes."""

    volume: Volume
    ref_count: int
    size: int


@dataclass(slots=True)
class DiskUsage:
    """``docker system df``: each kind is None when not asked for."""

    layers_size: int = 0
    images: list[ImageSummary] | None = None
    containers: list[ContainerDiskUsage] | None = None
    volumes: list[VolumeDiskUsage] | None = None
    build_cache: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class ContainerState:
    """A container's state when it was read: its status word (``created``, ``running``, ``paused``,
    ``exited``…), its process, its exit code and its RFC 3339 start and finish times."""

    status: str
    running: bool
    paused: bool
    exit_code: int
    pid: int
    error: str
    oom_killed: bool
    started_at: str
    finished_at: str


@dataclass(frozen=True, slots=True)
class Container:
    """A container (``engine.containers.inspect()``): its names, image, command, state, labels, and the
    configuration and host configuration it was created with (dockerd's ``Config`` and ``HostConfig``)."""

    id: str
    name: str
    image: str  # the image as it was named at create
    image_id: str
    command: list[str]  # the entrypoint and the command, as run
    created: str  # RFC 3339 with nanoseconds
    state: ContainerState
    labels: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    host_config: dict[str, Any] = field(default_factory=dict, repr=False)
    mounts: list[dict[str, Any]] = field(default_factory=list, repr=False)  # its mount points

    @property
    def short_id(self) -> str:
        """The 12 hex digits ``docker ps`` shows."""
        return self.id[:12]


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    """An entry of ``engine.containers.list()``."""

    id: str
    name: str
    image: str
    image_id: str
    command: str  # the entrypoint and command joined, as ``docker ps`` shows it
    created: int  # Unix seconds
    status: str  # the status word of its state
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class RunResult:
    """``engine.containers.run()``: the container (as it was when the run returned); when not detached, its
    exit code and its output (stdout and stderr interleaved as written), else None and empty."""

    container: Container
    exit_code: int | None
    logs: bytes
