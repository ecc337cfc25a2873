"""Tests of dockwright.archive.load: the dockerd 20.10 and skopeo fixtures, archives built with tarfile in
every format ``docker load`` accepts, every outer compression, hostile archives, and a 200 MB round trip
under tracemalloc. Real stores in tmp_path; nothing mocked."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import io
import json
import lzma
import random
import tarfile
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from dockwright import reference as refs
from dockwright.archive import (
    ArchiveError,
    LoadedImage,
    LoadResult,
    SaveImage,
    SaveLayer,
    read_archive,
    write_save,
)
from dockwright.content.store import ContentStore
from dockwright.errors import DataCorrupted
from dockwright.layers.ingest import LayerIngester
from dockwright.oci.platform import Platform

from conftest import FIXTURES

SAVE_BUSYBOX = FIXTURES / "dockerd-20.10-save-busybox.tar"
SAVE_WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"
SKOPEO = FIXTURES / "skopeo-oci-archive-whiteouts.tar"
INSPECT_WHITEOUTS = FIXTURES / "dockerd-20.10-inspect-whiteouts.json"
needs_fixtures = pytest.mark.skipif(not SAVE_WHITEOUTS.exists(), reason="shared fixtures missing")

BB_ID = "sha256:e16d1152884b232c46812c11c6cf9c41cc64ee17a8a1a43fccf6301eae32d59c"
WHITEOUTS_ID = "sha256:2154d5e589da22a2c1c4fc32e3eff1d58e5c22386fe6918dd604a64db407d2f7"
SKOPEO_CONFIG = "sha256:2cc494ccb804d83625b45315101d3affd09319de5e72920063e0abc3874d2db6"
SKOPEO_MANIFEST = "sha256:bdf604ba4844afdfb7ba3d3bdf0bcf5bf3ef2f712d86981897c3259e4dcecc59"
WHITEOUTS_DIFF_IDS = [
    "sha256:0c40d62a6db4b9e4b73f41b0f637f4da95754650266b50fd15760357c1b33b19",
    "sha256:9d383a4f6398e120fff120fb252a1104b08e83b158aedb899d9ea19d533ccc1e",
    "sha256:959d6faf3e8ab93bdf4fc7f8e9f91d92bd984300396ea9b388dfe7dec3cf1057",
]
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


# ---------------------------------------------------------------------------------------- helpers
def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def agen(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def file_chunks(path: Path, size: int = 1 << 16) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def load(data: bytes | Path, store: ContentStore, tmp: Path, **kw: Any) -> LoadResult:
    src = file_chunks(data) if isinstance(data, Path) else agen(data)
    return asyncio.run(read_archive(src, store, tmp_dir=tmp / "load-tmp", **kw))


def new_store(tmp: Path, name: str = "store") -> ContentStore:
    return ContentStore(tmp / name)


def make_tar(entries: list[tuple[str, Any]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, bytes) files, (name, None) directories, (name, ("symlink"|"hardlink", target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if value is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            elif isinstance(value, tuple):
                info.type = tarfile.SYMTYPE if value[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = value[1]
                tf.addfile(info)
            else:
                info.size = len(value)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def layer_tar(files: dict[str, bytes]) -> bytes:
    return make_tar([(n, d) for n, d in files.items()])


def config_for(diff_ids: list[str], *, arch: str = "amd64", os_: str = "linux", created: str = "2024-01-02T03:04:05Z",
               history: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> bytes:
    cfg = {"architecture": arch, "os": os_, "created": created, "config": {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": history if history is not None else [{"created": created} for _ in diff_ids]}
    cfg.update(extra or {})
    return json.dumps(cfg, separators=(",", ":")).encode()


def oci_manifest(config: bytes, layers: list[tuple[bytes, str]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": mt, "digest": sha(b), "size": len(b)} for b, mt in layers],
    }, separators=(",", ":")).encode()


def blob(data: bytes) -> tuple[str, bytes]:
    return "blobs/sha256/" + hashlib.sha256(data).hexdigest(), data


def assert_clean(store: ContentStore, exc: BaseException | None = None) -> None:
    """No ingest is left, and every blob in the (initially empty) store is one the error reports."""
    assert list(store.ingests()) == []
    if exc is not None:
        assert isinstance(exc, ArchiveError)
        assert set(store.walk()) <= exc.blobs


def expect_corrupt(data: bytes, tmp: Path, match: str, **kw: Any) -> ArchiveError:
    store = new_store(tmp, "hostile")
    with pytest.raises(DataCorrupted, match=match) as info:
        load(data, store, tmp, **kw)
    assert_clean(store, info.value)
    return info.value  # type: ignore[return-value]


def docker25_archive(images: list[tuple[bytes, list[bytes], list[str]]]) -> bytes:
    """A Docker 25+ classic-store archive: uncompressed layers named by DiffID, generated OCI manifests,
    index.json with name annotations, manifest.json and repositories; blobs first, as dockerd sorts them."""
    blobs: dict[str, bytes] = {}
    index: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    repos: dict[str, dict[str, str]] = {}
    for config, layers, tags in images:
        for lay in layers:
            blobs[sha(lay)] = lay
        blobs[sha(config)] = config
        manifest = oci_manifest(config, [(lay, "application/vnd.oci.image.layer.v1.tar") for lay in layers])
        blobs[sha(manifest)] = manifest
        desc = {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}
        for t in tags:
            r = refs.parse_normalized_named(t)
            index.append({**desc, "annotations": {"io.containerd.image.name": str(r),
                                                  "org.opencontainers.image.ref.name": r.tag}})
            repos.setdefault(r.familiar_name, {})[r.tag or ""] = hashlib.sha256(layers[-1]).hexdigest()
        if not tags:
            index.append(desc)
        items.append({"Config": "blobs/sha256/" + sha(config)[7:], "RepoTags": tags or None,
                      "Layers": ["blobs/sha256/" + sha(lay)[7:] for lay in layers]})
    entries: list[tuple[str, Any]] = [("blobs", None), ("blobs/sha256", None)]
    entries += [("blobs/sha256/" + d[7:], b) for d, b in sorted(blobs.items())]
    entries += [("index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}).encode()),
                ("manifest.json", json.dumps(items).encode() + b"\n"),
                ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')]
    if repos:
        entries.append(("repositories", json.dumps(repos).encode() + b"\n"))
    return make_tar(entries)


def oci_layout(blobs: list[bytes], index: list[dict[str, Any]]) -> bytes:
    entries: list[tuple[str, Any]] = [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                                      ("index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())]
    seen = set()
    for b in blobs:
        if sha(b) not in seen:
            seen.add(sha(b))
            entries.append(blob(b))
    return make_tar(entries)


def desc(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def to_save_image(img: LoadedImage) -> SaveImage:
    """What the engine would hand write_save for a loaded image (a schema2 manifest when none was kept)."""
    raw, media = img.manifest_raw, img.manifest_media_type
    if raw is None:
        media = DOCKER_MANIFEST
        raw = json.dumps({
            "schemaVersion": 2, "mediaType": media,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(img.config_raw),
                       "digest": img.config_digest},
            "layers": [{"mediaType": lay.media_type, "size": lay.size, "digest": lay.digest} for lay in img.layers],
        }, indent=3).encode()
    assert media is not None
    return SaveImage(img.config_digest, img.config_raw, sha(raw), raw, media,
                     [SaveLayer(lay.digest, lay.size, lay.media_type, lay.diff_id) for lay in img.layers],
                     repo_tags=[refs.familiarize(t) for t in img.repo_tags], full_names=list(img.repo_tags))


def store_opener(store: ContentStore, chunk: int = 1 << 20):  # type: ignore[no-untyped-def]
    async def open_blob(digest: str) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(store.open, digest)
        try:
            while data := await asyncio.to_thread(f.read, chunk):
                yield data
        finally:
            f.close()
    return open_blob


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def summary(res: LoadResult) -> list[tuple[str, list[str], list[str]]]:
    return [(img.config_digest, sorted(img.repo_tags), [lay.diff_id for lay in img.layers]) for img in res.images]


# ---------------------------------------------------------------------------------------- fixtures
@needs_fixtures
def test_dockerd_2010_busybox_fixture(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    events: list[tuple[str, str, int, int | None]] = []
    res = load(SAVE_BUSYBOX, store, tmp_path, progress=lambda *a: events.append(a))
    assert len(res.images) == 1
    img = res.images[0]
    assert img.config_digest == BB_ID
    assert sha(img.config_raw) == BB_ID
    assert img.repo_tags == ["docker.io/library/bb:1"]
    assert img.manifest_raw is None and img.manifest_media_type is None  # legacy archive: no manifest
    (lay,) = img.layers
    assert lay.diff_id == WHITEOUTS_DIFF_IDS[0]
    # an uncompressed layer.tar is stored as it is (as containerd does): its digest is its DiffID
    assert lay.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert lay.digest == lay.diff_id
    assert lay.tar_size == 1996800
    assert store.exists(lay.digest) and store.size(lay.digest) == lay.size == 1996800
    assert hashlib.sha256(store.read(lay.digest)).hexdigest() == lay.diff_id[7:]
    assert res.blobs == {lay.digest} and res.unused == set()
    assert_clean(store)
    # progress: throttled "Loading layer" events keyed by the layer directory, ending at the total
    assert events and all(e[0] == "Loading layer" and e[1] == "b578aa3fbaa2" for e in events)
    assert events[-1][2:] == (1996800, 1996800)
    assert len(events) <= 1996800 // (512 << 10) + 2


@needs_fixtures
def test_dockerd_2010_whiteouts_fixture(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    res = load(SAVE_WHITEOUTS, store, tmp_path)
    (img,) = res.images
    assert img.config_digest == WHITEOUTS_ID
    assert img.repo_tags == ["docker.io/fixture/whiteouts:1"]
    assert [lay.diff_id for lay in img.layers] == WHITEOUTS_DIFF_IDS
    # the sizes dockerd reported for this image
    inspect = json.loads(INSPECT_WHITEOUTS.read_text())[0]
    assert sum(lay.diff_size for lay in img.layers) == inspect["Size"]
    assert_clean(store)


@needs_fixtures
def test_skopeo_oci_archive_fixture(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    res = load(SKOPEO, store, tmp_path)
    (img,) = res.images
    assert img.config_digest == SKOPEO_CONFIG
    # the ref.name annotation is a whole reference, as skopeo writes it
    assert img.repo_tags == ["docker.io/fixture/whiteouts:1"]
    assert img.manifest_media_type == OCI_MANIFEST
    assert img.manifest_raw is not None and sha(img.manifest_raw) == SKOPEO_MANIFEST
    assert [lay.diff_id for lay in img.layers] == WHITEOUTS_DIFF_IDS
    # layers kept byte for byte (gzip), with the manifest's media types
    manifest = json.loads(img.manifest_raw)
    assert [lay.digest for lay in img.layers] == [d["digest"] for d in manifest["layers"]]
    assert all(lay.media_type == "application/vnd.oci.image.layer.v1.tar+gzip" for lay in img.layers)
    assert res.blobs == {lay.digest for lay in img.layers}
    assert_clean(store)


@needs_fixtures
def test_recompressed_layer_is_the_same_blob_whatever_the_archive(tmp_path: Path) -> None:
    """bb:1's layer is the base layer of fixture/whiteouts:1: loading both (read in different chunk sizes,
    the layer at different offsets) stores it once."""
    store = new_store(tmp_path)
    bb = asyncio.run(read_archive(file_chunks(SAVE_BUSYBOX, 777), store, tmp_dir=tmp_path / "t")).images[0]
    wo = asyncio.run(read_archive(agen(gzip.compress(SAVE_WHITEOUTS.read_bytes()), 100_000), store,
                                  tmp_dir=tmp_path / "t")).images[0]
    assert wo.layers[0] == bb.layers[0]
    assert len(list(store.walk())) == 3


@needs_fixtures
@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_outer_compression(tmp_path: Path, kind: str) -> None:
    raw = SAVE_WHITEOUTS.read_bytes()
    data = {"gzip": lambda b: gzip.compress(b, 1), "bzip2": bz2.compress, "xz": lzma.compress,
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[kind](raw)
    store = new_store(tmp_path)
    res = load(data, store, tmp_path)
    assert summary(res) == [(WHITEOUTS_ID, ["docker.io/fixture/whiteouts:1"], WHITEOUTS_DIFF_IDS)]
    assert_clean(store)


@needs_fixtures
def test_outer_gzip_multi_member_and_tiny_chunks(tmp_path: Path) -> None:
    raw = SAVE_BUSYBOX.read_bytes()
    half = len(raw) // 2
    data = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    store = new_store(tmp_path)
    res = asyncio.run(read_archive(agen(data, 777), store, tmp_dir=tmp_path / "t"))
    assert res.images[0].config_digest == BB_ID


@needs_fixtures
@pytest.mark.parametrize("fixture", [SAVE_BUSYBOX, SAVE_WHITEOUTS, SKOPEO])
def test_round_trip(tmp_path: Path, fixture: Path) -> None:
    store = new_store(tmp_path)
    first = load(fixture, store, tmp_path)
    saved = asyncio.run(collect(write_save([to_save_image(i) for i in first.images], store_opener(store))))
    store2 = new_store(tmp_path, "store2")
    second = load(saved, store2, tmp_path)
    assert summary(second) == summary(first)
    for a, b in zip(first.images, second.images, strict=True):
        assert a.config_raw == b.config_raw
        # our archive carries the stored (compressed) blobs and an OCI manifest for exactly them
        assert [lay.digest for lay in b.layers] == [lay.digest for lay in a.layers]
        assert b.manifest_media_type == OCI_MANIFEST and b.manifest_raw is not None
        if a.manifest_media_type == OCI_MANIFEST:
            assert b.manifest_raw == a.manifest_raw
    assert second.unused == set()
    assert_clean(store2)


@needs_fixtures
def test_two_fixtures_in_one_save_share_the_base_layer(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    images = load(SAVE_BUSYBOX, store, tmp_path).images + load(SAVE_WHITEOUTS, store, tmp_path).images
    saved = asyncio.run(collect(write_save([to_save_image(i) for i in images], store_opener(store))))
    names = tarfile.open(fileobj=io.BytesIO(saved)).getnames()
    assert names.count("blobs/sha256/" + images[0].layers[0].digest[7:]) == 1
    res = load(saved, new_store(tmp_path, "s2"), tmp_path)
    assert summary(res) == [(BB_ID, ["docker.io/library/bb:1"], WHITEOUTS_DIFF_IDS[:1]),
                            (WHITEOUTS_ID, ["docker.io/fixture/whiteouts:1"], WHITEOUTS_DIFF_IDS)]
    assert res.images[1].layers[0] == res.images[0].layers[0]


# ---------------------------------------------------------------------------------------- formats
def test_docker25_layout_uncompressed_layers_are_recompressed(tmp_path: Path) -> None:
    l1 = layer_tar({"a": b"one"})
    l2 = layer_tar({"b": b"two" * 1000})
    cfg = config_for([sha(l1), sha(l2)])
    base = config_for([sha(l1)])
    data = docker25_archive([(cfg, [l1, l2], ["example.com/app:v1", "app:latest"]), (base, [l1], [])])
    store = new_store(tmp_path)
    res = load(data, store, tmp_path)
    assert summary(res) == [(sha(cfg), ["docker.io/library/app:latest", "example.com/app:v1"], [sha(l1), sha(l2)]),
                            (sha(base), [], [sha(l1)])]
    for img in res.images:
        # the uncompressed tars are kept as they are, so the archive's manifest still names the stored blobs
        assert img.manifest_raw is not None
        for lay in img.layers:
            assert lay.media_type == "application/vnd.oci.image.layer.v1.tar"
            assert store.read(lay.digest) in (l1, l2)
    assert res.images[1].layers[0].digest == res.images[0].layers[0].digest
    assert_clean(store)


def test_manifest_json_with_compressed_blobs_keeps_the_index_manifest(tmp_path: Path) -> None:
    """The containerd store's save: compressed blobs, OCI manifest in index.json, manifest.json beside."""
    l1 = layer_tar({"x": b"x" * 5000})
    g1 = gzip.compress(l1)
    z2 = zstandard.ZstdCompressor().compress(layer_tar({"y": b"y"}))
    l2 = zstandard.ZstdDecompressor().decompress(z2)
    cfg = config_for([sha(l1), sha(l2)])
    man = oci_manifest(cfg, [(g1, "application/vnd.oci.image.layer.v1.tar+gzip"),
                             (z2, "application/vnd.oci.image.layer.v1.tar+zstd")])
    items = [{"Config": "blobs/sha256/" + sha(cfg)[7:], "RepoTags": ["busybox:latest"],
              "Layers": ["blobs/sha256/" + sha(g1)[7:], "blobs/sha256/" + sha(z2)[7:]]}]
    index = {"schemaVersion": 2, "manifests": [desc(man, OCI_MANIFEST, annotations={
        "io.containerd.image.name": "docker.io/library/busybox:latest"})]}
    data = make_tar([blob(cfg), blob(g1), blob(z2), blob(man), ("index.json", json.dumps(index).encode()),
                     ("manifest.json", json.dumps(items).encode()), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')])
    store = new_store(tmp_path)
    (img,) = load(data, store, tmp_path).images
    assert img.manifest_raw == man and img.manifest_media_type == OCI_MANIFEST
    assert [lay.digest for lay in img.layers] == [sha(g1), sha(z2)]
    assert [lay.media_type for lay in img.layers] == ["application/vnd.oci.image.layer.v1.tar+gzip",
                                                      "application/vnd.oci.image.layer.v1.tar+zstd"]
    assert store.read(sha(z2)) == z2  # zstd kept as it is
    assert img.repo_tags == ["docker.io/library/busybox:latest"]


def test_legacy_symlinked_layers_and_parent(tmp_path: Path) -> None:
    """Docker ≤ 24: a layer already written is repeated as a relative symlink; Parent is kept when valid."""
    l1 = layer_tar({"base": b"b"})
    l2 = layer_tar({"top": b"t"})
    h1 = [{"created": "2024-01-01T00:00:00Z", "created_by": "one"}]
    h2 = h1 + [{"created": "2024-01-02T00:00:00.000000000Z", "created_by": "two"}]
    base = config_for([sha(l1)], history=h1)
    child = config_for([sha(l1), sha(l2)], history=h2)
    other = config_for([sha(l1)], history=[{"created": "2024-01-01T00:00:00Z", "created_by": "other"}],
                       extra={"comment": "x"})
    ida, idb, idc = "a" * 64, "b" * 64, "c" * 64
    items = [
        {"Config": sha(base)[7:] + ".json", "RepoTags": ["base:1"], "Layers": [f"{ida}/layer.tar"]},
        {"Config": sha(child)[7:] + ".json", "RepoTags": ["child:1", "child:2"],
         "Layers": [f"{idb}/layer.tar", f"{idc}/layer.tar"], "Parent": sha(base)},
        {"Config": sha(other)[7:] + ".json", "RepoTags": None, "Layers": [f"{ida}/layer.tar"],
         "Parent": "sha256:" + "f" * 64},  # parent not in the archive: dropped, as dockerd does
    ]
    data = make_tar([
        (ida, None), (f"{ida}/VERSION", b"1.0"), (f"{ida}/json", b"{}"), (f"{ida}/layer.tar", l1),
        (idb, None), (f"{idb}/layer.tar", ("symlink", f"../{ida}/layer.tar")),
        (idc, None), (f"{idc}/layer.tar", l2),
        (sha(base)[7:] + ".json", base), (sha(child)[7:] + ".json", child), (sha(other)[7:] + ".json", other),
        ("manifest.json", json.dumps(items).encode()),
    ])
    store = new_store(tmp_path)
    res = load(data, store, tmp_path)
    assert summary(res) == [
        (sha(base), ["docker.io/library/base:1"], [sha(l1)]),
        (sha(child), ["docker.io/library/child:1", "docker.io/library/child:2"], [sha(l1), sha(l2)]),
        (sha(other), [], [sha(l1)]),
    ]
    assert [i.parent for i in res.images] == ["", sha(base), ""]
    assert len(res.blobs) == 2  # the symlinked layer was stored once
    assert_clean(store)


def test_hard_linked_layer(tmp_path: Path) -> None:
    l1 = layer_tar({"a": b"a"})
    cfg = config_for([sha(l1), sha(l1)])
    items = [{"Config": "c.json", "RepoTags": ["h:1"], "Layers": ["a/layer.tar", "b/layer.tar"]}]
    data = make_tar([("a/layer.tar", l1), ("b/layer.tar", ("hardlink", "a/layer.tar")), ("c.json", cfg),
                     ("manifest.json", json.dumps(items).encode())])
    (img,) = load(data, new_store(tmp_path), tmp_path).images
    assert img.layers[0] == img.layers[1]


def test_invalid_parent_is_refused(tmp_path: Path) -> None:
    l1 = layer_tar({"a": b"a"})
    base = config_for([sha(l1)], history=[{"created": "2024-01-01T00:00:00Z", "created_by": "x"}])
    child = config_for([sha(l1)], history=[{"created": "2024-01-01T00:00:00Z", "created_by": "y"}])
    items = [{"Config": "b.json", "RepoTags": None, "Layers": ["l.tar"]},
             {"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"], "Parent": sha(base)}]
    data = make_tar([("l.tar", l1), ("b.json", base), ("c.json", child), ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "is not a valid parent")


def test_go_containerregistry_tarball_names(tmp_path: Path) -> None:
    """crane/ko write the config as "sha256:<hex>" and layers as "<hex>.tar.gz", manifest.json last."""
    l1 = layer_tar({"app": b"bin"})
    g1 = gzip.compress(l1)
    cfg = config_for([sha(l1)])
    items = [{"Config": sha(cfg), "RepoTags": ["ghcr.io/x/app:1"], "Layers": [sha(g1)[7:] + ".tar.gz"]}]
    data = make_tar([(sha(cfg), cfg), (sha(g1)[7:] + ".tar.gz", g1), ("manifest.json", json.dumps(items).encode())])
    store = new_store(tmp_path)
    (img,) = load(data, store, tmp_path).images
    assert img.config_digest == sha(cfg) and img.repo_tags == ["ghcr.io/x/app:1"]
    assert img.layers[0].digest == sha(g1)  # gzip kept as it is
    assert img.manifest_raw is None


def test_manifest_json_platform_filter(tmp_path: Path) -> None:
    la = layer_tar({"amd": b"1"})
    lb = layer_tar({"arm": b"2"})
    ca = config_for([sha(la)], arch="amd64")
    cb = config_for([sha(lb)], arch="arm64")
    items = [{"Config": "a.json", "RepoTags": ["x:amd"], "Layers": ["a.tar"]},
             {"Config": "b.json", "RepoTags": ["x:arm"], "Layers": ["b.tar"]}]
    data = make_tar([("a.tar", la), ("b.tar", lb), ("a.json", ca), ("b.json", cb),
                     ("manifest.json", json.dumps(items).encode())])
    store = new_store(tmp_path)
    res = load(data, store, tmp_path, platform=Platform("linux", "arm64"))
    assert [i.repo_tags for i in res.images] == [["docker.io/library/x:arm"]]
    assert len(res.unused) == 1  # the amd64 layer was stored before the filter applied
    assert len(load(data, new_store(tmp_path, "s2"), tmp_path).images) == 2
    # an unknown OS is refused as dockerd does
    cw = config_for([sha(la)], os_="windows")
    data = make_tar([("a.tar", la), ("a.json", cw),
                     ("manifest.json", json.dumps([{"Config": "a.json", "Layers": ["a.tar"]}]).encode())])
    expect_corrupt(data, tmp_path, "cannot load windows image on linux")


def test_empty_manifest_list_is_accepted(tmp_path: Path) -> None:
    res = load(make_tar([("manifest.json", b"[]")]), new_store(tmp_path), tmp_path)
    assert res.images == [] and res.blobs == set()


def test_oci_layout_nested_index_and_platforms(tmp_path: Path) -> None:
    """buildx type=oci: a multi-platform index with an attestation manifest, nested under index.json."""
    la = gzip.compress(layer_tar({"amd": b"a"}))
    lb = gzip.compress(layer_tar({"arm": b"b"}))
    ca = config_for([sha(gzip.decompress(la))], arch="amd64")
    cb = config_for([sha(gzip.decompress(lb))], arch="arm64", extra={"variant": "v8"})
    ma = oci_manifest(ca, [(la, "application/vnd.oci.image.layer.v1.tar+gzip")])
    mb = oci_manifest(cb, [(lb, "application/vnd.oci.image.layer.v1.tar+gzip")])
    att_cfg = b'{"x":1}'
    att_layer = b'{"predicate":{}}'
    att = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": desc(att_cfg, "application/vnd.oci.image.config.v1+json"),
                      "layers": [desc(att_layer, "application/vnd.in-toto+json")]}).encode()
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        desc(att, OCI_MANIFEST, platform={"architecture": "unknown", "os": "unknown"},
             annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        desc(ma, OCI_MANIFEST, platform={"architecture": "amd64", "os": "linux"}),
        desc(mb, OCI_MANIFEST, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]}).encode()
    top = [desc(idx, OCI_INDEX, annotations={"io.containerd.image.name": "docker.io/library/multi:1",
                                             "org.opencontainers.image.ref.name": "1"})]
    data = oci_layout([la, lb, ca, cb, ma, mb, att_cfg, att_layer, att, idx], top)
    for plat, want, unused in ((Platform("linux", "arm64"), sha(cb), {sha(la)}),
                               (Platform("linux", "amd64"), sha(ca), {sha(lb)})):
        store = new_store(tmp_path, f"s-{plat.architecture}")
        res = load(data, store, tmp_path, platform=plat)
        (img,) = res.images
        assert img.config_digest == want
        assert img.repo_tags == ["docker.io/library/multi:1"]
        assert img.manifest_raw in (ma, mb) and img.manifest_media_type == OCI_MANIFEST
        assert res.unused == unused
    # a platform the index lacks: nothing is loaded
    res = load(data, new_store(tmp_path, "s-s390x"), tmp_path, platform=Platform("linux", "s390x"))
    assert res.images == []


