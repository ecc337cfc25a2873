"""What a BuildKit build's result becomes: the image (moby's exporter: the config the Dockerfile frontend made,
its history with empty layers marked, committed to the image store and named, ``exporting to image``), an image
archive for ``--output type=docker`` / ``type=oci`` (BuildKit's ``oci`` exporter and its docker variant: the image
as a tarball for the client, never in the image store), or the result's files for ``--output type=local`` /
``type=tar`` (a tar stream of the final file system). :class:`Output` is where a build's result goes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import reference as refs
from ..archive.save import SaveImage, SaveLayer, write_save
from ..builder.deps import BuildImages
from ..content.store import ContentStore
from ..errors import InvalidArgument, NotSupported
from ..layers.diff import write_layer_from_upper
from ..oci import mediatypes as mt
from ..oci.gojson import go_dumps, rfc3339_nano
from ..oci.manifest import image_manifest
from ..oci.platform import host_platform
from .inline import INLINE_CACHE_KEY, inline_cache
from .progress import Recorder
from .solver import Solver
from .state import State, history_times

__all__ = ["Output", "image_config", "export_image", "export_archive", "tar_stream", "EXPORTERS"]

#: the exporters a build's result can go to (``image`` is moby's, the default)
EXPORTERS = ("image", "local", "tar", "docker", "oci")


@dataclass(frozen=True)
class Output:
    """Where a build's result goes: ``kind`` one of :data:`EXPORTERS`; ``names`` the image's (``image``: its
    tags; ``docker``/``oci``: the names in the archive)."""

    kind: str = "image"
    names: tuple[str, ...] = ()
    attrs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, attrs: Mapping[str, str], tags: Sequence[str] = ()) -> Output:
        """The output of an exporter request (``--output type=<kind>,<attrs>``; ``moby`` or nothing is the image
        export) for a build tagged ``tags``: an image or archive is named by its ``name`` attribute (comma
        separated) else by the tags. Errors name what is supported."""
        kind = "image" if kind in ("", "moby", "image") else kind
        if kind not in EXPORTERS:
            raise NotSupported(f"output type {kind} is not supported by this engine: use local, tar, docker, oci or "
                               "the default image export")
        if kind in ("docker", "oci") and attrs.get("tar", "true") == "false":
            raise NotSupported(f"{kind} output without a tarball (tar=false) is not supported by this engine")
        names = [n for n in attrs.get("name", "").split(",") if n] or list(tags)
        if kind in ("image", "docker", "oci"):
            try:
                names = [str(refs.tag_name_only(refs.parse_normalized_named(n))) for n in names]
            except InvalidArgument as exc:
                raise InvalidArgument(f"failed to parse {', '.join(names)}: {exc}") from None
        else:
            names = []
        return cls(kind, tuple(names), dict(attrs))


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


async def export_archive(images: BuildImages, content: ContentStore, state: State, output: Output, rec: Recorder,
                         send: Callable[[AsyncIterator[bytes]], Awaitable[None]]) -> dict[str, str]:
    """The result as an image archive sent with ``send`` (``exporting to docker|oci image format``): its config
    and manifest written under a lease of their own (nothing names them: the collector takes them once it
    ends), the layers the stored blobs. Returns BuildKit's exporter response (the manifest's and config's
    digests, the names)."""
    v = rec.vertex(f"exporting to {output.kind} image format").start()
    try:
        async with images.operation("export"):
            v.status("exporting layers")
            raw = image_config(state)
            v.status("exporting layers", done=True)
            layers = list(state.ref.layers)
            config_digest = await asyncio.to_thread(content.put, raw)
            # an OCI manifest for both variants: what the archive's index.json points at (as ``docker save`` here
            # writes it: OCI tools ignore Docker manifests there), so that the digest reported is the one inside
            manifest_raw, media_type = image_manifest(raw, config_digest, layers, media_type=mt.OCI_MANIFEST)
            manifest_digest = await asyncio.to_thread(content.put, manifest_raw)
            v.status(f"exporting manifest {manifest_digest}")
            v.status(f"exporting manifest {manifest_digest}", done=True)
            v.status(f"exporting config {config_digest}")
            v.status(f"exporting config {config_digest}", done=True)
            image = SaveImage(config_digest=config_digest, config_raw=raw, manifest_digest=manifest_digest,
                              manifest_raw=manifest_raw, manifest_media_type=media_type,
                              layers=[SaveLayer(lay.digest, lay.size, lay.media_type, lay.diff_id) for lay in layers],
                              full_names=list(output.names))
            v.status("sending tarball")
            await send(write_save([image], images.blob_chunks, docker=output.kind == "docker"))
            v.status("sending tarball", done=True)
    except Exception as exc:
        v.done(str(exc))
        raise
    v.done()
    out = {"containerimage.digest": manifest_digest, "containerimage.config.digest": config_digest}
    if output.names:
        out["image.name"] = ",".join(output.names)
    return out


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
