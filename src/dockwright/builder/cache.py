"""The build cache's policy: a step's probe (dockerd's ``imageProber``, the local records or the ``cachefrom``
images' histories as dockerd's ``ImageCache``), the records as ``system df`` and ``GET /build/prune`` show them,
and pruning under the reserved-space, max-used-space and min-free-space limits. The records themselves are
:mod:`..metadata.buildcache`'s."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DockwrightError, ImageNotFound
from ..filters import Filters
from ..metadata.buildcache import BuildCacheStore
from ..metadata.db import ImageRecord, LayerRecord, MetadataDB
from ..oci.config import container_config
from ..oci.digest import short_id
from ..oci.gojson import go_dumps, rfc3339_nano
from ..oci.platform import host_platform
from ..timestamps import parse_timestamp
from .deps import BuildImages, Publisher
from .options import BuildOptions
from .stages import CacheFrom, Stage

__all__ = ["BuildCache", "layers_of", "prune_candidates", "free_bytes", "PRUNE_FILTERS"]

log = logging.getLogger("dockwright.build")


class BuildCache:
    """The build cache over its records (``store``), the images they name and the data root's file system."""

    def __init__(self, store: BuildCacheStore, db: MetadataDB, images: BuildImages, events: Publisher,
                 root: Path) -> None:
        self.store = store
        self.db = db
        self.images = images
        self.events = events
        self.root = root

    def records(self) -> list[dict[str, Any]]:
        """Every record as ``GET /system/df`` lists it (``_``-prefixed keys are the builder's own)."""
        out = []
        for r in self.store.records():
            parent, created_by, image_id, created = r.parent, r.created_by, r.image_id, r.created
            out.append({"ID": short_id(image_id) + short_id(parent or "sha256:" + "0" * 64)[:13],
                        "Parents": [parent] if parent else None, "Type": r.kind, "Description": r.description,
                        "InUse": False, "Shared": False, "Size": r.size,
                        "CreatedAt": rfc3339_nano(int(created * 1e9)),
                        "LastUsedAt": rfc3339_nano(int(r.last_used * 1e9)), "UsageCount": r.usage_count,
                        "_image": image_id, "_parent": parent, "_created": created, "_created_by": created_by})
        return out

    async def prune(self, *, all: bool = False, filters: Filters | None = None, keep: int = 0, max_used: int = 0,
                    min_free: int = 0) -> tuple[list[str], int]:
        """Drop build cache records (and the intermediate images only they kept alive), oldest first.

        Without limits every matching record goes; with limits, records go until all of them hold: the cache
        uses at most ``keep`` (``reserved-space``/``keep-storage``) and ``max_used`` bytes
        (``max-used-space``), and the data root's file system has ``min_free`` bytes free
        (``min-free-space``)."""
        deleted: list[str] = []
        reclaimed = 0
        for r in prune_candidates(self.records(), filters, keep=keep, max_used=max_used, min_free=min_free,
                                  root=self.root):
            self.store.delete(r["_parent"], r["_created_by"])
            deleted.append(r["ID"])
            reclaimed += r["Size"]
            image_id = r["_image"]
            if not self.db.refs_of(image_id) and not self.db.children(image_id) \
                    and not self.images.container_usage(image_id):
                try:
                    await self.images.remove(image_id, force=False, prune=True)
                except DockwrightError:
                    pass
        if deleted:
            self.events.publish("builder", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    def sources(self, opts: BuildOptions) -> CacheFrom | None:
        """The ``cachefrom`` images that exist (dockerd skips, with a warning in its log, the ones it lacks)."""
        if not opts.cachefrom:
            return None
        sources: list[str] = []
        for ref in opts.cachefrom:
            try:
                sources.append(self.images.resolve(ref).id)
            except DockwrightError as exc:
                log.warning("Could not look up %s for cache resolution, skipping: %s", ref, exc)
        return CacheFrom(sources)

    async def probe(self, stage: Stage, cache_parent: str, created_by: str, cfg: dict[str, Any],
                    opts: BuildOptions) -> str | None:
        """The cached image for a step (dockerd's ``imageProber.Probe``), which becomes the stage's image; None
        on a miss, after which the stage looks no more. Without ``cachefrom`` the local build cache answers;
        with it, a local hit counts only if it is in the parent chain of a ``cachefrom`` image, and the
        ``cachefrom`` images' histories are searched next."""
        if opts.nocache or stage.cache_busted:
            return None
        hit = self.store.get(cache_parent, created_by)
        if stage.cache is not None:
            if hit is not None and not any(self._is_ancestor(hit, s) for s in stage.cache.sources):
                hit = None
            if hit is None:
                hit = await self._cache_from(stage, created_by, cfg)
        if hit is None:
            stage.cache_busted = True
            return None
        stage.image_id = hit
        stage.config = cfg
        return hit

    def _is_ancestor(self, candidate: str, image_id: str) -> bool:
        """Whether ``candidate`` is in the parent chain of ``image_id`` (dockerd's ``isParent``)."""
        seen: set[str] = set()
        rec = self.db.get_image(image_id)
        while rec is not None and rec.parent and rec.parent not in seen:
            if rec.parent == candidate:
                return True
            seen.add(rec.parent)
            rec = self.db.get_image(rec.parent)
        return False

    async def _cache_from(self, stage: Stage, created_by: str, cfg: dict[str, Any]) -> str | None:
        """dockerd's ``ImageCache.GetCache`` over the ``cachefrom`` images: one whose history and layers start
        with the stage image's, and whose next history entry is this step, gives the step — the image itself if
        that entry is its last one (it then gets the stage image as parent), else an image made from the
        parent and that entry (``restoreCachedImage``); the build then keeps to that one source."""
        assert stage.cache is not None
        parent_id = stage.image_id
        p_hist: list[Any] = []
        p_diff: list[str] = []
        if parent_id is not None:
            prec = self.db.get_image(parent_id)
            if prec is None:
                return None
            pcfg = self.images.config_of(prec)
            p_hist, p_diff = pcfg.history, pcfg.diff_ids
        n = len(p_hist)
        for src in list(stage.cache.sources):
            rec = self.db.get_image(src)
            if rec is None:
                continue
            tcfg = self.images.config_of(rec)
            t_hist, t_diff = tcfg.history, tcfg.diff_ids
            if not t_hist or len(t_hist) <= n:
                continue
            if p_hist or p_diff:
                if len(p_diff) > len(t_diff) or t_hist[:n] != p_hist or t_diff[:len(p_diff)] != p_diff:
                    continue
            if (t_hist[n].get("created_by") or "") != created_by:
                continue
            if n == len(t_hist) - 1:
                if parent_id is not None and rec.parent != parent_id:
                    self.store.set_image_parent(src, parent_id)
                return src
            image_id = await self._restore_cached(parent_id, tcfg.data, rec, n, cfg)
            stage.cache.sources = [src]
            return image_id
        return None

    async def _restore_cached(self, parent_id: str | None, target: dict[str, Any], target_rec: ImageRecord,
                              index: int, cfg: dict[str, Any]) -> str:
        """``restoreCachedImage``: the parent plus history entry ``index`` of ``target`` (and its layer)."""
        layers = layers_of(self.db, parent_id)
        parent_rec = self.db.get_image(parent_id) if parent_id else None
        parent_hist = self.images.config_of(parent_rec).history if parent_rec is not None else []
        t_hist = list(target.get("history") or [])
        entry = t_hist[index]
        if not entry.get("empty_layer"):
            li = sum(1 for h in t_hist[:index] if not h.get("empty_layer"))
            trec = self.db.get_image(target_rec.id, with_layers=True)
            layer = self.db.get_layer(trec.layers[li][2]) if trec is not None and li < len(trec.layers) else None
            if layer is None:
                raise ImageNotFound(target_rec.id, f"layer {li} of image {target_rec.id} is missing")
            layers.append(layer)
        written = dict(cfg)
        written["Image"] = parent_id or ""
        top: dict[str, Any] = {
            "architecture": target.get("architecture") or host_platform().architecture,
            "config": container_config(written), "container_config": container_config({}),
            "created": entry.get("created") or target.get("created"), "docker_version": self.images.engine_version,
            "history": [*parent_hist, entry], "os": target.get("os") or "linux",
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        }
        if target.get("author"):
            top["author"] = target["author"]
        for key in ("os.version", "os.features"):
            if target.get(key):
                top[key] = target[key]
        image_id, _ = await self.images.commit_image(go_dumps(dict(sorted(top.items()))), layers,
                                                     parent=parent_id or "")
        return image_id


def layers_of(db: MetadataDB, image_id: str | None) -> list[LayerRecord]:
    """The layer records of an image, bottom first (none for scratch); raises :class:`ImageNotFound`."""
    if image_id is None:
        return []
    rec = db.get_image(image_id, with_layers=True)
    if rec is None:
        raise ImageNotFound(image_id)
    out = []
    for _, _, dg in rec.layers:
        lr = db.get_layer(dg)
        if lr is None:
            raise ImageNotFound(image_id, f"layer {dg} of image {image_id} is missing")
        out.append(lr)
    return out


def free_bytes(path: Path) -> int:
    """The bytes free for unprivileged use on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


#: the filters ``POST /build/prune`` takes
PRUNE_FILTERS = ("until", "id", "parent", "type", "description", "inuse", "shared", "private")


def prune_candidates(records: list[dict[str, Any]], filters: Filters | None, *, keep: int = 0, max_used: int = 0,
                     min_free: int = 0, root: Path) -> Iterator[dict[str, Any]]:
    """The build cache records ``POST /build/prune`` drops, in the order given (oldest first), as ``system df``
    lists them (``_created``: their creation time): those the filters match and not in use; with limits, only until
    all of them hold — the cache (the records' ``Size``) at most ``keep`` (``reserved-space``/``keep-storage``) and
    ``max_used`` bytes (``max-used-space``), ``root``'s file system ``min_free`` bytes free (``min-free-space``),
    checked again after each record the caller drops. Bad filters raise at once."""
    until = None
    if filters is not None:
        filters.validate(PRUNE_FILTERS)
        if filters.get("until"):
            until = parse_timestamp(filters.get("until")[0], time.time())
    return _candidates(records, filters, until, keep, max_used, min_free, root)


def _candidates(records: list[dict[str, Any]], f: Filters | None, until: float | None, keep: int, max_used: int,
                min_free: int, root: Path) -> Iterator[dict[str, Any]]:
    total = sum(r["Size"] for r in records)
    for r in records:
        if r.get("InUse"):
            continue
        if until is not None and r["_created"] > until:
            continue
        if f is not None and f.get("id") and r["ID"] not in f.get("id"):
            continue
        if f is not None and f.get("type") and r["Type"] not in f.get("type"):
            continue
        if f is not None and f.get("description") and not any(d in r["Description"] for d in f.get("description")):
            continue
        if keep or max_used or min_free:
            if ((not keep or total <= keep) and (not max_used or total <= max_used)
                    and (not min_free or free_bytes(root) >= min_free)):
                return
        yield r
        total -= r["Size"]
