"""Layers that cannot be unpacked are refused when they come in (import, load, pull), never stored to fail at
``docker create`` (issue 11 item 7); a create whose layer fails to unpack anyway leaves nothing behind.

What is refused is what extraction (``layers/apply.TarExtractor``) would refuse: a path component over NAME_MAX
(dockerd's untar: "file name too long"), a PAX number Go's archive/tar cannot parse (dockerd: "archive/tar:
invalid tar header"), an owner lchown cannot take, a hard link that does not name an entry of the layer (absolute
to a host file, or through one of the layer's symlinks: dockerd's ApplyDiff fails on it at pull/load). A long
*path* whose components fit is fine, and stays accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Daemon, busybox_path, make_rootfs_tar
from hostile import StoreState, stream_messages, tar_of_entries
from registry import Registry, push_image, shared_registry  # noqa: F401

RUNS = os.geteuid() == 0 and busybox_path() is not None


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x", **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
    ti.pax_headers = dict(pax)
    return ti, data


BAD_LAYERS: dict[str, tuple[bytes, str]] = {
    "name-300": (_tar([_file("n" * 300)]), "longer than 255 (NAME_MAX)"),
    "pax-mtime-garbage": (_tar([_file("f", mtime="yesterday")]), "bad PAX mtime record"),
    "pax-mtime-inf": (_tar([_file("f", mtime="inf")]), "bad PAX mtime record"),
    "pax-uid-2to32": (_tar([_file("f", uid=str(1 << 32))]), "uid 4294967296 is out of range"),
    "pax-gid-2to40": (_tar([_file("f", gid=str(1 << 40))]), "gid 1099511627776 is out of range"),
    "hardlink-absolute-out": (tar_of_entries([("h", "hardlink", "/etc/passwd")]), "the target is not in the layer"),
    "hardlink-through-symlink": (tar_of_entries([("l", "symlink", "/etc"), ("h", "hardlink", "l/passwd")]),
                                 "goes through the symlink 'l' of the layer"),
    "hardlink-through-inner-symlink": (tar_of_entries([("d", "dir", 0o755), ("d/f", "file", b"1"),
                                                       ("l", "symlink", "d"), ("h", "hardlink", "l/f")]),
                                       "goes through the symlink 'l' of the layer"),
}

# a 300-byte path of short components, a hard link inside the layer, PAX numbers that parse: all fine
LONG_PATH = "/".join(["p" * 99] * 3)
GOOD_LAYER = tar_of_entries([("d", "dir", 0o755), ("d/f", "file", b"hello"), ("h", "hardlink", "/d/f"),
                             (LONG_PATH, "file", b"deep")])


@pytest.fixture(scope="module")
def bd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("badlayers")).start()
    try:
        yield d
    finally:
        d.stop()


def _snapshots(d: Daemon) -> list[str]:
    root = d.data_root / "snapshots"
    return sorted(e for e in os.listdir(root) if not e.startswith("metadata.db")) if root.is_dir() else []


def _refusal(status: int, body: bytes) -> str:
    """The error of a refused streaming request: a 4xx ``{"message"}`` or the stream's ``errorDetail``."""
    text = body.decode(errors="replace")
    assert "Traceback" not in text, text
    if 400 <= status < 500:
        return str(json.loads(body)["message"])
    assert status == 200, f"{status}: {text}"
    errors = [m for m in stream_messages(body) if "errorDetail" in m]
    assert errors, f"accepted: {text[-2000:]}"
    return str(errors[-1]["errorDetail"]["message"])


