"""Image removal and prune with dockerd's semantics (``ImageService.ImageDelete``, ``ImagesPrune``): which
names go, which conflicts refuse, which parents follow. The images service inherits it (:class:`ImageRemoval`)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ... import reference as refs
from ...errors import Conflict, NotFound
from ...filters import Filters
from ...metadata.db import ImageRecord, MetadataDB
from ...oci.digest import hex_of, short_id
from ..events import EventBus
from ..prune import PruneLock, prune_until
from ..types import DeleteItem, ImageSummary, PruneReport

if TYPE_CHECKING:
    from ..gc import GarbageCollector

__all__ = ["ImageRemoval", "ContainerUsage", "PRUNE_FILTERS", "FilterArgs", "as_filters"]

PRUNE_FILTERS = ("dangling", "label", "label!", "until")

# (container id, running) of the containers that use an image
ContainerUsage = Callable[[str], builtins.list[tuple[str, bool]]]


# dockerd's filters: a Filters, or for library callers a mapping such as {"reference": ["busybox*"]}
FilterArgs = Filters | Mapping[str, Iterable[str]] | None


def as_filters(filters: FilterArgs) -> Filters:
    """``filters`` as a :class:`~dockwright.filters.Filters` (a mapping's values each a filter value)."""
    if filters is None:
        return Filters()
    if isinstance(filters, Filters):
        return filters
    return Filters({key: {value: True for value in values} for key, values in filters.items()})


def _sort_key_familiar(name: str) -> str:
    return refs.familiarize(name)


def _is_digest_ref(name: str) -> bool:
    return "@" in name


class ImageRemoval:
    """Removal, prune and the bookkeeping every change of images does (the list cache's generation, events)."""

    db: MetadataDB
    events: EventBus
    container_usage: ContainerUsage
    gc: GarbageCollector | None
    _mu: asyncio.Lock
    _prune: PruneLock
    _generation: int
    _list_cache: tuple[int, builtins.list[ImageSummary]] | None

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """Find an image by ID, name or ID prefix (the images service's)."""
        raise NotImplementedError

    def _changed(self) -> None:
        self._generation += 1
        self._list_cache = None

    # ---- delete -----------------------------------------------------------------------------------------------
    async def remove(self, name: str, *, force: bool = False, prune: bool = True) -> builtins.list[DeleteItem]:
        """Remove a name, or an image (``docker rmi``): what was untagged and deleted, in dockerd's order."""
        async with self._mu:
            records = self._remove_locked(name, force=force, prune=prune)
        if any(r.deleted for r in records):
            await self._run_gc()
        return records

    async def _run_gc(self) -> None:
        if self.gc is not None:
            await self.gc.run()

    def _remove_locked(self, name: str, *, force: bool, prune: bool) -> list[DeleteItem]:
        rec = self.resolve(name)
        image_id = rec.id
        records: list[DeleteItem] = []
        repo_refs = self._refs(image_id)
        removed_repository_ref = False
        if not _is_image_id_prefix(image_id, name):
            if not force and _is_single_reference(repo_refs):
                users = self.container_usage(image_id)
                if users:
                    raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                                   f"container {users[0][0][:12]} is using its referenced image {short_id(image_id)}")
            parsed = refs.parse_normalized_named(name)
            if parsed.digest and parsed.tag:
                parsed = refs.Reference(parsed.domain, parsed.path, None, parsed.digest)
            parsed = refs.tag_name_only(parsed)
            with self.db.tx() as c:
                self.db.delete_ref(c, str(parsed))
            self._changed()
            self._log(image_id, image_id, "untag")
            records.append(DeleteItem(untagged=parsed.familiar()))
            repo_refs = self._refs(image_id)
            if not parsed.digest:
                found_tag = any(not _is_digest_ref(r) and _repo_name(r) == parsed.name for r in repo_refs)
                if not found_tag:
                    remaining = []
                    for r in repo_refs:
                        if _is_digest_ref(r) and _repo_name(r) == parsed.name:
                            with self.db.tx() as c:
                                self.db.delete_ref(c, r)
                            self._changed()
                            records.append(DeleteItem(untagged=refs.familiarize(r)))
                        else:
                            remaining.append(r)
                    repo_refs = remaining
            if repo_refs:
                return records
            removed_repository_ref = True
        else:
            if _is_single_reference(repo_refs):
                conflict = self._check_conflict(image_id, hard=True, soft=not force, active_reference=False)
                if conflict is not None:
                    raise conflict
                for r in repo_refs:
                    with self.db.tx() as c:
                        self.db.delete_ref(c, r)
                    self._changed()
                    self._log(image_id, image_id, "untag")
                    records.append(DeleteItem(untagged=refs.familiarize(r)))
        self._delete_helper(image_id, records, force=force, prune=prune, quiet=removed_repository_ref)
        return records

    def _refs(self, image_id: str) -> list[str]:
        return sorted((n for n, _ in self.db.refs_of(image_id)), key=_sort_key_familiar)

    def _check_conflict(self, image_id: str, *, hard: bool, soft: bool,
                        active_reference: bool = True) -> _DeleteConflict | None:
        if hard and self.db.children(image_id):
            return _DeleteConflict(image_id, "image has dependent child images", hard=True)
        users = self.container_usage(image_id)
        if hard:
            for cid, running in users:
                if running:
                    return _DeleteConflict(image_id, f"image is being used by running container {cid[:12]}",
                                           hard=True, used=True)
        if soft and active_reference and self.db.refs_of(image_id):
            return _DeleteConflict(image_id, "image is referenced in multiple repositories")
        if soft:
            for cid, running in users:
                if not running:
                    return _DeleteConflict(image_id, f"image is being used by stopped container {cid[:12]}",
                                           used=True)
        return None

    def _delete_helper(self, image_id: str, records: list[DeleteItem], *, force: bool, prune: bool,
                       quiet: bool) -> None:
        conflict = self._check_conflict(image_id, hard=True, soft=not force)
        if conflict is not None:
            # dockerd's imageIsDangling: no reference and no child image. After a name was removed (quiet), a
            # conflict is only reported for an image that became dangling and that no container uses: an image
            # with children stays (untagged), as dockerd leaves it
            dangling = not self.db.refs_of(image_id) and not self.db.children(image_id)
            if quiet and (not dangling or conflict.used):
                return
            raise conflict
        rec = self.db.get_image(image_id, with_layers=True)
        if rec is None:
            return
        parent = rec.parent
        for r in self._refs(image_id):
            with self.db.tx() as c:
                self.db.delete_ref(c, r)
            self._log(image_id, image_id, "untag")
            records.append(DeleteItem(untagged=refs.familiarize(r)))
        removed_layers = self._delete_image_record(rec)
        self._log(image_id, image_id, "delete")
        records.append(DeleteItem(deleted=image_id))
        records.extend(DeleteItem(deleted=ch) for ch in removed_layers)
        if not prune or not parent:
            return
        if self.db.get_image(parent) is None:
            return
        self._delete_helper(parent, records, force=False, prune=True, quiet=True)

    def _delete_image_record(self, rec: ImageRecord) -> list[str]:
        """Delete the image rows — metadata only: the collector, run afterwards, removes what nothing reaches any
        more. Returns the layer ChainIDs no image uses any more, top first (dockerd's "Deleted:" lines)."""
        with self.db.tx() as c:
            self.db.delete_image(c, rec.id)
            used_chains = {r[0] for r in c.execute(
                "SELECT DISTINCT chain_id FROM image_layers "
                "WHERE chain_id IN ({})".format(",".join("?" * len(rec.layers))),
                tuple(ch for _, ch, _ in rec.layers))} if rec.layers else set()
        if self.gc is not None:
            self.gc.note_deletion()
        self._changed()
        removed: list[str] = []
        for _, ch, _ in reversed(rec.layers):
            if ch in used_chains:
                break
            if ch not in removed:
                removed.append(ch)
        return removed

    # ---- prune ------------------------------------------------------------------------------------------------
    async def prune(self, filters: FilterArgs = None) -> PruneReport:
        """``docker image prune``: remove the dangling images (``{"dangling": ["false"]}``: every unused one)
        that match ``filters`` (``label``, ``label!``, ``until``)."""
        f = as_filters(filters)
        f.validate(PRUNE_FILTERS)
        with self._prune.hold():
            dangling_only = f.get_bool_or_default("dangling", True)
            until = prune_until(f)
            report = PruneReport()
            async with self._mu:
                chain_sizes = {ch: size for _, ch, size in self.db.image_layer_rows()}
                images = self.db.all_images()
                parents = {r.parent for r in images if r.parent}
                top: list[ImageRecord] = []
                for rec in images:
                    if dangling_only and rec.id in parents:
                        continue
                    if not self.db.refs_of(rec.id) and rec.id in parents:
                        continue
                    if until is not None and (rec.created is None or rec.created > until):
                        continue
                    if not f.match_labels(rec.labels or {}):
                        continue
                    top.append(rec)
                for rec in top:
                    if self.db.get_image(rec.id) is None:
                        continue
                    names = self._refs(rec.id)
                    deleted: list[DeleteItem] = []
                    if names:
                        should = not dangling_only or not any(not _is_digest_ref(n) for n in names)
                        if should:
                            for n in names:
                                try:
                                    deleted.extend(self._remove_locked(n, force=False, prune=True))
                                except (Conflict, NotFound):
                                    continue
                    else:
                        try:
                            deleted.extend(self._remove_locked(hex_of(rec.id), force=False, prune=True))
                        except (Conflict, NotFound):
                            continue
                    report.deleted.extend(deleted)
            for d in report.deleted:
                if d.deleted and d.deleted in chain_sizes:
                    report.space_reclaimed += chain_sizes[d.deleted]
            if report.deleted:
                await self._run_gc()
            self.events.publish("image", "prune", "", {"reclaimed": str(report.space_reclaimed)})
            return report

    # ---- events -----------------------------------------------------------------------------------------------
    def _log(self, image_id: str, name: str, action: str) -> None:
        attrs: dict[str, str] = {}
        rec = self.db.get_image(image_id)
        if rec is not None and rec.labels:
            attrs.update(rec.labels)
        attrs["name"] = name
        self.events.publish("image", action, image_id, attrs)


class _DeleteConflict(Conflict):
    def __init__(self, image_id: str, message: str, *, hard: bool = False, used: bool = False) -> None:
        self.hard = hard
        self.used = used
        force = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {short_id(image_id)} ({force}) - {message}")


def _is_image_id_prefix(image_id: str, possible: str) -> bool:
    if image_id.startswith(possible):
        return True
    return image_id.split(":", 1)[-1].startswith(possible)


def _repo_name(full: str) -> str:
    """The repository part of a full reference string."""
    if "@" in full:
        return full.split("@", 1)[0]
    slash = full.rfind("/")
    colon = full.rfind(":")
    return full[:colon] if colon > slash else full


def _is_single_reference(names: list[str]) -> bool:
    if len(names) <= 1:
        return len(names) == 1
    single: str | None = None
    canonical: set[str] = set()
    for n in names:
        if _is_digest_ref(n):
            canonical.add(_repo_name(n))
        elif single is None:
            single = n
        else:
            return False
    if single is None:
        single = names[0]
    return len(canonical) == 1 and _repo_name(single) in canonical

