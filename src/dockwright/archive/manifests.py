"""``docker load``'s readers of ``manifest.json`` (Docker 25+ and legacy archives) and ``index.json`` (OCI layouts).

This module owns :class:`ManifestImages`: the images of an archive spooled by :class:`~.spool.ArchiveSpool`, read
from its ``manifest.json`` or, without one, from its OCI ``index.json`` (nested indexes walked, one manifest chosen
per entry), with their configs checked; see :mod:`dockwright.archive.load` for the rules.
"""

from __future__ import annotations

import json
from typing import Any

from .. import reference as refs
from ..errors import DataCorrupted, DockwrightError, InvalidReference
from ..oci import mediatypes as mt
from ..oci.config import ImageConfig
from ..oci.descriptor import Descriptor
from ..oci.digest import DIGEST_RE, sha256_digest
from ..oci.gojson import parse_rfc3339
from ..oci.platform import Platform, host_platform
from .paths import blob_name, parse_object
from .results import ArchiveError, LoadedImage, LoadedLayer
from .spool import ArchiveSpool, SmallFile

__all__ = ["ManifestImages"]

_MAX_INDEX_DEPTH = 8
_ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"


class ManifestImages(ArchiveSpool):
    """The manifest.json and OCI layout readers over a spooled archive."""

    def image_config(self, raw: bytes, what: str) -> ImageConfig:
        """The image config ``raw`` (``what``: its name for messages), checked as dockerd checks it."""
        try:
            cfg = ImageConfig(raw)
        except DataCorrupted as exc:
            raise ArchiveError(f"invalid archive: {what}: {exc}") from exc
        rootfs = cfg.data.get("rootfs")
        if rootfs is not None and not isinstance(rootfs, dict):
            raise ArchiveError(f"invalid archive: {what}: invalid rootfs")
        ids = cfg.diff_ids
        if not all(isinstance(d, str) and DIGEST_RE.match(d) for d in ids):
            raise ArchiveError(f"invalid archive: {what}: invalid rootfs.diff_ids")
        os_ = cfg.os or "linux"
        if os_ != "linux":
            raise ArchiveError(f"cannot load {os_} image on linux")
        return cfg

    def platform_ok(self, cfg: ImageConfig) -> bool:
        """Whether an image of this config is to be loaded (the requested platform, if any)."""
        if self.platform is None:
            return True
        return self.platform.matches(Platform(cfg.os or "linux", cfg.architecture, cfg.variant))

    @staticmethod
    def _check_layers(cfg: ImageConfig, layers: list[LoadedLayer]) -> None:
        diff_ids = cfg.diff_ids
        if len(layers) != len(diff_ids):
            raise ArchiveError(
                f"invalid manifest, layers length mismatch: expected {len(layers)}, got {len(diff_ids)}")
        for i, (lay, want) in enumerate(zip(layers, diff_ids, strict=True)):
            if lay.diff_id != want:
                raise ArchiveError(f'invalid diffID for layer {i}: expected "{want}", got "{lay.diff_id}"')

    # ---- 1. manifest.json
    def images_from_manifest_json(self) -> list[LoadedImage]:
        """The images manifest.json lists (format 1)."""
        items = self.read_json("manifest.json")
        if items is None:
            raise ArchiveError("invalid manifest, manifest cannot be null (but can be [])")
        if not isinstance(items, list):
            raise ArchiveError("invalid archive: manifest.json is not a JSON array")
        known = self._index_manifests()
        images: list[LoadedImage] = []
        parents: list[str] = []
        histories: dict[str, list[Any]] = {}
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise ArchiveError(f"invalid archive: manifest.json entry {n} is not an object")
            config_path = item.get("Config")
            layer_paths = item.get("Layers") or []
            repo_tags = item.get("RepoTags") or []
            parent = item.get("Parent") or ""
            if not isinstance(config_path, str) or not isinstance(layer_paths, list) or \
                    not isinstance(repo_tags, list) or not isinstance(parent, str):
                raise ArchiveError(f"invalid archive: manifest.json entry {n} is malformed")
            raw = self.read_small(config_path, "image config")
            cfg = self.image_config(raw, config_path)
            if not self.platform_ok(cfg):
                continue
            if len(layer_paths) != len(cfg.diff_ids):
                raise ArchiveError(f"invalid manifest, layers length mismatch: expected {len(layer_paths)}, "
                                   f"got {len(cfg.diff_ids)}")
            layers = [self.layer(p, f"layer {i} of {config_path}") for i, p in enumerate(layer_paths)]
            self._check_layers(cfg, layers)
            tags = [_docker_tag(t) for t in repo_tags]
            config_digest = sha256_digest(raw)
            manifest_raw, manifest_type, layers = _match_manifest(known.get(config_digest, []), layers)
            images.append(LoadedImage(raw, config_digest, layers, tags, manifest_raw, manifest_type))
            parents.append(parent)
            histories[config_digest] = cfg.history
        ids = {img.config_digest for img in images}
        for img, parent in zip(images, parents, strict=True):
            if parent and parent in ids and parent != img.config_digest:
                if not _valid_parent(histories[img.config_digest], histories[parent]):
                    raise ArchiveError(f"image {parent} is not a valid parent for {img.config_digest}")
                img.parent = parent
        return images

    def _index_manifests(self) -> dict[str, list[tuple[bytes, str, list[Descriptor]]]]:
        """Manifests reachable from index.json whose bytes are in the archive, by config digest (best effort)."""
        out: dict[str, list[tuple[bytes, str, list[Descriptor]]]] = {}
        if "index.json" not in self.files:
            return out
        try:
            index = self.read_json("index.json")
            todo = [(d, 0) for d in index.get("manifests") or []]
            seen: set[str] = set()
            while todo:
                d, depth = todo.pop(0)
                desc = Descriptor.from_json(d)
                if desc.digest in seen or not DIGEST_RE.match(desc.digest):
                    continue
                seen.add(desc.digest)
                entry = self.files.get(blob_name(desc.digest, "manifest"))
                if not isinstance(entry, SmallFile):
                    continue
                raw = entry.read()
                doc = json.loads(raw)
                media = doc.get("mediaType") or desc.media_type
                if media in mt.INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
                    if depth < _MAX_INDEX_DEPTH:
                        todo.extend((m, depth + 1) for m in doc.get("manifests") or [])
                    continue
                cfg = Descriptor.from_json(doc["config"])
                layers = [Descriptor.from_json(x) for x in doc.get("layers") or []]
                out.setdefault(cfg.digest, []).append((raw, media, layers))
        except (DockwrightError, ValueError, TypeError, KeyError, AttributeError):
            return out
        return out

    # ---- 2. OCI layout
    def images_from_oci_layout(self) -> list[LoadedImage]:
        """The images of index.json, without manifest.json (format 2)."""
        if "oci-layout" in self.files:
            layout = self.read_json("oci-layout")
            version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
            if version != "1.0.0":
                raise ArchiveError(f"invalid archive: unsupported OCI layout version {version!r}")
        index = self.read_json("index.json")
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise ArchiveError("invalid archive: index.json is not an image index")
        by_manifest: dict[str, LoadedImage] = {}
        order: list[LoadedImage] = []
        for n, d in enumerate(index.get("manifests") or []):
            desc = _descriptor(d, f"index.json entry {n}")
            name = _oci_name(desc.annotations or {})
            chosen = self._choose(desc, 0, f"index.json entry {n}")
            if chosen is None:
                continue
            mdesc, raw = chosen
            img = by_manifest.get(mdesc.digest)
            if img is None:
                img = self._image_from_manifest(mdesc, raw)
                if img is None:
                    continue
                by_manifest[mdesc.digest] = img
                order.append(img)
            if name and name not in img.repo_tags:
                img.repo_tags.append(name)
        return order

    def _choose(self, desc: Descriptor, depth: int, what: str) -> tuple[Descriptor, bytes] | None:
        """The manifest to load for an index.json entry: itself, or one picked from a (nested) index."""
        media = desc.media_type
        raw = self.blob_bytes(desc.digest, what)
        _check_size(desc, len(raw), what)
        doc = parse_object(raw, what)
        media = media or doc.get("mediaType") or ""
        if media not in mt.INDEX_TYPES and not (not media and "manifests" in doc):
            return desc, raw
        if depth >= _MAX_INDEX_DEPTH:
            raise ArchiveError(f"invalid archive: {what}: image indexes nested too deep")
        candidates: list[tuple[Descriptor, bytes]] = []
        for n, m in enumerate(doc.get("manifests") or []):
            sub = _descriptor(m, f"{what}, manifest {n}")
            ann = sub.annotations or {}
            if ann.get(_ANNOTATION_REFERENCE_TYPE) == "attestation-manifest":
                continue
            if sub.platform is not None and sub.platform.os == "unknown":
                continue
            if not isinstance(self.files.get(blob_name(sub.digest, what)), SmallFile):
                continue  # not in the archive (a platform that was not exported)
            got = self._choose(sub, depth + 1, f"{what}, manifest {n}")
            if got is not None:
                candidates.append(got)
        if not candidates:
            return None
        want = self.platform or host_platform()
        for cand in candidates:
            if cand[0].platform is not None and want.matches(cand[0].platform) and \
                    (not want.variant or cand[0].platform.normalized().variant == want.variant):
                return cand
        for cand in candidates:
            if cand[0].platform is not None and want.matches(cand[0].platform):
                return cand
        if self.platform is not None:
            # descriptors without a platform: decided by their config in _image_from_manifest
            unknown = [c for c in candidates if c[0].platform is None]
            return unknown[0] if unknown else None
        return candidates[0]

    def _image_from_manifest(self, desc: Descriptor, raw: bytes) -> LoadedImage | None:
        what = f"manifest {desc.digest}"
        doc = parse_object(raw, what)
        if doc.get("schemaVersion") == 1:
            raise ArchiveError(f"invalid archive: {what}: schema 1 manifests are not supported")
        media = doc.get("mediaType") or desc.media_type or mt.OCI_MANIFEST
        if media not in mt.MANIFEST_TYPES:
            raise ArchiveError(f"invalid archive: {what}: unsupported media type {media!r}")
        cfg_desc = _descriptor(doc.get("config"), f"{what}: config")
        if cfg_desc.media_type and cfg_desc.media_type not in mt.CONFIG_TYPES:
            return None  # an artifact (attestation, chart, signature…), not an image
        config_raw = self.blob_bytes(cfg_desc.digest, f"config of {what}")
        _check_size(cfg_desc, len(config_raw), f"config of {what}")
        cfg = self.image_config(config_raw, f"config {cfg_desc.digest}")
        if not self.platform_ok(cfg):
            return None
        layer_descs = [_descriptor(x, f"{what}: layer {i}") for i, x in enumerate(doc.get("layers") or [])]
        layers: list[LoadedLayer] = []
        for i, ld in enumerate(layer_descs):
            lwhat = f"layer {i} of {what}"
            final, entry = self.resolve(blob_name(ld.digest, lwhat), lwhat)
            _check_size(ld, entry.size, lwhat)
            layers.append(self.layer(final, lwhat))
        self._check_layers(cfg, layers)
        keep = all(lay.digest == ld.digest for lay, ld in zip(layers, layer_descs, strict=True))
        if keep:
            layers = [_with_media(lay, ld.media_type) for lay, ld in zip(layers, layer_descs, strict=True)]
            return LoadedImage(config_raw, cfg_desc.digest, layers, [], raw, media)
        return LoadedImage(config_raw, cfg_desc.digest, layers, [], None, None)


