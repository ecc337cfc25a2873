"""Tests of dockwright.archive.save: the archive layout, streaming, and the archive read back by skopeo, umoci and
GNU tar when they are installed. Images come from the shared fixtures, loaded into a real store in tmp_path."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from dockwright import reference as refs
from dockwright.archive import LoadedImage, SaveImage, SaveLayer, read_archive, write_save
from dockwright.content.store import ContentStore
from dockwright.errors import DataCorrupted
from dockwright.layers.ingest import LayerIngester
from dockwright.oci.platform import Platform

from conftest import FIXTURES

SAVE_BUSYBOX = FIXTURES / "dockerd-20.10-save-busybox.tar"
SAVE_WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"
SKOPEO = FIXTURES / "skopeo-oci-archive-whiteouts.tar"
needs_fixtures = pytest.mark.skipif(not SAVE_WHITEOUTS.exists(), reason="shared fixtures missing")

BB_ID = "sha256:e16d1152884b232c46812c11c6cf9c41cc64ee17a8a1a43fccf6301eae32d59c"
WHITEOUTS_ID = "sha256:2154d5e589da22a2c1c4fc32e3eff1d58e5c22386fe6918dd604a64db407d2f7"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# ---------------------------------------------------------------------------------------- helpers
def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            yield chunk


def load_fixture(path: Path, store: ContentStore, tmp: Path) -> list[LoadedImage]:
    return asyncio.run(read_archive(file_chunks(path), store, tmp_dir=tmp / "load-tmp")).images


def to_save_image(img: LoadedImage, *, untagged: bool = False) -> SaveImage:
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
    tags = [] if untagged else img.repo_tags
    return SaveImage(img.config_digest, img.config_raw, sha(raw), raw, media,
                     [SaveLayer(lay.digest, lay.size, lay.media_type, lay.diff_id) for lay in img.layers],
                     repo_tags=[refs.familiarize(t) for t in tags], full_names=list(tags))


def store_opener(store: ContentStore):  # type: ignore[no-untyped-def]
    async def open_blob(digest: str) -> AsyncIterator[bytes]:
        with store.open(digest) as f:
            while data := f.read(1 << 20):
                yield data
    return open_blob


def save(images: list[SaveImage], store: ContentStore) -> bytes:
    async def main() -> bytes:
        return b"".join([c async for c in write_save(images, store_opener(store))])
    return asyncio.run(main())


def members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name] = (m, f.read() if f else None)
    return out


@pytest.fixture
def fixture_images(tmp_path: Path) -> tuple[ContentStore, list[LoadedImage]]:
    if not SAVE_WHITEOUTS.exists():
        pytest.skip("shared fixtures missing")
    store = ContentStore(tmp_path / "store")
    images = load_fixture(SAVE_BUSYBOX, store, tmp_path) + load_fixture(SAVE_WHITEOUTS, store, tmp_path)
    return store, images


# ---------------------------------------------------------------------------------------- layout
def test_layout(fixture_images: tuple[ContentStore, list[LoadedImage]]) -> None:
    store, images = fixture_images
    data = save([to_save_image(i) for i in images], store)
    ms = members(data)
    names = list(ms)
    assert names[:6] == ["oci-layout", "index.json", "manifest.json", "repositories", "blobs", "blobs/sha256"]
    assert ms["oci-layout"][1] == b'{"imageLayoutVersion": "1.0.0"}'
    # every blob once, content matching its name
    blob_names = [n for n in names if n.startswith("blobs/sha256/")]
    assert len(blob_names) == len(set(blob_names))
    for n in blob_names:
        assert hashlib.sha256(ms[n][1] or b"").hexdigest() == n.rsplit("/", 1)[1]
    # the shared base layer of bb:1 and fixture/whiteouts:1 is written once
    assert len([n for n in blob_names if n.endswith(images[0].layers[0].digest[7:])]) == 1
    # manifest.json: Config, RepoTags, Layers, in that order, a trailing newline, stored blobs
    raw_manifest = ms["manifest.json"][1] or b""
    assert raw_manifest.endswith(b"]\n")
    items = json.loads(raw_manifest)
    assert [list(i) for i in items] == [["Config", "RepoTags", "Layers"]] * 2
    assert items[0] == {"Config": "blobs/sha256/" + BB_ID[7:], "RepoTags": ["bb:1"],
                        "Layers": ["blobs/sha256/" + images[0].layers[0].digest[7:]]}
    assert items[1]["RepoTags"] == ["fixture/whiteouts:1"]
    # repositories: familiar repo → tag → top layer DiffID hex, as dockerd 25+
    assert json.loads(ms["repositories"][1] or b"") == {
        "bb": {"1": images[0].layers[-1].diff_id[7:]},
        "fixture/whiteouts": {"1": images[1].layers[-1].diff_id[7:]},
    }
    # index.json: one OCI manifest descriptor per name, with both annotations
    index = json.loads(ms["index.json"][1] or b"")
    assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    anns = [m["annotations"] for m in index["manifests"]]
    assert anns == [{"io.containerd.image.name": "docker.io/library/bb:1", "org.opencontainers.image.ref.name": "1"},
                    {"io.containerd.image.name": "docker.io/fixture/whiteouts:1",
                     "org.opencontainers.image.ref.name": "1"}]
    for m, img in zip(index["manifests"], images, strict=True):
        assert m["mediaType"] == OCI_MANIFEST and list(m) == ["mediaType", "digest", "size", "annotations"]
        manifest = json.loads(ms["blobs/sha256/" + m["digest"][7:]][1] or b"")
        # the schema2 manifest became its OCI equivalent over the same blobs
        assert manifest["mediaType"] == OCI_MANIFEST
        assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": img.config_digest, "size": len(img.config_raw)}
        assert [(d["digest"], d["size"], d["mediaType"]) for d in manifest["layers"]] == \
            [(lay.digest, lay.size, {"application/vnd.docker.image.rootfs.diff.tar.gzip":
                                     "application/vnd.oci.image.layer.v1.tar+gzip"}.get(lay.media_type, lay.media_type))
             for lay in img.layers]
    # times: config and layer blobs carry the image's created time, the rest the epoch
    created = json.loads(images[0].config_raw)["created"]
    assert created.startswith("2026-11-22T10:05:26")
    assert ms["blobs/sha256/" + BB_ID[7:]][0].mtime == 1795341926
    assert ms["blobs/sha256/" + images[0].layers[0].digest[7:]][0].mtime == 1795341926
    assert ms["index.json"][0].mtime == 0 and ms["blobs/sha256"][0].mode & 0o7777 == 0o755


@needs_fixtures
def test_oci_manifest_is_written_unchanged(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    (img,) = load_fixture(SKOPEO, store, tmp_path)
    assert img.manifest_raw is not None
    ms = members(save([to_save_image(img)], store))
    index = json.loads(ms["index.json"][1] or b"")
    (entry,) = index["manifests"]
    assert entry["digest"] == sha(img.manifest_raw) and entry["size"] == len(img.manifest_raw)
    assert ms["blobs/sha256/" + entry["digest"][7:]][1] == img.manifest_raw


def test_untagged_images_all_kept(fixture_images: tuple[ContentStore, list[LoadedImage]]) -> None:
    store, images = fixture_images
    data = save([to_save_image(i, untagged=True) for i in images], store)
    ms = members(data)
    assert "repositories" not in ms
    index = json.loads(ms["index.json"][1] or b"")
    assert len(index["manifests"]) == 2 and all("annotations" not in m for m in index["manifests"])
    items = json.loads(ms["manifest.json"][1] or b"")
    assert [i["RepoTags"] for i in items] == [None, None]


def test_parent_and_platform(fixture_images: tuple[ContentStore, list[LoadedImage]]) -> None:
    store, images = fixture_images
    base = to_save_image(images[0])
    child = to_save_image(images[1])
    child = replace(child, parent=base.config_digest, platform=Platform("linux", "amd64"))
    orphan = replace(to_save_image(images[0], untagged=True), parent="sha256:" + "f" * 64)
    ms = members(save([base, child, orphan], store))
    items = json.loads(ms["manifest.json"][1] or b"")
    assert "Parent" not in items[0] and items[1]["Parent"] == base.config_digest and "Parent" not in items[2]
    index = json.loads(ms["index.json"][1] or b"")
    assert index["manifests"][1]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert "platform" not in index["manifests"][0]


def test_names_from_either_list(fixture_images: tuple[ContentStore, list[LoadedImage]]) -> None:
    store, images = fixture_images
    img = to_save_image(images[0])
    only_full = replace(img, repo_tags=[], full_names=["localhost:5000/a/b:v1"])
    only_familiar = replace(img, repo_tags=["busybox:latest"], full_names=[])
    for si, familiar, full in ((only_full, "localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
                               (only_familiar, "busybox:latest", "docker.io/library/busybox:latest")):
        ms = members(save([si], store))
        assert json.loads(ms["manifest.json"][1] or b"")[0]["RepoTags"] == [familiar]
        ann = json.loads(ms["index.json"][1] or b"")["manifests"][0]["annotations"]
        assert ann["io.containerd.image.name"] == full


# ---------------------------------------------------------------------------------------- streaming
def test_blob_chunks_pass_through_and_sizes_are_checked(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    ing = LayerIngester(store, fsync=False)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("f")
        ti.size = 3000
        tf.addfile(ti, io.BytesIO(b"z" * 3000))
    ing.feed(buf.getvalue())
    layer = ing.finish()
    cfg = json.dumps({"os": "linux", "architecture": "amd64",
                      "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg),
                                 "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": layer.digest, "size": layer.size}]}).encode()
    content = store.read(layer.digest)
    pieces = [content[i : i + 7] for i in range(0, len(content), 7)]

    def image(size: int) -> SaveImage:
        return SaveImage(sha(cfg), cfg, sha(man), man, OCI_MANIFEST,
                         [SaveLayer(layer.digest, size, layer.media_type, layer.diff_id)], repo_tags=["t:1"])

    async def open_blob(digest: str) -> AsyncIterator[bytes]:
        for p in pieces:
            yield p

    async def run(size: int) -> list[bytes]:
        return [c async for c in write_save([image(size)], open_blob)]

    out = asyncio.run(run(layer.size))
    # the blob's own chunk objects are yielded, not copies
    assert sum(1 for c in out if any(c is p for p in pieces)) == len(pieces)
    assert members(b"".join(out))["blobs/sha256/" + layer.digest[7:]][1] == content
    with pytest.raises(DataCorrupted, match="ended after"):
        asyncio.run(run(layer.size + 1))
    with pytest.raises(DataCorrupted, match="larger than its recorded size"):
        asyncio.run(run(layer.size - 1))


# ---------------------------------------------------------------------------------------- real tools
def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        print(f"{name} is not installed; skipping")
        pytest.skip(f"{name} is not installed on this host")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture
def saved_archive(tmp_path: Path) -> tuple[Path, list[LoadedImage]]:
    """bb:1 (schema2 manifest) and the skopeo image renamed whiteouts:2 (OCI manifest), saved to a file."""
    if not SAVE_WHITEOUTS.exists():
        pytest.skip("shared fixtures missing")
    store = ContentStore(tmp_path / "store")
    bb = load_fixture(SAVE_BUSYBOX, store, tmp_path)[0]
    wo = load_fixture(SKOPEO, store, tmp_path)[0]
    wo.repo_tags = ["docker.io/fixture/whiteouts:2"]
    path = tmp_path / "out.tar"
    path.write_bytes(save([to_save_image(bb), to_save_image(wo)], store))
    return path, [bb, wo]


def test_gnu_tar_lists_the_archive(saved_archive: tuple[Path, list[LoadedImage]]) -> None:
    tar = _tool("tar")
    path, _ = saved_archive
    out = _run(tar, "tvf", str(path)).stdout
    assert "oci-layout" in out and "blobs/sha256/" + BB_ID[7:] in out


def test_skopeo_reads_oci_archive(saved_archive: tuple[Path, list[LoadedImage]], tmp_path: Path) -> None:
    skopeo = _tool("skopeo")
    path, (bb, wo) = saved_archive
    info = json.loads(_run(skopeo, "inspect", f"oci-archive:{path}:1").stdout)
    assert info["Layers"] == [bb.layers[0].digest] and info["Architecture"] == "amd64"
    info = json.loads(_run(skopeo, "inspect", f"oci-archive:{path}:2").stdout)
    assert info["Layers"] == [lay.digest for lay in wo.layers]
    assert info["Labels"] == {"org.example.fixture": "whiteouts"}
    # a full copy verifies every blob against its digest
    _run(skopeo, "copy", f"oci-archive:{path}:2", f"dir:{tmp_path / 'copy'}")
    assert (tmp_path / "copy" / "manifest.json").read_bytes() == wo.manifest_raw


def test_skopeo_reads_docker_archive(saved_archive: tuple[Path, list[LoadedImage]], tmp_path: Path) -> None:
    skopeo = _tool("skopeo")
    path, (bb, wo) = saved_archive
    info = json.loads(_run(skopeo, "inspect", f"docker-archive:{path}:bb:1").stdout)
    assert info["Layers"] == [bb.layers[0].diff_id]  # docker-archive reports the uncompressed digests
    info = json.loads(_run(skopeo, "inspect", f"docker-archive:{path}:fixture/whiteouts:2").stdout)
    assert info["Layers"] == [lay.diff_id for lay in wo.layers]
    _run(skopeo, "copy", f"docker-archive:{path}:fixture/whiteouts:2", f"oci:{tmp_path / 'oci'}:x")


def test_umoci_unpacks_the_layout(saved_archive: tuple[Path, list[LoadedImage]], tmp_path: Path) -> None:
    umoci = _tool("umoci")
    path, _ = saved_archive
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(path) as tf:
        tf.extractall(layout, filter="data")
    for tag, check in (("2", ("data", "a")), ("1", ("bin", "busybox"))):
        bundle = tmp_path / f"bundle{tag}"
        _run(umoci, "unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle))
        assert (bundle / "rootfs" / Path(*check)).exists()
    rootfs = tmp_path / "bundle2" / "rootfs"
    # the whiteouts were applied: /data/c deleted, /data/sub replaced, /data/a changed
    assert (rootfs / "data" / "a").read_text() == "changed\n"
    assert not (rootfs / "data" / "c").exists()
    assert sorted(p.name for p in (rootfs / "data" / "sub").iterdir()) == ["n"]


def test_consumer_stopping_early_closes_the_blob(fixture_images: tuple[ContentStore, list[LoadedImage]]) -> None:
    store, images = fixture_images
    closed: list[str] = []

    async def open_blob(digest: str) -> AsyncIterator[bytes]:
        try:
            with store.open(digest) as f:
                while data := f.read(4096):
                    yield data
        finally:
            closed.append(digest)

    async def main() -> None:
        gen = write_save([to_save_image(images[0])], open_blob)
        seen = 0
        async for chunk in gen:
            seen += len(chunk)
            if seen > 20000:  # inside the layer blob
                break
        await gen.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    assert closed == [images[0].layers[0].digest]
