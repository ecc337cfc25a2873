"""docker save / docker load through the CLI and docker-py: formats, fixtures, interop, safety, memory."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import docker.errors
import pytest

from conftest import FIXTURES, Daemon, make_rootfs_tar, small_tar
from dockerd import Dockerd, dockerd_unavailable

BB_ID = "sha256:e16d1152884b232c46812c11c6cf9c41cc64ee17a8a1a43fccf6301eae32d59c"
WH_ID = "sha256:2154d5e589da22a2c1c4fc32e3eff1d58e5c22386fe6918dd604a64db407d2f7"


def _images(d: Daemon) -> dict[str, list[str]]:
    s, rows = d.api_json("GET", "/images/json?all=1")
    return {r["Id"]: sorted(r["RepoTags"]) for r in rows}  # type: ignore[union-attr]


def test_load_dockerd_fixtures(daemon: Daemon) -> None:
    out = daemon.out("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
    assert out == "Loaded image: bb:1"
    out = daemon.out("load", "-i", str(FIXTURES / "dockerd-20.10-save-whiteouts.tar"))
    assert "Loaded image: fixture/whiteouts:1" in out
    imgs = _images(daemon)
    assert imgs[BB_ID] == ["bb:1"] and imgs[WH_ID] == ["fixture/whiteouts:1"]
    want = [json.loads(line) for line in (FIXTURES / "dockerd-20.10-history-whiteouts.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in daemon.out("history", "--no-trunc", "--format", "{{json .}}",
                                                   "fixture/whiteouts:1").splitlines()]
    assert [h["CreatedBy"] for h in got] == [h["CreatedBy"] for h in want]
    assert [h["Size"] for h in got] == [h["Size"] for h in want]
    assert got[0]["ID"] == WH_ID
    insp = json.loads(daemon.out("image", "inspect", "fixture/whiteouts:1"))[0]
    fx = json.loads((FIXTURES / "dockerd-20.10-inspect-whiteouts.json").read_text())[0]
    assert insp["RootFS"] == fx["RootFS"] and insp["Size"] == fx["Size"]
    assert insp["Config"]["Cmd"] == fx["Config"]["Cmd"]


def test_load_skopeo_oci_archive(daemon: Daemon) -> None:
    out = daemon.out("load", "-i", str(FIXTURES / "skopeo-oci-archive-whiteouts.tar"))
    assert "Loaded image: fixture/whiteouts:1" in out
    insp = json.loads(daemon.out("image", "inspect", "fixture/whiteouts:1"))[0]
    fx = json.loads((FIXTURES / "dockerd-20.10-inspect-whiteouts.json").read_text())[0]
    # skopeo rewrote the config as an OCI config (another ID); the layers are dockerd's
    assert insp["RootFS"] == fx["RootFS"] and insp["Size"] == fx["Size"]


def test_save_forms_and_round_trip(tmp_path: Path) -> None:
    a = Daemon(tmp_path / "a").start()
    b = Daemon(tmp_path / "b").start()
    try:
        a.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-whiteouts.tar"))
        extra = a.out("import", "-", "extra/img:1", input=make_rootfs_tar({"etc/x": b"x"}))
        dangling = a.out("import", "-", input=small_tar({"d": b"d"}))
        f = tmp_path / "all.tar"
        a.docker("save", "-o", str(f), "fixture/whiteouts:1", "extra/img:1", dangling)
        with tarfile.open(f) as tf:
            names = tf.getnames()
            manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
            index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        assert "oci-layout" in names and "repositories" in names
        blobs = [n for n in names if n.startswith("blobs/sha256/") and len(n) > 20]
        assert len(blobs) == len(set(blobs))  # shared layers once
        tags = sorted(t for m in manifest for t in (m["RepoTags"] or []))
        assert tags == ["extra/img:1", "fixture/whiteouts:1"]
        assert len(manifest) == 3 and len(index["manifests"]) == 3
        by_stdout = a.docker("save", "extra/img:1").stdout
        assert by_stdout[:512] and tarfile.open(fileobj=io.BytesIO(by_stdout)).getnames()
        out = b.out("load", "-i", str(f))
        assert "Loaded image: fixture/whiteouts:1" in out and "Loaded image: extra/img:1" in out
        assert f"Loaded image ID: {dangling}" in out
        ia, ib = _images(a), _images(b)
        assert ia == ib
        for ref in ("fixture/whiteouts:1", "extra/img:1"):
            ha = a.out("history", "--no-trunc", "--format", "{{json .}}", ref)
            hb = b.out("history", "--no-trunc", "--format", "{{json .}}", ref)
            assert [json.loads(x)["CreatedBy"] for x in ha.splitlines()] == \
                [json.loads(x)["CreatedBy"] for x in hb.splitlines()]
            assert json.loads(a.out("image", "inspect", ref))[0]["RootFS"] == \
                json.loads(b.out("image", "inspect", ref))[0]["RootFS"]
        # by ID: no names in the archive
        byid = a.docker("save", extra).stdout
        m = json.load(tarfile.open(fileobj=io.BytesIO(byid)).extractfile("manifest.json"))  # type: ignore[arg-type]
        assert m[0]["RepoTags"] is None
        # re-loading retags and says so; stdin + -q
        b.docker("tag", dangling, "extra/img:1")
        out = b.out("load", "-q", input=f.read_bytes())
        assert "The image extra/img:1 already exists, renaming the old one with ID" in out
        assert json.loads(b.out("image", "inspect", "extra/img:1"))[0]["Id"] == extra
        # a gzip-compressed archive
        gz = tmp_path / "all.tar.gz"
        gz.write_bytes(gzip.compress(f.read_bytes(), 1))
        assert "Loaded image: extra/img:1" in b.out("load", "-i", str(gz))
    finally:
        a.stop()
        b.stop()


def test_load_garbage_and_hostile(daemon: Daemon, tmp_path: Path) -> None:
    daemon.docker("import", "-", "keep/me:1", input=small_tar({"k": b"k"}))
    before = _images(daemon)
    blobs_before = sorted(os.listdir(daemon.data_root / "content" / "blobs" / "sha256"))
    p = daemon.docker("load", input=b"definitely not an archive" * 50, check=False)
    assert p.returncode != 0 and p.stderr.strip()
    # truncated archive of a real image
    data = (FIXTURES / "dockerd-20.10-save-busybox.tar").read_bytes()
    p = daemon.docker("load", input=data[: len(data) // 2], check=False)
    assert p.returncode != 0
    # a ../ entry
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    p = daemon.docker("load", input=buf.getvalue(), check=False)
    assert p.returncode != 0
    # manifest.json pointing at a config whose layer diff_id does not match
    with tarfile.open(FIXTURES / "dockerd-20.10-save-busybox.tar") as src:
        members = {m.name: (m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()}  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, (m, content) in members.items():
            if name.endswith("layer.tar"):
                content = small_tar({"other": b"bytes"})
                m.size = len(content)
            tf.addfile(m, io.BytesIO(content) if content is not None else None)
    p = daemon.docker("load", input=buf.getvalue(), check=False)
    assert p.returncode != 0 and b"diff" in p.stderr.lower()
    assert _images(daemon) == before
    assert sorted(os.listdir(daemon.data_root / "content" / "blobs" / "sha256")) == blobs_before
    # docker-py raises ImageLoadError for an in-band error
    c = daemon.client()
    with pytest.raises(docker.errors.ImageLoadError):
        c.images.load(b"garbage" * 100)


def test_docker_py_save_load(daemon: Daemon, tmp_path: Path) -> None:
    c = daemon.client()
    c.api.import_image(src=io.BytesIO(small_tar({"py": b"py"})), repository="py/save", tag="1")
    img = c.images.get("py/save:1")
    data = b"".join(img.save(named=True))
    raw = b"".join(c.api.get_image("py/save:1"))
    assert tarfile.open(fileobj=io.BytesIO(raw)).getnames()
    c.images.remove("py/save:1")
    loaded = c.images.load(data)
    assert [i.id for i in loaded] == [img.id]
    assert c.images.get("py/save:1").id == img.id
    lines = list(c.api.load_image(data, quiet=False))
    assert any("Loaded image: py/save:1" in (ln.get("stream") or "") for ln in lines)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (apt-get install skopeo)")
def test_skopeo_and_umoci_read_our_save(shared_daemon: Daemon, tmp_path: Path) -> None:
    shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-whiteouts.tar"))
    f = tmp_path / "s.tar"
    shared_daemon.docker("save", "-o", str(f), "fixture/whiteouts:1")
    p = subprocess.run(["skopeo", "inspect", f"oci-archive:{f}"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Layers"]
    p = subprocess.run(["skopeo", "inspect", f"docker-archive:{f}"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"]
    if shutil.which("umoci") is None:
        print("umoci not installed: skipping the umoci unpack half")
        return
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(f) as tf:
        tf.extractall(layout, filter="data")
    idx = json.loads((layout / "index.json").read_text())
    tag = idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    p = subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(tmp_path / "bundle")],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "data" / "a").read_text() == "changed\n"
    assert not (rootfs / "data" / "c").exists()
    assert sorted(os.listdir(rootfs / "data" / "sub")) == ["n"]


@pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))
def test_interop_with_real_dockerd(shared_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> None:
    real = Dockerd(shared_daemon.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(why)
        tmp = tmp_path_factory.mktemp("interop")
        shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-whiteouts.tar"))
        ours = tmp / "ours.tar"
        shared_daemon.docker("save", "-o", str(ours), "fixture/whiteouts:1")
        real.docker("load", "-i", str(ours))
        assert real.out("image", "inspect", "--format", "{{.Id}}", "fixture/whiteouts:1") == WH_ID
        # and dockerd's save of an image it imported loads into ours with the same ID
        theirs_id = real.out("import", "-", "theirs/img:1", input=small_tar({"t": b"t"}))
        theirs = tmp / "theirs.tar"
        real.docker("save", "-o", str(theirs), "theirs/img:1")
        shared_daemon.docker("load", "-i", str(theirs))
        assert json.loads(shared_daemon.out("image", "inspect", "theirs/img:1"))[0]["Id"] == theirs_id
    finally:
        real.stop()


def _rss_peak_sampler(pid: int):  # type: ignore[no-untyped-def]
    import threading
    peak = [0]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except OSError:
                return
            time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return peak, stop


@pytest.mark.slow
def test_memory_flat_for_a_1gb_image(daemon: Daemon, tmp_path: Path) -> None:
    """Import, save and load a 1 GiB layer: the daemon's peak RSS stays far below the image size."""
    import http.client
    import socket
    import tarfile as _tf

    size = 1 << 30
    assert daemon.proc is not None
    peak, stop = _rss_peak_sampler(daemon.proc.pid)

    def body():  # type: ignore[no-untyped-def]
        ti = _tf.TarInfo("big.bin")
        ti.size = size
        yield ti.tobuf(format=_tf.PAX_FORMAT)
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            yield block[i % 7:] + block[: i % 7]  # not one repeated block: keep it incompressible
        yield b"\0" * 1024

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(daemon.sock))
            self.sock = s

    c = Conn("x", timeout=600)
    c.request("POST", "/images/create?fromSrc=-&repo=big/img&tag=1", body=body(), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    assert r.status == 200 and b"sha256:" in r.read()
    f = tmp_path / "big.tar"
    daemon.docker("save", "-o", str(f), "big/img:1", timeout=600)
    assert f.stat().st_size > size // 2
    daemon.docker("rmi", "big/img:1")
    daemon.docker("load", "-i", str(f), timeout=600)
    stop.set()
    assert peak[0] < 150 << 20, f"peak RSS {peak[0] >> 20} MiB"
