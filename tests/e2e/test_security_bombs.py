"""Decompression bombs through the real daemon: memory stays flat whatever the inflated size.

A bomb is a small compressed blob that inflates to a huge run of zeros (here 1 GiB: a tar holding one file of
zeros).  It is a valid layer — dockerd imports, pulls, loads and unpacks it in full, streaming, with its memory
flat — so dockwright must too: every case below succeeds and checks the result, while a thread samples the
daemon's RSS (``/proc/<pid>/status``) and another pings ``/_ping``.  The daemon may not grow by more than
``MAX_GROWTH`` (100 MiB; it grows by 2 to 10) and must keep answering within a second.  (Before the decompressors
gave their output in bounded pieces, one call returned everything a chunk inflated to: +1 GiB to +2.5 GiB on the
imports and pulls, +130 MiB on create.)

Tar headers that claim a huge PAX record or GNU long name (4 GiB of zeros behind them) are refused as soon as
the header is read, without reading the record into memory.

The bombs are made once per module, streaming, in a few seconds; each case takes a few seconds more.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard
from isal import isal_zlib

from conftest import Daemon, overlay_or_skip
from hostile import Watch
from registry import Registry, registry  # noqa: F401

MiB = 1 << 20
GiB = 1 << 30
MAX_GROWTH = 100 * MiB  # measured: +2..+10 MiB; before the fix +130 MiB (create) to +2.5 GiB (import)
MAX_PING = 1.0

INFLATED = 1 * GiB  # the layer tar every bomb inflates to
FILE_SIZE = INFLATED - 512 - 1024  # its one file: header, body, two end-of-archive blocks make INFLATED
_ZEROS = memoryview(bytes(16 * MiB))
_STREAM = 64 * MiB  # bzip2 and xz bombs are concatenated streams of this much (one is slow to make)


# -------------------------------------------------------------------------------------------------- the bombs


def _tar_header(name: str, size: int, typeflag: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 1_700_000_000
    info.type = typeflag
    return info.tobuf(format=tarfile.GNU_FORMAT)


LAYER_HEAD = _tar_header("zeros", FILE_SIZE)
assert len(LAYER_HEAD) == 512


def _zeros(n: int) -> Iterator[memoryview]:
    for i in range(0, n, len(_ZEROS)):
        yield _ZEROS[: min(len(_ZEROS), n - i)]


def layer_tar() -> Iterator[bytes | memoryview]:
    """The bomb's tar: one header block, then zeros (the file, its padding and the end-of-archive blocks)."""
    yield LAYER_HEAD
    yield from _zeros(INFLATED - 512)


def _write(path: Path, compressor: Any, parts: Iterator[bytes | memoryview]) -> Path:
    with open(path, "wb") as f:
        for part in parts:
            f.write(compressor.compress(part))
        f.write(compressor.flush())
    return path


def _gzip() -> Any:
    return isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)  # ~1000:1 on zeros, at GB/s