def _save_archive(layer: bytes, tag: str) -> bytes:
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cfg = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg, "RepoTags": [tag], "Layers": ["l/layer.tar"]}]).encode()
    return tar_of_entries([("l", "dir", 0o755), ("l/layer.tar", "file", layer), (cfg, "file", config),
                           ("manifest.json", "file", manifest)])


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_import_refuses_bad_layers(bd: Daemon, case: str) -> None:
    layer, words = BAD_LAYERS[case]
    before = StoreState.of(bd)
    snaps = _snapshots(bd)
    for data in (layer, gzip.compress(layer)):
        status, _, body = bd.api("POST", f"/images/create?fromSrc=-&repo=bad/import&tag={case}", data,
                                 {"Content-Type": "application/x-tar"})
        assert words in _refusal(status, body)
        assert StoreState.of(bd) == before
    p = bd.docker("import", "-", f"bad/import:{case}", input=layer, check=False)
    assert p.returncode != 0 and words in p.stderr.decode(), p.stderr
    assert StoreState.of(bd) == before and _snapshots(bd) == snaps
    assert "Traceback" not in bd.log()


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_load_refuses_bad_layers(bd: Daemon, case: str) -> None:
    layer, words = BAD_LAYERS[case]
    before = StoreState.of(bd)
    for data in (layer, gzip.compress(layer)):
        status, _, body = bd.api("POST", "/images/load?quiet=0", _save_archive(data, f"bad/load:{case}"),
                                 {"Content-Type": "application/x-tar"})
        assert words in _refusal(status, body)
        assert StoreState.of(bd) == before
    assert "Traceback" not in bd.log()


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_pull_refuses_bad_layers(bd: Daemon, shared_registry: Registry, case: str) -> None:  # noqa: F811
    layer, words = BAD_LAYERS[case]
    img = push_image(shared_registry, "bad/pull", case, [layer])
    before = StoreState.of(bd)
    p = bd.docker("pull", img["reference"], check=False)
    assert p.returncode != 0, p.stdout
    assert words in p.stderr.decode(), p.stderr
    assert StoreState.of(bd).images == before.images and StoreState.of(bd).containers == before.containers
    assert "Traceback" not in bd.log()


def test_good_edge_layers_are_accepted_everywhere(bd: Daemon, shared_registry: Registry) -> None:  # noqa: F811
    bd.docker("import", "-", "good/edge:import", input=GOOD_LAYER)
    status, _, body = bd.api("POST", "/images/load?quiet=0", _save_archive(GOOD_LAYER, "good/edge:load"),
                             {"Content-Type": "application/x-tar"})
    assert status == 200 and not any("errorDetail" in m for m in stream_messages(body)), body
    img = push_image(shared_registry, "good/edge", "pull", [GOOD_LAYER])
    bd.docker("pull", img["reference"])
    for ref in ("good/edge:import", "good/edge:load", img["reference"]):
        cid = bd.out("create", ref, "true")  # unpacks the layer: the rules agree, the create works
        out = bd.docker("export", cid).stdout
        with tarfile.open(fileobj=io.BytesIO(out)) as tf:
            names = tf.getnames()
            assert LONG_PATH in names and tf.extractfile(LONG_PATH).read() == b"deep"  # type: ignore[union-attr]
            assert tf.getmember("h").islnk() or tf.extractfile("h").read() == b"hello"  # type: ignore[union-attr]
        bd.docker("rm", cid)


def test_create_whose_layer_fails_to_unpack_leaves_nothing(bd: Daemon, tmp_path: Path) -> None:
    """A stored layer that no longer unpacks (its blob damaged on disk): the create fails with a 4xx and leaves
    no container record, no container directory and no snapshot (not even a partial one)."""
    blobs = bd.data_root / "content" / "blobs" / "sha256"
    had = set(os.listdir(blobs))
    bd.docker("import", "-", "bad/damaged:1", input=make_rootfs_tar({"etc/x": b"1" * 10000}, with_busybox=False))
    new = [blobs / n for n in set(os.listdir(blobs)) - had]
    layer = [p for p in new if p.read_bytes()[:2] == b"\x1f\x8b"]
    assert len(layer) == 1, new
    other = gzip.compress(tar_of_entries([("etc", "dir", 0o755), ("etc/x", "file", b"2" * 10000)]))
    os.chmod(layer[0], 0o644)
    layer[0].write_bytes(other)
    before = StoreState.of(bd)
    snaps = _snapshots(bd)
    for _ in range(2):
        p = bd.docker("create", "--name", "damaged", "bad/damaged:1", "true", check=False)
        assert p.returncode != 0
        assert b"diff ID mismatch" in p.stderr or b"does not give chain ID" in p.stderr, p.stderr
        assert b"Traceback" not in p.stderr
        status, _, body = bd.api("POST", "/containers/create?name=damaged2", json.dumps(
            {"Image": "bad/damaged:1", "Cmd": ["true"]}).encode(), {"Content-Type": "application/json"})
        assert 400 <= status < 500, (status, body)
        assert StoreState.of(bd) == before
        assert _snapshots(bd) == snaps
    # the names were not taken by a half-made container
    assert bd.docker("ps", "-a", "--filter", "name=damaged", "-q").stdout.strip() == b""