def test_oci_layout_names(tmp_path: Path) -> None:
    """Several entries: two names for one manifest (merged), a bare ref.name (untagged), no annotations."""
    l1 = gzip.compress(layer_tar({"f": b"1"}))
    cfg = config_for([sha(gzip.decompress(l1))])
    man = oci_manifest(cfg, [(l1, "application/vnd.oci.image.layer.v1.tar+gzip")])
    l2 = gzip.compress(layer_tar({"g": b"2"}))
    cfg2 = config_for([sha(gzip.decompress(l2))], created="2024-05-05T00:00:00Z")
    man2 = oci_manifest(cfg2, [(l2, "application/vnd.oci.image.layer.v1.tar+gzip")])
    index = [
        desc(man, OCI_MANIFEST, annotations={"org.opencontainers.image.ref.name": "reg.example:5000/team/app:2"}),
        desc(man, OCI_MANIFEST, annotations={"io.containerd.image.name": "docker.io/library/app:1",
                                             "org.opencontainers.image.ref.name": "1"}),
        desc(man2, OCI_MANIFEST, annotations={"org.opencontainers.image.ref.name": "latest"}),
        desc(man2, OCI_MANIFEST),
    ]
    res = load(oci_layout([l1, cfg, man, l2, cfg2, man2], index), new_store(tmp_path), tmp_path)
    assert [(i.config_digest, i.repo_tags) for i in res.images] == [
        (sha(cfg), ["reg.example:5000/team/app:2", "docker.io/library/app:1"]),
        (sha(cfg2), []),
    ]


