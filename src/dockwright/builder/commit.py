"""A step's image: written as dockerd's ``NewChildImage`` (the parent's history and layers plus the step's), and
recorded in the build cache under the step's key."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import ImageNotFound, InvalidArgument
from ..metadata.buildcache import BuildCacheStore
from ..metadata.db import LayerRecord, MetadataDB
from ..oci.config import container_config
from ..oci.gojson import go_dumps, rfc3339_nano
from ..oci.platform import host_platform
from .cache import layers_of
from .deps import BuildImages
from .options import MAX_IMAGE_CONFIG_SIZE, BuildOptions
from .stages import Stage
from .stages import cache_parent as _cache_parent

__all__ = ["StepCommitter"]


class StepCommitter:
    """Writes the steps' images into the image store and their build cache records."""

    def __init__(self, db: MetadataDB, images: BuildImages, store: BuildCacheStore) -> None:
        self.db = db
        self.images = images
        self.store = store

    async def commit(self, stage: Stage, cfg: dict[str, Any], container_cfg: dict[str, Any],
                     layer: LayerRecord | None, created_by: str, *, empty: bool, opts: BuildOptions,
                     cache_parent: str | None = None) -> str:
        """Write the step's image as dockerd's ``NewChildImage``: the parent's history plus this step's (with
        the MAINTAINER as author), ``config.Image`` the parent, ``container`` the step's container (not with
        ``SOURCE_DATE_EPOCH``: a random ID would make the image irreproducible)."""
        parent_id = stage.image_id
        layers = layers_of(self.db, parent_id)
        parent_cfg: dict[str, Any] = {}
        if parent_id is not None:
            prec = self.db.get_image(parent_id)
            if prec is None:
                raise ImageNotFound(parent_id)
            parent_cfg = self.images.config_of(prec).data
        if layer is not None:
            layers.append(layer)
        container = "" if opts.buildargs.get("SOURCE_DATE_EPOCH") else stage.container
        stage.container = ""
        now = created(opts)
        hist = list(parent_cfg.get("history") or [])
        h: dict[str, Any] = {"created": now}
        if stage.maintainer:
            h["author"] = stage.maintainer
        h["created_by"] = created_by
        if empty:
            h["empty_layer"] = True
        hist.append(h)
        written = dict(cfg)
        written["Image"] = parent_id or ""
        cc = dict(container_cfg)
        cc["Image"] = parent_id or ""
        if container:
            cc["Hostname"] = container[:12]
        if created_by.startswith("/bin/sh -c #(nop) ") and not created_by.startswith("/bin/sh -c #(nop)  "):
            cc["Cmd"] = ["/bin/sh", "-c", created_by[len("/bin/sh -c "):]]  # COPY/ADD/WORKDIR: the history's words
        plat = host_platform()
        top: dict[str, Any] = {
            "architecture": parent_cfg.get("architecture") or plat.architecture,
            "config": container_config(written), "container_config": container_config(cc),
            "created": now, "docker_version": self.images.engine_version, "history": hist,
            "os": parent_cfg.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        }
        if parent_cfg.get("variant"):
            top["variant"] = parent_cfg["variant"]
        if stage.maintainer:
            top["author"] = stage.maintainer
        if container:
            top["container"] = container
        raw = await asyncio.to_thread(go_dumps, dict(sorted(top.items())))
        if len(raw) > MAX_IMAGE_CONFIG_SIZE:
            raise InvalidArgument(f"the image config of this step ({len(raw)} bytes) exceeds the maximum allowed "
                                  f"size of {MAX_IMAGE_CONFIG_SIZE} bytes")
        image_id, _ = await self.images.commit_image(raw, layers, parent=parent_id or "")
        key_parent = cache_parent if cache_parent is not None else _cache_parent(parent_id, cfg)
        self.store.put(key_parent, created_by, image_id, layer.diff_size if layer else 0,
                       "regular" if layer else "internal")
        stage.image_id = image_id
        stage.config = cfg
        return image_id


def created(opts: BuildOptions) -> str:
    """A step's ``created`` time: now, or ``SOURCE_DATE_EPOCH`` when that build arg is a number."""
    sde = opts.buildargs.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            return rfc3339_nano(int(sde) * 1_000_000_000)
        except ValueError:
            pass
    return rfc3339_nano()