def _streams(path: Path, new: Callable[[], Any]) -> Path:
    """The layer tar as concatenated streams of ``_STREAM`` bytes (bzip2 and xz are slow to make one big one);
    all but the first are the same stream of zeros, made once."""
    first = new()
    head = first.compress(LAYER_HEAD) + b"".join(first.compress(z) for z in _zeros(_STREAM - 512)) + first.flush()
    rest = new()
    zeros = b"".join(rest.compress(z) for z in _zeros(_STREAM)) + rest.flush()
    path.write_bytes(head + zeros * (INFLATED // _STREAM - 1))
    return path


@dataclass(frozen=True)
class Bombs:
    dir: Path
    diff_id: str

    @property
    def gzip(self) -> Path:
        return self._made("layer.tar.gz", lambda p: _write(p, _gzip(), layer_tar()))

    @property
    def zstd(self) -> Path:
        return self._made("layer.tar.zst", lambda p: _write(
            p, zstandard.ZstdCompressor(level=1, write_checksum=True).compressobj(), layer_tar()))

    @property
    def bzip2(self) -> Path:
        return self._made("layer.tar.bz2", lambda p: _streams(p, lambda: bz2.BZ2Compressor(9)))

    @property
    def xz(self) -> Path:
        return self._made("layer.tar.xz", lambda p: _streams(p, lambda: lzma.LZMACompressor(preset=1)))

    def _made(self, name: str, make: Callable[[Path], Path]) -> Path:
        path = self.dir / name
        if not path.exists():
            make(path.with_suffix(".part")).rename(path)
        return path

    def config(self, tag: str = "") -> bytes:
        return json.dumps({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/zeros"]},
            "rootfs": {"type": "layers", "diff_ids": [self.diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"a bomb {tag}"}],
        }, sort_keys=True).encode()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Bombs:
    h = hashlib.sha256()
    for part in layer_tar():
        h.update(part)
    return Bombs(tmp_path_factory.mktemp("bombs"), "sha256:" + h.hexdigest())


def _inspect(d: Daemon, name: str) -> dict[str, Any]:
    return json.loads(d.out("image", "inspect", name))[0]


def _assert_bomb_image(d: Daemon, name: str, bombs: Bombs) -> None:
    insp = _inspect(d, name)
    assert insp["RootFS"]["Layers"] == [bombs.diff_id]
    assert insp["Size"] == FILE_SIZE  # dockerd's size: the bytes of the unpacked file


# -------------------------------------------------------------------------------------------------- import


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_import_of_a_bomb_layer_keeps_memory_flat(daemon: Daemon, bombs: Bombs, kind: str) -> None:
    path = getattr(bombs, kind)
    assert path.stat().st_size < 5 * MiB
    with Watch(daemon) as w:
        image_id = daemon.out("import", str(path), f"bomb:{kind}")
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    assert image_id.startswith("sha256:")
    _assert_bomb_image(daemon, f"bomb:{kind}", bombs)


def test_container_create_unpacks_a_bomb_layer_with_memory_flat(daemon: Daemon, bombs: Bombs,
                                                                 tmp_path: Path) -> None:
    overlay_or_skip(tmp_path)
    daemon.out("import", str(bombs.gzip), "bomb:gz")
    with Watch(daemon) as w:
        daemon.out("create", "--name", "unpacked", "bomb:gz", "/zeros")  # create unpacks the layer chain
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    daemon.docker("rm", "unpacked")


# -------------------------------------------------------------------------------------------------- pull


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_pull_of_a_bomb_layer_keeps_memory_flat(daemon: Daemon, registry: Registry,  # noqa: F811
                                                bombs: Bombs, kind: str) -> None:
    blob = getattr(bombs, kind).read_bytes()
    config = bombs.config(kind)
    if kind == "gzip":
        mt, cmt, lmt = ("application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.container.image.v1+json",
                        "application/vnd.docker.image.rootfs.diff.tar.gzip")
    else:
        mt, cmt, lmt = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.config.v1+json",
                        "application/vnd.oci.image.layer.v1.tar+zstd")
    c = registry.client()
    layer_digest = c.push_blob("bomb/layer", blob)
    config_digest = c.push_blob("bomb/layer", config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cmt, "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": lmt, "size": len(blob), "digest": layer_digest}],
    }).encode()
    c.put_manifest("bomb/layer", kind, manifest, mt)
    name = f"{registry.host}/bomb/layer:{kind}"
    with Watch(daemon) as w:
        daemon.out("pull", name)
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    _assert_bomb_image(daemon, name, bombs)
    assert _inspect(daemon, name)["Id"] == config_digest


# -------------------------------------------------------------------------------------------------- load