def test_oci_layout_uncompressed_layer_keeps_the_manifest(tmp_path: Path) -> None:
    l1 = layer_tar({"f": b"1" * 3000})
    cfg = config_for([sha(l1)])
    man = oci_manifest(cfg, [(l1, "application/vnd.oci.image.layer.v1.tar")])
    store = new_store(tmp_path)
    (img,) = load(oci_layout([l1, cfg, man], [desc(man, OCI_MANIFEST)]), store, tmp_path).images
    assert img.manifest_raw == man
    assert store.read(img.layers[0].digest) == l1


def test_empty_layer_file(tmp_path: Path) -> None:
    """A zero-byte layer file is an empty tar to Go's reader."""
    cfg = config_for([sha(b"")])
    items = [{"Config": "c.json", "RepoTags": ["empty:1"], "Layers": ["l/layer.tar"]}]
    data = make_tar([("l/layer.tar", b""), ("c.json", cfg), ("manifest.json", json.dumps(items).encode())])
    store = new_store(tmp_path)
    (img,) = load(data, store, tmp_path).images
    assert img.layers[0].diff_id == sha(b"") and store.exists(img.layers[0].digest)


@needs_fixtures
def test_pre_110_repositories_only(tmp_path: Path) -> None:
    """No manifest.json: images made from the <id>/json chain as moby's MakeConfigFromV1Config does."""
    src = tarfile.open(SAVE_WHITEOUTS)
    entries: list[tuple[str, Any]] = []
    for m in src.getmembers():
        if m.name == "manifest.json" or m.name.endswith(".json") and "/" not in m.name:
            continue
        entries.append((m.name, None if m.isdir() else src.extractfile(m).read()))  # type: ignore[union-attr]
    store = new_store(tmp_path)
    res = load(make_tar(entries), store, tmp_path)
    assert len(res.images) == 3  # every layer directory is an image, as dockerd loads them
    top = res.images[-1]
    assert top.repo_tags == ["docker.io/fixture/whiteouts:1"]
    assert [lay.diff_id for lay in top.layers] == WHITEOUTS_DIFF_IDS
    assert [i.parent for i in res.images] == ["", res.images[0].config_digest, res.images[1].config_digest]
    cfg = json.loads(top.config_raw)
    assert list(cfg) == sorted(cfg)
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": WHITEOUTS_DIFF_IDS}
    assert "id" not in cfg and "parent" not in cfg
    assert cfg["history"][-1] == {"created": "2026-11-22T10:35:03.931521159Z",
                                  "created_by": '/bin/sh -c #(nop)  CMD ["cat" "/data/a"]'}
    assert cfg["history"][0] == {"created": "1970-01-01T00:00:00Z"}
    assert cfg["config"]["Cmd"] == ["cat", "/data/a"]
    assert_clean(store)


