"""The engine's build service: the classic builder (:mod:`..builder`) wired to the engine's image store,
containers, snapshots, content store, registry and events, with what ``POST /build``, ``POST /build/prune`` and
``system df`` call."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..builder.dockerignore import IgnoreRules
from ..builder.executor import Builder
from ..builder.options import BuildOptions
from ..dockerfile import Node
from ..filters import Filters
from ..metadata.buildcache import BuildCacheStore
from ..progress import ProgressEvent
from .resources import verify_extra_hosts, verify_resources

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["BuildService"]


class BuildService:
    """Builds for the engine: one :class:`~..builder.executor.Builder` given the engine's services."""

    def __init__(self, engine: Engine) -> None:
        def pull(name: str, tag: str, platform: str) -> Awaitable[AsyncIterator[ProgressEvent]]:
            return engine.distribution.pull(name, tag, platform=platform)

        self.builder = Builder(root=engine.root, db=engine.db, content=engine.content,
                               snapshotter=engine.snapshotter, images=engine.images, containers=engine.containers,
                               pull=pull, events=engine.events, cache_store=BuildCacheStore(engine.db),
                               verify_extra_hosts=verify_extra_hosts, verify_resources=verify_resources)

    def shutdown(self) -> None:
        """The daemon is stopping: Dockerfile parses still running stop now (see :meth:`Builder.shutdown`)."""
        self.builder.shutdown()

    def cache_records(self) -> list[dict[str, Any]]:
        """The build cache's records, as ``system df`` lists them."""
        return self.builder.cache.records()

    async def prune(self, *, all: bool = False, filters: Filters | None = None, keep: int = 0, max_used: int = 0,
                    min_free: int = 0) -> tuple[list[str], int]:
        """``POST /build/prune``: the IDs of the records dropped and the bytes reclaimed."""
        return await self.builder.cache.prune(all=all, filters=filters, keep=keep, max_used=max_used,
                                              min_free=min_free)

    async def parse(self, dockerfile_text: bytes, name: str = "Dockerfile") -> tuple[list[Node], str]:
        """The Dockerfile's instructions, checked, parsed off the event loop (:meth:`Builder.parse`)."""
        return await self.builder.parse(dockerfile_text, name)

    async def build(self, root: Path, dockerfile_text: bytes, opts: BuildOptions,
                    ignore: IgnoreRules | None = None,
                    dockerfile_name: str = "Dockerfile") -> AsyncGenerator[ProgressEvent, None]:
        """The build's event stream, after the checks that fail it with HTTP 400 (:meth:`Builder.build`)."""
        return await self.builder.build(root, dockerfile_text, opts, ignore, dockerfile_name)
