"""What the builder needs from the services above it, as typed protocols: the image store (resolve, commit, tag,
remove, leases), the containers a RUN step runs in, a pull, the event bus and dockerd's checks of a RUN's
resources. The engine's services satisfy them; the builder never imports the engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .. import reference as refs
from ..metadata.db import ImageRecord, LayerRecord
from ..oci.config import ImageConfig
from ..progress import ProgressEvent

__all__ = ["BuildImages", "BuildContainers", "Identified", "Pull", "Publisher", "VerifyExtraHosts",
           "VerifyResources"]


class BuildImages(Protocol):
    """The image store as the builder uses it (the engine's ``ImagesService``)."""

    @property
    def engine_version(self) -> str:
        """The ``docker_version`` written into image configs."""

    @property
    def container_usage(self) -> Callable[[str], list[tuple[str, bool]]]:
        """The containers using an image (an empty list: none)."""

    def operation(self, kind: str) -> AbstractAsyncContextManager[Any]:
        """A lease held for an operation (``build``) while the context is entered."""

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """The image a reference or ID names; raises ``ImageNotFound``."""

    def config_of(self, rec: ImageRecord) -> ImageConfig:
        """An image's config."""

    async def commit_image(self, config_raw: bytes, layers: list[LayerRecord], *,
                           parent: str = "") -> tuple[str, list[str]]:
        """Write an image from its config and stored layers: (image ID, the tags that moved to it)."""

    async def tag(self, image: str, target: refs.Reference) -> None:
        """Tag an image."""

    async def remove(self, name: str, *, force: bool = False, prune: bool = True) -> object:
        """Remove an image (``docker rmi``)."""

    async def collect(self, blobs: set[str] | None = None) -> None:
        """Collect blobs nothing holds any more."""

    def blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        """A stored blob, chunk by chunk."""


class Identified(Protocol):
    """Something with an ``id`` (a container)."""

    @property
    def id(self) -> str:
        """The full ID."""


class BuildContainers(Protocol):
    """The containers service as a RUN step (and a kept metadata step's container) uses it."""

    async def create(self, body: dict[str, Any], name: str = "", platform: str = "") -> tuple[str, list[str]]:
        """``POST /containers/create``: (ID, warnings)."""

    async def start(self, ref: str) -> bool:
        """Start a container."""

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container."""

    def reserve_attach(self, ref: str) -> asyncio.Event | None:
        """Reserve an attachment before the start, so that no output is lost."""

    async def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool,
                     ticket: asyncio.Event | None = None) -> Any:
        """An attachment to the container's streams: ``(stream, bytes)`` pairs, then ``close()``."""

    def wait(self, ref: str, condition: str = "not-running") -> Awaitable[dict[str, Any]]:
        """``{"StatusCode": …}`` once ``condition`` holds."""

    def get(self, ref: str) -> Identified:
        """A container by reference."""


#: ``pull(name, tag, platform)``: the pull's events (the base image of a FROM that is not stored, or ``--pull``).
Pull = Callable[[str, str, str], Awaitable[AsyncIterator[ProgressEvent]]]


class Publisher(Protocol):
    """The event bus (``docker events``)."""

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> object:
        """Publish one event."""


class VerifyExtraHosts(Protocol):
    """dockerd's check of ``--add-host`` values (``ValidateExtraHost``)."""

    def __call__(self, hosts: list[str]) -> None:
        """Raise ``InvalidArgument`` for a bad ``host:ip``."""


class VerifyResources(Protocol):
    """dockerd's checks of a container's resources when it creates the container (a RUN step's, here)."""

    def __call__(self, *, memory: int = 0, memswap: int = 0, cpuperiod: int = 0, cpuquota: int = 0,
                 cpusetcpus: str = "", cpusetmems: str = "", shmsize: int = 0) -> None:
        """Raise ``InvalidArgument`` with dockerd's message for a value it refuses."""