def test_pre_110_config_bytes_are_gos(tmp_path: Path) -> None:
    """Values are kept as raw JSON, compacted with Go's HTML escaping; keys sorted; v1-only keys dropped."""
    l1 = layer_tar({"a": b"1"})
    v1 = (b'{\n  "id": "i1",\n  "comment": "a<b & c",  "Size": 12, "layer_id": "x",\n'
          b'  "created": "2015-06-01T10:00:00.500000000+00:00", "author": "me",\n'
          b'  "container_config": {"Cmd": "/bin/sh -c echo \\u00e9"}, "weird": 1e3, "os": "linux"}')
    data = make_tar([("i1/json", v1), ("i1/layer.tar", l1), ("repositories", b'{"r": {"t": "i1"}}')])
    (img,) = load(data, new_store(tmp_path), tmp_path).images
    assert img.repo_tags == ["docker.io/library/r:t"]
    assert img.config_raw == (
        b'{"author":"me","comment":"a\\u003cb \\u0026 c",'
        b'"container_config":{"Cmd":"/bin/sh -c echo \\u00e9"},'
        b'"created":"2015-06-01T10:00:00.500000000+00:00",'
        b'"history":[{"created":"2015-06-01T10:00:00.5Z","author":"me","created_by":"/bin/sh -c echo \xc3\xa9",'
        b'"comment":"a\\u003cb \\u0026 c"}],'
        b'"os":"linux","rootfs":{"type":"layers","diff_ids":["' + sha(l1).encode() + b'"]},"weird":1e3}')


