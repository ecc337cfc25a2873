"""The read-only views of the image store: ``docker images`` (dockerd's list filters, shared sizes) and
``docker history``. The images service inherits them (:class:`ImageListing`)."""

from __future__ import annotations

import builtins
import time
from typing import Any

from ... import reference as refs
from ...errors import InvalidArgument, NotFound
from ...metadata.db import ImageRecord, MetadataDB
from ...oci.config import ImageConfig
from ...oci.descriptor import Descriptor
from ...oci.gojson import parse_rfc3339
from ...oci.platform import Platform
from ...timestamps import parse_timestamp
from ..types import HistoryItem, ImageSummary
from .removal import ContainerUsage, FilterArgs, as_filters

__all__ = ["ImageListing", "LIST_FILTERS", "PlatformArg", "as_platform"]

LIST_FILTERS = ("before", "dangling", "label", "reference", "since", "until")

# a platform: a Platform, or for library callers its specifier ("linux/arm64/v8")
PlatformArg = Platform | str | None


def as_platform(platform: PlatformArg) -> Platform | None:
    """``platform`` as a :class:`~dockwright.oci.platform.Platform` (a specifier parsed; None stays None)."""
    return Platform.parse_specifier(platform) if isinstance(platform, str) else platform


class ImageListing:
    """``list`` and ``history`` over the metadata database (the list cached per change generation)."""

    db: MetadataDB
    container_usage: ContainerUsage
    _generation: int
    _list_cache: tuple[int, builtins.list[ImageSummary]] | None

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """Find an image by ID, name or ID prefix (the images service's)."""
        raise NotImplementedError

    def config_of(self, rec: ImageRecord) -> ImageConfig:
        """The stored configuration of an image (the images service's)."""
        raise NotImplementedError

    def names_of(self, image_id: str) -> tuple[builtins.list[str], builtins.list[str]]:
        """(RepoTags, RepoDigests) of an image (the images service's)."""
        raise NotImplementedError

    # ---- list -------------------------------------------------------------------------------------------------
    def _all_summaries(self) -> builtins.list[ImageSummary]:
        cached = self._list_cache
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        tags: dict[str, builtins.list[str]] = {}
        digests: dict[str, builtins.list[str]] = {}
        for name, image_id, kind in self.db.all_refs():
            (digests if kind == "digest" else tags).setdefault(image_id, []).append(refs.familiarize(name))
        out = []
        for rec in self.db.all_images():
            out.append(ImageSummary(
                id=rec.id, parent_id=rec.parent, repo_tags=sorted(tags.get(rec.id, [])),
                repo_digests=sorted(digests.get(rec.id, [])), created=int(rec.created or 0), size=rec.size,
                shared_size=-1, labels=rec.labels, containers=-1,
                descriptor=Descriptor(rec.target_media_type, rec.target_digest, rec.target_size),
                created_f=rec.created or 0.0, seq=rec.seq))
        self._list_cache = (self._generation, out)
        return out

    def list(self, *, all: bool = False, filters: FilterArgs = None, shared_size: bool = False,
             container_count: bool = True) -> builtins.list[ImageSummary]:
        """``docker images``: the images matching ``filters`` (dockerd's list filters), newest first; ``all``
        includes the intermediate images a build leaves."""
        f = as_filters(filters)
        f.validate(LIST_FILTERS)
        dangling_only = f.get_bool_or_default("dangling", False)
        before: float | None = None
        since: float | None = None
        for v in f.get("before"):
            rec = self.resolve(v)
            if rec.created is not None and (before is None or before > rec.created):
                before = rec.created
        for v in f.get("until"):
            ts = parse_timestamp(v, time.time())
            if before is None or before > ts:
                before = ts
        for v in f.get("since"):
            rec = self.resolve(v)
            if rec.created is not None and (since is None or since < rec.created):
                since = rec.created
        ref_patterns = f.get("reference")
        summaries = self._all_summaries()
        parents = {s.parent_id for s in summaries if s.parent_id}
        out: builtins.list[ImageSummary] = []
        for s in summaries:
            if dangling_only and s.id in parents:
                continue
            if before is not None and (not s.created_f or not s.created_f < before):
                continue
            if since is not None and (not s.created_f or not s.created_f > since):
                continue
            if f.contains("label") and not f.match_kv_list("label", s.labels or {}):
                continue
            repo_tags, repo_digests = s.repo_tags, s.repo_digests
            if ref_patterns:
                repo_tags = [t for t in repo_tags if any(refs.familiar_match(p, t) for p in ref_patterns)]
                repo_digests = [d for d in repo_digests if any(refs.familiar_match(p, d) for p in ref_patterns)]
            if not repo_tags and not repo_digests:
                if all or s.id not in parents:
                    if f.contains("dangling") and not dangling_only:
                        continue
                    if ref_patterns:
                        continue
                else:
                    continue
            elif dangling_only and repo_tags:
                continue
            item = ImageSummary(s.id, s.parent_id, list(repo_tags), list(repo_digests), s.created, s.size, -1,
                                s.labels, -1, s.descriptor, s.created_f, s.seq)
            if container_count:
                item.containers = len(self.container_usage(s.id))
            out.append(item)
        if shared_size and out:
            # dockerd's Images(): a layer is shared when more than one of the images *listed* uses it (the
            # intermediate images a build leaves, hidden without ``all``, do not count), so a built image's own
            # layers are its unique size; ``Size - SharedSize`` is the CLI's UNIQUE SIZE
            listed = {item.id for item in out}
            counts: dict[str, int] = {}
            sizes: dict[str, int] = {}
            per_image: dict[str, builtins.list[str]] = {}
            for image_id, chain, size in self.db.image_layer_rows():
                if image_id not in listed:
                    continue
                counts[chain] = counts.get(chain, 0) + 1
                sizes[chain] = size
                per_image.setdefault(image_id, []).append(chain)
            for item in out:
                item.shared_size = sum(sizes[ch] for ch in per_image.get(item.id, []) if counts[ch] > 1)
        out.sort(key=lambda s: (s.created_f, s.seq), reverse=True)
        return out

    def history(self, name: str, platform: PlatformArg = None) -> builtins.list[HistoryItem]:
        """``docker history``: the image's build steps, newest first, each with the image it made when known."""
        rec = self.resolve(name)
        platform = as_platform(platform)
        if platform is not None and not platform.matches(Platform(rec.os, rec.architecture, rec.variant)):
            raise NotFound(f"image with reference {name} was found but does not provide the specified platform "
                           f"({platform})")
        cfg = self.config_of(rec)
        diff_ids = cfg.diff_ids
        layer_rows = self.db.get_image(rec.id, with_layers=True)
        layer_digests = [lay[2] for lay in (layer_rows.layers if layer_rows else [])]
        items: builtins.list[dict[str, Any]] = []
        counter = 0
        for h in cfg.history:
            size = 0
            if not h.get("empty_layer"):
                if len(diff_ids) <= counter:
                    raise InvalidArgument("too many non-empty layers in History section")
                if counter < len(layer_digests):
                    lr = self.db.get_layer(layer_digests[counter])
                    size = lr.diff_size if lr else 0
                counter += 1
            created = h.get("created")
            ts = parse_rfc3339(created) if isinstance(created, str) else None
            items.insert(0, {"id": "<missing>", "created": int(ts) if ts else 0,
                             "created_by": h.get("created_by") or "", "comment": h.get("comment") or "",
                             "size": size, "tags": None})
        image_id: str | None = rec.id
        for it in items:
            if image_id is None:
                break
            it["id"] = image_id
            tags, _ = self.names_of(image_id)
            it["tags"] = tags or None
            parent = self.db.get_image(image_id)
            image_id = parent.parent if parent and parent.parent else None
            if image_id is not None and self.db.get_image(image_id) is None:
                image_id = None
        return [HistoryItem(it["id"], it["created"], it["created_by"], it["tags"], it["size"], it["comment"])
                for it in items]