def _archive(bombs: Bombs, tag: str, *, pax_bomb: bool = False) -> Iterator[bytes | memoryview]:
    """A docker-archive (``docker save`` format) whose layer.tar is the 1 GiB bomb tar, uncompressed."""
    config = bombs.config(tag)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]).encode()

    def member(name: str, data: bytes) -> bytes:
        return _tar_header(name, len(data)) + data + bytes(-len(data) % 512)

    if pax_bomb:  # the archive's own tar: a PAX header claiming 4 GiB, zeros behind it
        yield _tar_header("././@PaxHeader", 4 * GiB, tarfile.XHDTYPE)
        yield from _zeros(4 * GiB)
    yield member(config_name, config)
    yield _tar_header("layer/layer.tar", INFLATED)
    yield from layer_tar()
    yield member("manifest.json", manifest)
    yield bytes(1024)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_load_of_a_compressed_archive_bomb_keeps_memory_flat(daemon: Daemon, bombs: Bombs, tmp_path: Path,
                                                              kind: str) -> None:
    # `docker save | gzip`-style: the outer stream inflates to an archive holding a 1 GiB uncompressed layer
    tag = f"bomb:load-{kind}"
    compressor = _gzip() if kind == "gzip" else zstandard.ZstdCompressor(level=1).compressobj()
    path = _write(tmp_path / f"bomb-archive.tar.{kind}", compressor, _archive(bombs, tag))
    assert path.stat().st_size < 5 * MiB
    with Watch(daemon) as w:
        out = daemon.out("load", "-i", str(path))
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    assert f"Loaded image: {tag}" in out
    _assert_bomb_image(daemon, tag, bombs)


# -------------------------------------------------------------------------------------------------- build


def test_build_context_zstd_bomb_keeps_memory_flat(daemon: Daemon, bombs: Bombs, tmp_path: Path) -> None:
    # a compressed build context (zstd: the CLI sends none, clients may) holding a 1 GiB file of zeros
    dockerfile = b"FROM scratch\nCOPY Dockerfile /\n"
    parts = [_tar_header("Dockerfile", len(dockerfile)) + dockerfile + bytes(-len(dockerfile) % 512), LAYER_HEAD,
             *_zeros(INFLATED - 512)]
    c = zstandard.ZstdCompressor(level=1).compressobj()
    body = b"".join(c.compress(p) for p in parts) + c.flush()
    assert len(body) < MiB
    with Watch(daemon) as w:
        status, _, out = daemon.api("POST", "/build?t=bomb:ctx&rm=1", body,
                                    {"Content-Type": "application/x-tar"})
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    assert status == 200, out[-500:]
    assert b"Successfully tagged bomb:ctx" in out, out[-500:]
    assert b"errorDetail" not in out


# -------------------------------------------------------------------------------------------------- tar headers


@pytest.mark.parametrize("typeflag", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME],
                         ids=["pax-record", "gnu-longname"])
def test_import_refuses_a_tar_header_claiming_4gib(daemon: Daemon, tmp_path: Path, typeflag: bytes) -> None:
    """A PAX header or GNU long name is read into memory to apply to the next entry: one claiming 4 GiB (of
    zeros, 4 MiB gzipped) is refused when its header is read (Go's archive/tar caps them at 1 MiB too)."""
    parts = [_tar_header("././@LongLink" if typeflag == tarfile.GNUTYPE_LONGNAME else "././@PaxHeader",
                         4 * GiB, typeflag), *_zeros(4 * GiB)]
    path = _write(tmp_path / "hostile.tar.gz", _gzip(), iter(parts))
    with Watch(daemon) as w:
        p = daemon.docker("import", str(path), "hostile:1", check=False)
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    assert p.returncode != 0
    assert b"extended header of 4294967296 bytes is too long" in p.stderr, p.stderr
    assert daemon.out("images", "-q") == ""


def test_load_refuses_an_archive_whose_pax_header_claims_4gib(daemon: Daemon, bombs: Bombs,
                                                             tmp_path: Path) -> None:
    path = _write(tmp_path / "hostile-archive.tar.gz", _gzip(), _archive(bombs, "hostile:load", pax_bomb=True))
    with Watch(daemon) as w:
        p = daemon.docker("load", "-i", str(path), check=False)
    w.assert_healthy(max_ping=MAX_PING, max_growth=MAX_GROWTH)
    assert p.returncode != 0
    # dockerd's words (Go's archive/tar refuses PAX records over 1 MiB); the size claimed is in the daemon's log
    assert b"Error processing tar file(exit status 1): archive/tar: header field too long" in p.stderr, p.stderr
    assert "4294967296" in daemon.log()
    assert daemon.out("images", "-q") == ""