def test_pre_110_bad_target(tmp_path: Path) -> None:
    l1 = layer_tar({"a": b"a"})
    data = make_tar([("i1/json", b'{"id":"i1","created":"2015-01-01T00:00:00Z"}'), ("i1/layer.tar", l1),
                     ("repositories", b'{"old":{"1":"nope"}}')])
    expect_corrupt(data, tmp_path, "invalid target ID: nope")
    loop = make_tar([("i1/json", b'{"id":"i1","parent":"i2"}'), ("i1/layer.tar", l1),
                     ("i2/json", b'{"id":"i2","parent":"i1"}'), ("i2/layer.tar", l1), ("repositories", b"{}")])
    expect_corrupt(loop, tmp_path, "loops")


# ---------------------------------------------------------------------------------------- hostile archives
def simple_archive(**over: Any) -> tuple[bytes, list[tuple[str, Any]]]:
    l1 = layer_tar({"f": b"data" * 100})
    cfg = config_for([sha(l1)])
    items = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    entries: list[tuple[str, Any]] = [("l/layer.tar", l1), ("c.json", cfg),
                                      ("manifest.json", json.dumps(items).encode())]
    return make_tar(entries), entries


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/abs/file"])
def test_hostile_entry_names(tmp_path: Path, name: str) -> None:
    _, entries = simple_archive()
    data = make_tar([(name, b"x")] + entries)
    expect_corrupt(data, tmp_path, "absolute path|points outside the archive")


