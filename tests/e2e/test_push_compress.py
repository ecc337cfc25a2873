"""Push of layers stored as plain tars (loaded, built): gzip-compressed on the way, under dockerd's manifest.

dockerd pushes such an image as Docker schema 2 (config ``application/vnd.docker.container.image.v1+json``,
layers ``application/vnd.docker.image.rootfs.diff.tar.gzip``), each layer a gzip of the layer tar. dockwright does
the same, compressing with ISA-L while it uploads, and remembers the gzip digest of each layer: a second push, to
the same or another repository or registry, finds the blob (HEAD, cross-repository mount) instead of compressing
and uploading it again, and a push to another registry makes the same bytes (the same manifest digest). A pulled
image still pushes its own manifest, byte for byte. The registry is the real Distribution registry; a FaultProxy in
front of it counts the requests; the side-by-side test pushes the same image from a real dockerd 20.10.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
import requests

from conftest import FIXTURES, Daemon
from dockerd import Dockerd, dockerd_unavailable
from registry import (  # noqa: F401
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    FaultProxy,
    Registry,
    push_image,
    registry,
    tar_of,
)

WHITEOUTS = FIXTURES / "dockerd-20.10-save-whiteouts.tar"  # three layers, kept uncompressed by load
WHITEOUTS_ID = "sha256:2154d5e589da22a2c1c4fc32e3eff1d58e5c22386fe6918dd604a64db407d2f7"
ACCEPT = f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(reg: Registry, repo: str, ref: str) -> tuple[str, bytes]:
    r = requests.get(f"{reg.url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["Content-Type"], r.content


def _blob(reg: Registry, repo: str, digest: str) -> bytes:
    r = requests.get(f"{reg.url}/v2/{repo}/blobs/{digest}", timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def _blobs_in_store(d: Daemon) -> set[str]:
    return {p.name for p in (d.data_root / "content" / "blobs" / "sha256").iterdir()}


def _diff_ids(d: Daemon, name: str) -> list[str]:
    return json.loads(d.out("image", "inspect", "--format", "{{json .RootFS.Layers}}", name))


def _digest_of(out: str) -> str:
    return next(line.split("digest: ")[1].split()[0] for line in out.splitlines() if "digest: " in line)


def _statuses(out: str) -> dict[str, list[str]]:
    """Per layer ID, its status lines in order (layers are pushed concurrently: their lines interleave)."""
    per: dict[str, list[str]] = {}
    for line in out.splitlines():
        head, sep, status = line.partition(": ")
        if sep and len(head) == 12 and all(c in "0123456789abcdef" for c in head):
            per.setdefault(head, []).append(status)
    return per


def _check_schema2(reg: Registry, repo: str, tag: str, image_id: str, diff_ids: list[str]) -> tuple[bytes, dict]:
    ctype, raw = _manifest(reg, repo, tag)
    assert ctype == DOCKER_MANIFEST
    m = json.loads(raw)
    assert raw == json.dumps(m, indent=3).encode()  # Go's MarshalIndent with three spaces, as dockerd writes it
    assert list(m) == ["schemaVersion", "mediaType", "config", "layers"]
    assert m["mediaType"] == DOCKER_MANIFEST and m["schemaVersion"] == 2
    assert m["config"]["mediaType"] == DOCKER_CONFIG and m["config"]["digest"] == image_id
    assert [lay["mediaType"] for lay in m["layers"]] == [DOCKER_LAYER_GZIP] * len(diff_ids)
    for lay, diff_id in zip(m["layers"], diff_ids, strict=True):
        assert list(lay) == ["mediaType", "size", "digest"]
        blob = _blob(reg, repo, lay["digest"])
        assert blob[:3] == b"\x1f\x8b\x08" and len(blob) == lay["size"] and _sha(blob) == lay["digest"]
        assert _sha(gzip.decompress(blob)) == diff_id
    return raw, m


def test_loaded_plain_layers_push_gzip_under_docker_schema2(daemon: Daemon, registry: Registry) -> None:
    daemon.docker("load", "-i", str(WHITEOUTS))
    name = f"{registry.host}/fx/whiteouts:1"
    daemon.docker("tag", "fixture/whiteouts:1", name)
    diff_ids = _diff_ids(daemon, name)
    before = _blobs_in_store(daemon)
    out = daemon.out("push", name)
    lines = out.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/fx/whiteouts]"
    shorts = [d[7:19] for d in reversed(diff_ids)]  # dockerd: the DiffIDs, top layer first
    assert lines[1:4] == [f"{s}: Preparing" for s in shorts]
    assert sorted(lines[4:7]) == sorted(f"{s}: Pushed" for s in shorts)
    raw, m = _check_schema2(registry, "fx/whiteouts", "1", WHITEOUTS_ID, diff_ids)
    assert lines[7] == f"1: digest: {_sha(raw)} size: {len(raw)}"
    assert len(lines) == 8
    insp = json.loads(daemon.out("image", "inspect", name))[0]
    assert f"{registry.host}/fx/whiteouts@{_sha(raw)}" in insp["RepoDigests"]
    assert insp["Id"] == WHITEOUTS_ID
    # nothing was stored to do it: no gzip blob in the content store, no ingest left
    assert _blobs_in_store(daemon) == before
    assert not any((daemon.data_root / "content" / "ingest").iterdir())
    # the image pulled back by another daemon is the same image
    other = Daemon(daemon.base.parent / "other").start()
    try:
        other.docker("pull", name)
        assert json.loads(other.out("image", "inspect", name))[0]["Id"] == WHITEOUTS_ID
        assert _diff_ids(other, name) == diff_ids
    finally:
        other.stop()


def test_second_pushes_neither_compress_nor_upload_again(daemon: Daemon, registry: Registry,
                                                         tmp_path: Path) -> None:
    daemon.docker("load", "-i", str(WHITEOUTS))
    diff_ids = _diff_ids(daemon, "fixture/whiteouts:1")
    shorts = {d[7:19] for d in diff_ids}
    with FaultProxy(registry) as proxy:
        name = f"{proxy.host}/fx/app:1"
        daemon.docker("tag", "fixture/whiteouts:1", name)
        first = daemon.out("push", name)
        digest = _digest_of(first)
        uploads = [r for r in proxy.requests if r[0] in ("PATCH", "PUT") and "/blobs/uploads/" in r[1]]
        # each layer: one streamed PATCH (compressed on the way, no temp file), then PUT ?digest=; the config
        # (its digest known): one PUT
        assert [r[0] for r in uploads].count("PATCH") == 3 and [r[0] for r in uploads].count("PUT") == 4
        assert all(status in (201, 202) for _, _, status in uploads)
        proxy.reset()
        # the same repository: HEAD finds every layer by the remembered gzip digest
        again = daemon.out("push", name)
        assert _statuses(again) == {s: ["Preparing", "Layer already exists"] for s in shorts}
        assert _digest_of(again) == digest
        assert not [r for r in proxy.requests if r[0] in ("POST", "PATCH")]
        proxy.reset()
        # another repository of the same registry: mounted from where it was pushed
        daemon.docker("tag", "fixture/whiteouts:1", f"{proxy.host}/fx/copy:1")
        mounted = daemon.out("push", f"{proxy.host}/fx/copy:1")
        assert _statuses(mounted) == {s: ["Preparing", "Mounted from fx/app"] for s in shorts}
        assert _digest_of(mounted) == digest
        assert not [r for r in proxy.requests if r[0] == "PATCH"]
    # another registry: compressed again, to the same bytes (the same manifest digest)
    with Registry(tmp_path / "reg2") as reg2:
        daemon.docker("tag", "fixture/whiteouts:1", f"{reg2.host}/fx/app:1")
        out2 = daemon.out("push", f"{reg2.host}/fx/app:1")
        assert _statuses(out2) == {s: ["Preparing", "Pushed"] for s in shorts}
        assert _digest_of(out2) == digest
        raw2, m2 = _check_schema2(reg2, "fx/app", "1", WHITEOUTS_ID, diff_ids)
        assert _sha(raw2) == digest
    # the image removed, garbage collected and loaded again: its layers are found in the registry (the digests are
    # remembered without keeping any blob)
    daemon.docker("rmi", "-f", WHITEOUTS_ID)
    assert daemon.out("images", "-aq") == ""
    assert not any(n.startswith(tuple(d[7:] for d in diff_ids)) for n in _blobs_in_store(daemon))
    daemon.docker("load", "-i", str(WHITEOUTS))
    daemon.docker("tag", "fixture/whiteouts:1", f"{registry.host}/fx/app:2")
    out3 = daemon.out("push", f"{registry.host}/fx/app:2")
    assert _statuses(out3) == {s: ["Preparing", "Layer already exists"] for s in shorts}
    assert _digest_of(out3) == digest


def test_built_layers_push_gzip_and_the_base_keeps_its_blob(daemon: Daemon, registry: Registry,
                                                            tmp_path: Path) -> None:
    base = push_image(registry, "base/img", "1", [tar_of({"etc/base.txt": b"base\n" * 100})])
    daemon.docker("pull", base["reference"])
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base['reference']}\nCOPY big.txt /big.txt\n")
    (ctx / "big.txt").write_bytes(b"compress me " * 200_000)
    daemon.docker("build", "-q", "-t", f"{registry.host}/built/app:1", str(ctx))
    name = f"{registry.host}/built/app:1"
    image_id = json.loads(daemon.out("image", "inspect", name))[0]["Id"]
    diff_ids = _diff_ids(daemon, name)
    out = daemon.out("push", name)
    per = _statuses(out)
    assert per[diff_ids[0][7:19]] == ["Preparing", "Mounted from base/img"]  # the pulled layer, as pulled
    assert per[diff_ids[1][7:19]] == ["Preparing", "Pushed"]
    raw, m = _check_schema2(registry, "built/app", "1", image_id, diff_ids)
    assert m["layers"][0]["digest"] == base["layer_digests"][0]  # the base layer's blob is the registry's own
    assert m["layers"][1]["size"] < 2_400_000 // 10  # really compressed


def test_pulled_image_pushes_its_manifest_byte_for_byte(daemon: Daemon, registry: Registry) -> None:
    oci = push_image(registry, "src/oci", "1", [tar_of({"a": b"a" * 5000}), tar_of({"b": b"b"})], media="oci")
    plain = push_image(registry, "src/plain", "1", [tar_of({"p": b"p" * 5000})], media="oci", compression="none")
    docker_img = push_image(registry, "src/docker", "1", [tar_of({"d": b"d" * 5000})])
    for img, repo in ((oci, "dst/oci"), (plain, "dst/plain"), (docker_img, "dst/docker")):
        daemon.docker("pull", img["reference"])
        daemon.docker("tag", img["reference"], f"{registry.host}/{repo}:1")
        out = daemon.out("push", f"{registry.host}/{repo}:1")
        assert _digest_of(out) == img["manifest_digest"]
        ctype, raw = _manifest(registry, repo, "1")
        assert raw == img["manifest_bytes"] and ctype == img["media_type"]


def test_damaged_plain_layer_fails_the_push(daemon: Daemon, registry: Registry) -> None:
    daemon.docker("load", "-i", str(WHITEOUTS))
    diff_ids = _diff_ids(daemon, "fixture/whiteouts:1")
    path = daemon.data_root / "content" / "blobs" / "sha256" / diff_ids[0][7:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    name = f"{registry.host}/broken/app:1"
    daemon.docker("tag", "fixture/whiteouts:1", name)
    p = daemon.docker("push", name, check=False)
    assert p.returncode != 0
    assert f"layer {diff_ids[0]} does not match its digest".encode() in p.stderr, p.stderr
    r = requests.get(f"{registry.url}/v2/broken/app/manifests/1", headers={"Accept": ACCEPT}, timeout=30)
    assert r.status_code == 404


@pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))
def test_push_side_by_side_with_dockerd(daemon: Daemon, registry: Registry) -> None:
    real = Dockerd(daemon.docker_config)
    why = real.start()
    if why is not None:
        pytest.skip(f"dockerd did not start here: {why}")
    try:
        outs: dict[str, str] = {}
        manifests: dict[str, dict] = {}
        for label, engine in (("dw", daemon), ("dd", real)):
            engine.docker("load", "-i", str(WHITEOUTS))
            name = f"{registry.host}/{label}/whiteouts:1"
            engine.docker("tag", "fixture/whiteouts:1", name)
            outs[label] = engine.out("push", name)
            diff_ids = _diff_ids(daemon, "fixture/whiteouts:1")
            raw, manifests[label] = _check_schema2(registry, f"{label}/whiteouts", "1", WHITEOUTS_ID, diff_ids)
            assert _digest_of(outs[label]) == _sha(raw)
        # the same lines (the layers' order among themselves aside), but for the manifest digest and size
        for label in outs:
            lines = outs[label].splitlines()
            assert lines[0].startswith("The push refers to repository [")
            assert lines[-1].startswith("1: digest: sha256:")
        assert _statuses(outs["dw"]) == _statuses(outs["dd"])
        assert [line for line in outs["dw"].splitlines() if "Preparing" in line] == \
            [line for line in outs["dd"].splitlines() if "Preparing" in line]
        dw, dd = manifests["dw"], manifests["dd"]
        assert dw["config"] == dd["config"]
        assert [lay["mediaType"] for lay in dw["layers"]] == [lay["mediaType"] for lay in dd["layers"]]
        # a second push of each: every layer already there, the same digest again
        for label, engine in (("dw", daemon), ("dd", real)):
            again = engine.out("push", f"{registry.host}/{label}/whiteouts:1")
            assert set(s for v in _statuses(again).values() for s in v) == {"Preparing", "Layer already exists"}
            assert _digest_of(again) == _digest_of(outs[label])
    finally:
        real.stop()