def _descriptor(d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise ArchiveError(f"invalid archive: {what}: invalid descriptor")
    try:
        desc = Descriptor.from_json(d)
    except (TypeError, ValueError, KeyError) as exc:
        raise ArchiveError(f"invalid archive: {what}: invalid descriptor") from exc
    if not DIGEST_RE.match(desc.digest):
        raise ArchiveError(f"invalid archive: {what}: unsupported or invalid digest {desc.digest!r}")
    if desc.annotations is not None and not isinstance(desc.annotations, dict):
        raise ArchiveError(f"invalid archive: {what}: invalid annotations")
    return desc


def _check_size(desc: Descriptor, size: int, what: str) -> None:
    if desc.size != size:
        raise ArchiveError(f"invalid archive: {what}: {desc.digest} has {size} bytes, the descriptor says {desc.size}")


def _with_media(layer: LoadedLayer, media_type: str) -> LoadedLayer:
    if not media_type or media_type == layer.media_type:
        return layer
    return LoadedLayer(layer.digest, media_type, layer.size, layer.diff_id, layer.diff_size, layer.tar_size)


def _match_manifest(candidates: list[tuple[bytes, str, list[Descriptor]]],
                    layers: list[LoadedLayer]) -> tuple[bytes | None, str | None, list[LoadedLayer]]:
    """The archive's manifest for exactly these layer blobs, if there is one."""
    for raw, media, descs in candidates:
        if media not in mt.MANIFEST_TYPES or len(descs) != len(layers):
            continue
        if all(d.digest == lay.digest and d.size == lay.size for d, lay in zip(descs, layers, strict=True)):
            return raw, media, [_with_media(lay, d.media_type) for lay, d in zip(layers, descs, strict=True)]
    return None, None, layers


def _docker_tag(repo_tag: Any) -> str:
    """A manifest.json RepoTags value as dockerd accepts it: a normalised, tagged reference."""
    if not isinstance(repo_tag, str):
        raise ArchiveError(f"invalid tag {json.dumps(repo_tag)}")
    try:
        ref = refs.parse_normalized_named(repo_tag)
    except InvalidReference as exc:
        raise ArchiveError(f"invalid archive: RepoTags {repo_tag!r}: {exc}") from exc
    if not ref.tag:
        raise ArchiveError(f"invalid tag {json.dumps(repo_tag)}")
    return str(refs.Reference(ref.domain, ref.path, ref.tag))


def _oci_name(annotations: dict[str, str]) -> str | None:
    """The image name of an index.json entry (see the module docstring)."""
    name = annotations.get(_ANNOTATION_IMAGE_NAME)
    if not name:
        ref_name = annotations.get(_ANNOTATION_REF_NAME) or ""
        if "/" not in ref_name and ":" not in ref_name:
            return None  # a bare tag: no repository to put it in
        name = ref_name
    if not isinstance(name, str):
        return None
    try:
        ref = refs.parse_normalized_named(name)
    except InvalidReference:
        return None  # dockerd (containerd store) loads such an image untagged
    if not ref.tag:
        if ref.digest:
            return None
        ref = refs.tag_name_only(ref)
    return str(refs.Reference(ref.domain, ref.path, ref.tag))


def _history_key(h: Any) -> tuple[Any, ...]:
    if not isinstance(h, dict):
        return (None,)
    return (h.get("author") or "", h.get("created_by") or "", h.get("comment") or "", bool(h.get("empty_layer")))


def _valid_parent(child: list[Any], parent: list[Any]) -> bool:
    """moby's checkValidParent: the parent's history is the child's minus its last entry."""
    if not child and not parent:
        return True
    if len(child) - len(parent) != 1:
        return False
    for hp, hc in zip(parent, child, strict=False):  # the child's last entry has no counterpart
        cp = hp.get("created") if isinstance(hp, dict) else None
        cc = hc.get("created") if isinstance(hc, dict) else None
        if (cp is None) != (cc is None):
            return False
        if cp is not None and parse_rfc3339(str(cp)) != parse_rfc3339(str(cc)):
            return False
        if _history_key(hp) != _history_key(hc):
            return False
    return True


# ---- pre-1.10 configs (moby image/v1: HistoryFromConfig, MakeConfigFromV1Config)