@pytest.mark.parametrize("meta", ["manifest.json", "index.json"])
def test_symlinked_metadata(tmp_path: Path, meta: str) -> None:
    _, entries = simple_archive()
    data = make_tar([("real.json", b"[]")] + [e for e in entries if e[0] != meta] + [(meta, ("symlink", "real.json"))])
    expect_corrupt(data, tmp_path, f"{meta} is a symlink")


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "../../../x/layer.tar"])
def test_symlink_outside_the_archive(tmp_path: Path, target: str) -> None:
    _, entries = simple_archive()
    data = make_tar([("m/layer.tar", ("symlink", target))] + entries)
    expect_corrupt(data, tmp_path, "points outside the archive")


def test_symlink_to_missing_entry(tmp_path: Path) -> None:
    l1 = layer_tar({"f": b"1"})
    items = [{"Config": "c.json", "RepoTags": None, "Layers": ["b/layer.tar"]}]
    data = make_tar([("b/layer.tar", ("symlink", "../a/layer.tar")), ("c.json", config_for([sha(l1)])),
                     ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "links to a/layer.tar, which is not in the archive")


def test_symlink_loop(tmp_path: Path) -> None:
    items = [{"Config": "c.json", "RepoTags": None, "Layers": ["a"]}]
    data = make_tar([("a", ("symlink", "b")), ("b", ("symlink", "a")), ("c.json", config_for([sha(b"")])),
                     ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "too many levels of symbolic links")


@pytest.mark.parametrize("where", ["layer body", "config header", "config body", "manifest body"])
def test_truncated_tar(tmp_path: Path, where: str) -> None:
    data, entries = simple_archive()
    layer_end = 512 + len(entries[0][1]) + (-len(entries[0][1]) % 512)  # PAX tars have no extra header here
    config_end = layer_end + 512 + len(entries[1][1]) + (-len(entries[1][1]) % 512)
    cut = {"layer body": 512 + 1000, "config header": layer_end + 100, "config body": layer_end + 512 + 10,
           "manifest body": config_end + 512 + 5}[where]
    expect_corrupt(data[:cut], tmp_path, "unexpected EOF|truncated")


@needs_fixtures
def test_truncated_tar_inside_a_big_layer_leaves_no_ingest(tmp_path: Path) -> None:
    data = SAVE_BUSYBOX.read_bytes()
    expect_corrupt(data[:1_000_000], tmp_path, "unexpected EOF")


@needs_fixtures
@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_truncated_compressed_archive(tmp_path: Path, kind: str) -> None:
    raw = SAVE_WHITEOUTS.read_bytes()
    data = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[kind](raw)
    expect_corrupt(data[: len(data) * 2 // 3], tmp_path, "unexpected EOF|truncated")


def test_corrupt_compressed_archive(tmp_path: Path) -> None:
    data, _ = simple_archive()
    gz = bytearray(gzip.compress(data))
    gz[len(gz) // 2] ^= 0xFF
    gz[len(gz) // 2 + 1] ^= 0xFF
    expect_corrupt(bytes(gz), tmp_path, "invalid gzip data|unexpected EOF|checksum|invalid")


def test_bad_tar_header_checksum(tmp_path: Path) -> None:
    data = bytearray(simple_archive()[0])
    data[0] ^= 0x01  # the first header's name
    expect_corrupt(bytes(data), tmp_path, "checksum mismatch")


def test_wrong_blob_digest(tmp_path: Path) -> None:
    l1 = layer_tar({"f": b"1"})
    g1 = gzip.compress(l1)
    cfg = config_for([sha(l1)])
    man = oci_manifest(cfg, [(g1, "application/vnd.oci.image.layer.v1.tar+gzip")])
    for bad_name, bad_data in ((blob(g1)[0], gzip.compress(l1 + b"\0" * 512)),  # a compressed layer
                               (blob(cfg)[0], cfg + b" "),                      # a config
                               (blob(l1)[0], layer_tar({"g": b"2"}))):           # an uncompressed layer
        entries = [blob(g1), blob(cfg), blob(man), blob(l1)]
        entries = [(n, bad_data if n == bad_name else d) for n, d in entries]
        index = {"schemaVersion": 2, "manifests": [desc(man, OCI_MANIFEST)]}
        data = make_tar([("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                         ("index.json", json.dumps(index).encode()), *entries])
        err = expect_corrupt(data, tmp_path, f"{bad_name} has digest sha256:[0-9a-f]{{64}}: the file is corrupt")
        assert bad_name in str(err)


def test_giant_json(tmp_path: Path) -> None:
    data = make_tar([("manifest.json", b" " * (16 << 20) + b"[]")])
    expect_corrupt(data, tmp_path, "manifest.json is too large .*giant JSON")
    big_cfg = b'{"a":"' + b"x" * (16 << 20) + b'"}'
    items = [{"Config": "c.json", "RepoTags": None, "Layers": []}]
    data = make_tar([("c.json", big_cfg), ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "c.json is too large")


@pytest.mark.parametrize("drop", ["c.json", "l/layer.tar"])
def test_missing_referenced_file(tmp_path: Path, drop: str) -> None:
    _, entries = simple_archive()
    data = make_tar([e for e in entries if e[0] != drop])
    expect_corrupt(data, tmp_path, f"{drop} is not in the archive")


def test_missing_oci_blob(tmp_path: Path) -> None:
    l1 = gzip.compress(layer_tar({"f": b"1"}))
    cfg = config_for([sha(gzip.decompress(l1))])
    man = oci_manifest(cfg, [(l1, "application/vnd.oci.image.layer.v1.tar+gzip")])
    expect_corrupt(oci_layout([cfg, man], [desc(man, OCI_MANIFEST)]), tmp_path, "is not in the archive")
    expect_corrupt(oci_layout([l1, man], [desc(man, OCI_MANIFEST)]), tmp_path, "is not in the archive")
    expect_corrupt(oci_layout([l1, cfg], [desc(man, OCI_MANIFEST)]), tmp_path, "is not in the archive")


def test_diff_id_mismatch(tmp_path: Path) -> None:
    l1 = layer_tar({"f": b"1"})
    cfg = config_for(["sha256:" + "0" * 64])
    items = [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}]
    data = make_tar([("l.tar", l1), ("c.json", cfg), ("manifest.json", json.dumps(items).encode())])
    err = expect_corrupt(data, tmp_path, "invalid diffID for layer 0")
    assert err.blobs  # the layer was committed before the mismatch showed: the caller collects it
    cfg = config_for([sha(l1), sha(l1)])
    data = make_tar([("l.tar", l1), ("c.json", cfg), ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "layers length mismatch: expected 1, got 2")


def test_layer_that_is_not_a_tar(tmp_path: Path) -> None:
    bad = gzip.compress(b"this is not a tar" * 100)
    cfg = config_for([sha(gzip.decompress(bad))])
    items = [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar.gz"]}]
    data = make_tar([("l.tar.gz", bad), ("c.json", cfg), ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "l.tar.gz is not a valid layer")
    # a layer whose tar climbs out of the root
    evil = make_tar([("../../etc/cron.d/x", b"* * * * * root sh")])
    cfg = config_for([sha(evil)])
    data = make_tar([("l.tar.gz", gzip.compress(evil)), ("c.json", cfg), ("manifest.json", json.dumps(items).encode())])
    expect_corrupt(data, tmp_path, "not a valid layer: .*escapes the layer root")


@pytest.mark.parametrize("manifest, match", [
    (b"null", "manifest cannot be null"),
    (b"{}", "not a JSON array"),
    (b"[1]", "entry 0 is not an object"),
    (b'[{"Config": 5}]', "malformed"),
    (b"[", "manifest.json"),
    (b'[{"Config":"c.json","RepoTags":["x"],"Layers":["l/layer.tar"]}]', 'invalid tag "x"'),
    (b'[{"Config":"c.json","RepoTags":["UPPER:1"],"Layers":["l/layer.tar"]}]', "RepoTags"),
])
def test_bad_manifest_json(tmp_path: Path, manifest: bytes, match: str) -> None:
    _, entries = simple_archive()
    data = make_tar([e for e in entries if e[0] != "manifest.json"] + [("manifest.json", manifest)])
    expect_corrupt(data, tmp_path, match)


def test_not_an_image_archive(tmp_path: Path) -> None:
    expect_corrupt(b"", tmp_path, "does not contain a manifest.json")
    expect_corrupt(layer_tar({"etc/hostname": b"x"}), tmp_path, "does not contain a manifest.json")


def test_bad_oci_layout(tmp_path: Path) -> None:
    data = make_tar([("oci-layout", b'{"imageLayoutVersion":"2.0.0"}'), ("index.json", b'{"manifests":[]}')])
    expect_corrupt(data, tmp_path, "unsupported OCI layout version")
    data = make_tar([("index.json", b'{"manifests":[{"digest":"sha512:abc","size":1}]}')])
    expect_corrupt(data, tmp_path, "unsupported or invalid digest")


def test_cancel_leaves_no_ingest(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    data, _ = simple_archive()

    async def stalled() -> AsyncIterator[bytes]:
        yield data[:1536]  # inside the layer
        await asyncio.sleep(3600)

    async def main() -> None:
        committed: set[str] = set()
        task = asyncio.ensure_future(read_archive(stalled(), store, tmp_dir=tmp_path / "t", committed=committed))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert list(store.ingests()) == [] and list(store.walk()) == []


def test_many_small_files_spill_to_disk(tmp_path: Path) -> None:
    """Small non-layer files beyond the memory budget go to tmp_dir; they are still readable."""
    l1 = layer_tar({"f": b"1"})
    cfg = config_for([sha(l1)], extra={"pad": "p" * (2 << 20)})  # > 1 MiB: spilled
    items = [{"Config": "c.json", "RepoTags": ["s:1"], "Layers": ["l.tar"]}]
    data = make_tar([("c.json", cfg), ("l.tar", l1), ("manifest.json", json.dumps(items).encode())])
    (img,) = load(data, new_store(tmp_path), tmp_path).images
    assert img.config_raw == cfg
    assert not any((tmp_path / "load-tmp").iterdir())  # spill files removed


# ---------------------------------------------------------------------------------------- memory
def _random_layer_chunks(total: int, seed: int = 7) -> Any:
    """A tar with one file of ``total`` incompressible bytes, as an iterator of chunks."""
    info = tarfile.TarInfo("big.bin")
    info.size = total
    info.mtime = 1700000000
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    rnd = random.Random(seed)
    left = total
    while left:
        n = min(left, 1 << 20)
        yield rnd.randbytes(n)
        left -= n
    yield bytes(-total % 512) + bytes(1024)


@pytest.mark.slow
def test_200mb_round_trip_memory_stays_flat(tmp_path: Path) -> None:
    store = new_store(tmp_path, "src")
    ing = LayerIngester(store, fsync=False)
    diff = hashlib.sha256()
    for chunk in _random_layer_chunks(200 << 20):
        diff.update(chunk)
        ing.feed(chunk)
    layer = ing.finish()
    assert layer.diff_id == "sha256:" + diff.hexdigest()
    cfg = config_for([layer.diff_id])
    man = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                      "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                 "size": len(cfg), "digest": sha(cfg)},
                      "layers": [{"mediaType": layer.media_type, "size": layer.size, "digest": layer.digest}]}).encode()
    image = SaveImage(sha(cfg), cfg, sha(man), man, DOCKER_MANIFEST,
                      [SaveLayer(layer.digest, layer.size, layer.media_type, layer.diff_id)], repo_tags=["big:1"])
    dest = new_store(tmp_path, "dest")

    async def main() -> LoadResult:
        return await read_archive(write_save([image], store_opener(store)), dest, tmp_dir=tmp_path / "t",
                                  fsync=False)

    tracemalloc.start()
    try:
        res = asyncio.run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak traced memory {peak / (1 << 20):.1f} MiB")
    assert peak < 32 << 20, f"peak traced memory {peak / (1 << 20):.1f} MiB"
    (img,) = res.images
    assert img.config_digest == sha(cfg) and img.repo_tags == ["docker.io/library/big:1"]
    assert img.layers[0].digest == layer.digest and img.layers[0].diff_id == layer.diff_id
    assert img.manifest_raw is not None  # the OCI form of the manifest, for the same blobs
    assert_clean(dest)
