"""What a BuildKit build's result becomes: the image (moby's exporter: the config the Dockerfile frontend made,
its history with empty layers marked, committed to the image store and named, ``exporting to image``), or the
result's files for ``--output type=local`` / ``type=tar`` (a tar stream of the final file system)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .. import reference as refs
from ..builder.deps import BuildImages
from ..layers.diff import write_layer_from_upper
from ..oci.gojson import go_dumps, rfc3339_nano
from ..oci.platform import host_platform
from .inline import INLINE_CACHE_KEY, inline_cache
from .progress import Recorder
from .solver import Solver
from .state import State, history_times

__all__ = ["image_config", "export_image", "tar_stream"]


def image_config(state: State, *, inline: bool = False) -> bytes:
    """The image config of a build's result, as the Dockerfile frontend and moby's exporter write it: no
    ``container_config``, ``container`` or ``docker_version``; ``created`` the time of its last step; with
    ``inline`` the steps' cache keys (:func:`inline_cache`)."""
    plat = host_platform()
    history = history_times(state.history)
    top: dict[str, Any] = {
        "architecture": state.meta.get("architecture") or plat.architecture,
        "config": frontend_config(state.config),
        "created": history[-1]["created"] if history else rfc3339_nano(),
        "history": history,
        "os": state.meta.get("os") or "linux",
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in state.ref.layers]},
    }
    if state.meta.get("variant"):
        top["variant"] = state.meta["variant"]
    if state.maintainer:
        top["author"] = state.maintainer
    if inline:
        top[INLINE_CACHE_KEY] = inline_cache(state)
    return go_dumps(dict(sorted(top.items())))


#: the image config fields of the Dockerfile frontend's ``ImageConfig``, in its order (all omitted when empty but
#: ``OnBuild``)
_CONFIG_FIELDS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal",
                  "Healthcheck", "ArgsEscaped", "OnBuild", "Shell")


def frontend_config(config: dict[str, Any]) -> dict[str, Any]:
    """An image's ``config`` as the Dockerfile frontend writes it: the OCI fields and BuildKit's additions only,
    empty ones left out (``OnBuild`` is always there)."""
    out: dict[str, Any] = {}
    for k in _CONFIG_FIELDS:
        v = config.get(k)
        if k == "OnBuild":
            out[k] = v or None
        elif v:
            out[k] = v
    return out


async def export_image(images: BuildImages, state: State, tags: list[str], rec: Recorder, *,
                       inline: bool = False) -> str:
    """Commit the result as an image named ``tags`` (``exporting to image``; with ``inline`` its cache keys
    too, ``exporting cache``); returns its ID."""
    if inline:
        c = rec.vertex("exporting cache").start()
        c.status("preparing build cache for export")
        c.status("preparing build cache for export", done=True)
        c.done()
    v = rec.vertex("exporting to image").start()
    try:
        v.status("exporting layers")
        raw = image_config(state, inline=inline)
        v.status("exporting layers", done=True)
        image_id, _ = await images.commit_image(raw, list(state.ref.layers))
        v.status(f"writing image {image_id}")
        v.status(f"writing image {image_id}", done=True)
        for t in tags:
            ref = refs.tag_name_only(refs.parse_normalized_named(t))
            v.status(f"naming to {ref}")
            await images.tag(image_id, ref)
            v.status(f"naming to {ref}", done=True)
    except Exception as exc:
        v.done(str(exc))
        raise
    v.done()
    return image_id


async def tar_stream(solver: Solver, state: State) -> AsyncIterator[bytes]:
    """The result's file system as a tar stream (``--output type=tar``): entries sorted, owners numeric."""
    key, view = await solver.view(state.ref)
    try:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(8)
        loop = asyncio.get_running_loop()

        class Sink:
            def write(self, data: bytes) -> int:
                asyncio.run_coroutine_threadsafe(queue.put(bytes(data)), loop).result()
                return len(data)

        def produce() -> None:
            try:
                write_layer_from_upper(view, Sink(), level=None)
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        task = asyncio.ensure_future(asyncio.to_thread(produce))
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            await task
        finally:
            if not task.done():
                while not task.done():  # let the producer finish its last put
                    try:
                        queue.get_nowait()
                    except asyncio.QueueEmpty:
                        await asyncio.sleep(0.01)
    finally:
        await solver.drop_view(key, view)
