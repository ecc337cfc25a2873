"""Build contexts: tarball extraction (every compression, hostile entries, docker-py's ``.dockerfile.<hex>``),
remote contexts (:mod:`dockwright.builder.remote`) and COPY sources (:mod:`dockwright.builder.sources`), which
share this file's tar and extraction helpers."""

from __future__ import annotations

import asyncio
import bz2
import functools
import gzip
import hashlib
import http.server
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from dockwright.builder.context import ContextInfo, extract_context
from dockwright.builder.dockerignore import DockerIgnore
from dockwright.builder.remote import fetch_remote, is_git_url
from dockwright.builder.sources import resolve_sources
from dockwright.errors import DataCorrupted, InvalidArgument

# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, params=["gnu-tar", "python"])
def extractor(request, monkeypatch):
    """Every extraction test runs with GNU tar writing the files (when installed) and with the Python
    extractor (the fallback without GNU tar)."""
    if request.param == "python":
        monkeypatch.setenv("DOCKWRIGHT_PY_EXTRACT", "1")
    elif shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    return request.param


def make_tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, content|None for dir, {"type":..., "linkname":..., "mode":..., "mtime":...})."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for entry in entries:
            name, data = entry[0], entry[1]
            opts = entry[2] if len(entry) > 2 else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = opts.get("mtime", 1_600_000_000)
            if "type" in opts:
                ti.type = opts["type"]
                ti.linkname = opts.get("linkname", "")
                ti.mode = opts.get("mode", 0o777)
                tf.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = opts.get("mode", 0o755)
                tf.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = opts.get("mode", 0o644)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


async def agen(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


def extract(data: bytes, dest: Path, size: int = 1000, **kw) -> ContextInfo:
    return asyncio.run(extract_context(agen(data, size), dest, **kw))


def tree(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


BASIC = [
    ("Dockerfile", b"FROM scratch\nCOPY . /\n"),
    ("dir", None, {"mode": 0o750, "mtime": 1_500_000_000}),
    ("dir/a.txt", b"a", {"mode": 0o600, "mtime": 1_400_000_000}),
    ("dir/run.sh", b"#!/bin/sh\n", {"mode": 0o755}),
    ("link", None, {"type": tarfile.SYMTYPE, "linkname": "dir/a.txt"}),
    ("abs", None, {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
    ("hard", None, {"type": tarfile.LNKTYPE, "linkname": "dir/a.txt"}),
]


# -- extraction ------------------------------------------------------------------------------------


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "none":
        return data
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "gzip-multi":
        half = len(data) // 2
        return gzip.compress(data[:half]) + gzip.compress(data[half:])
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if kind == "zstd-stream":
        cobj = zstandard.ZstdCompressor().compressobj()
        return cobj.compress(data) + cobj.flush()
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["none", "gzip", "gzip-multi", "bzip2", "xz", "zstd", "zstd-stream"])
def test_extract_every_compression(tmp_path, kind):
    data = _compress(kind, make_tar(BASIC))
    info = extract(data, tmp_path / "ctx", size=777)
    root = tmp_path / "ctx"
    assert info.root == root
    assert info.dockerfile == b"FROM scratch\nCOPY . /\n"
    assert info.dockerfile_path == "Dockerfile"
    assert tree(root) == ["Dockerfile", "abs", "dir", "dir/a.txt", "dir/run.sh", "hard", "link"]
    assert (root / "dir/a.txt").read_bytes() == b"a"
    st = os.stat(root / "dir/a.txt")
    assert st.st_mode & 0o7777 == 0o600 and st.st_mtime == 1_400_000_000
    assert os.stat(root / "dir/run.sh").st_mode & 0o777 == 0o755
    dst = os.stat(root / "dir")
    assert dst.st_mode & 0o7777 == 0o750 and dst.st_mtime == 1_500_000_000
    assert os.readlink(root / "link") == "dir/a.txt"
    assert os.readlink(root / "abs") == "/etc/passwd"  # not followed
    assert os.stat(root / "hard").st_ino == st.st_ino


def test_extract_large_file_and_gnu_format(tmp_path):
    big = os.urandom(300_000) + b"\0" * 2_000_000
    data = gzip.compress(make_tar([("Dockerfile", b"FROM x"), ("d/" + "n" * 150, big)], fmt=tarfile.GNU_FORMAT))
    extract(data, tmp_path / "c", size=65536)
    assert (tmp_path / "c" / "d" / ("n" * 150)).read_bytes() == big


def test_extract_lowercase_dockerfile_and_custom_name(tmp_path):
    info = extract(make_tar([("dockerfile", b"FROM lower")]), tmp_path / "a")
    assert info.dockerfile == b"FROM lower" and info.dockerfile_path == "dockerfile"
    info = extract(make_tar([("sub/Dockerfile.dev", b"FROM dev")]), tmp_path / "b",
                   dockerfile_name="sub/Dockerfile.dev")
    assert info.dockerfile == b"FROM dev" and info.dockerfile_path == "sub/Dockerfile.dev"
    with pytest.raises(InvalidArgument, match="Cannot locate specified Dockerfile: Dockerfile.dev"):
        extract(make_tar([("Dockerfile", b"FROM x")]), tmp_path / "c", dockerfile_name="Dockerfile.dev")
    with pytest.raises(InvalidArgument, match="Cannot locate specified Dockerfile: Dockerfile"):
        extract(b"", tmp_path / "d")  # an empty body is an empty context
    with pytest.raises(InvalidArgument, match="forbidden path outside the build context"):
        extract(make_tar([("Dockerfile", b"FROM x")]), tmp_path / "e", dockerfile_name="../Dockerfile")


def test_extract_dockerfile_symlink_in_scope(tmp_path):
    tar = make_tar([("real/Df", b"FROM real"), ("Dockerfile", None, {"type": tarfile.SYMTYPE, "linkname": "/real/Df"})])
    assert extract(tar, tmp_path / "c").dockerfile == b"FROM real"


def test_extract_applies_dockerignore(tmp_path):
    ignore = b"# build output\n**/*.go\n!keep.go\ndocs/\n!docs/README.md\n/secret\n*.tmp\n"
    tar = make_tar(
        [
            ("Dockerfile", b"FROM x"),
            (".dockerignore", ignore),
            ("main.go", b"package main"),
            ("keep.go", b"keep"),
            ("pkg/util.go", b"package pkg"),
            ("pkg/util.txt", b"text"),
            ("docs", None, {"mode": 0o700}),
            ("docs/README.md", b"readme"),
            ("docs/guide.md", b"guide"),
            ("docs/img", None),
            ("docs/img/a.png", b"png"),
            ("secret", b"s"),
            ("sub/secret", b"not at root"),
            ("a.tmp", b"t"),
        ]
    )
    info = extract(tar, tmp_path / "c")
    assert info.ignore.matches("main.go")
    assert tree(tmp_path / "c") == [
        ".dockerignore",
        "Dockerfile",
        "docs",
        "docs/README.md",
        "keep.go",
        "pkg",
        "pkg/util.txt",
        "sub",
        "sub/secret",
    ]
    assert os.stat(tmp_path / "c" / "docs").st_mode & 0o777 == 0o700


def test_extract_ignored_dockerfile_and_dockerignore_are_read_then_removed(tmp_path):
    tar = make_tar(
        [("Dockerfile", b"FROM x"), (".dockerignore", b"Dockerfile\n.dockerignore\n"), ("a", b"a")]
    )
    info = extract(tar, tmp_path / "c")
    assert info.dockerfile == b"FROM x"
    assert info.ignore.patterns == ["Dockerfile", ".dockerignore"]
    assert tree(tmp_path / "c") == ["a"]
    with pytest.raises(InvalidArgument, match="file not found in build context"):
        resolve_sources(tmp_path / "c", "Dockerfile", info.ignore)


def test_extract_docker_py_dockerfile(tmp_path):
    name = ".dockerfile.1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
    tar = make_tar([("app.py", b"print()"), (name, b"FROM python\nCOPY . /app\n")])
    info = extract(tar, tmp_path / "c", dockerfile_name=name)
    assert info.dockerfile == b"FROM python\nCOPY . /app\n"
    assert info.dockerfile_path == name
    assert tree(tmp_path / "c") == ["app.py"]
    assert [p.name for p in resolve_sources(tmp_path / "c", "*", info.ignore)] == ["app.py"]


def test_extract_duplicate_entries_replace(tmp_path):
    tar = make_tar(
        [
            ("Dockerfile", b"FROM x"),
            ("f", b"old", {"mode": 0o444}),
            ("f", b"new"),
            ("d", b"file first"),
            ("d", None, {"type": tarfile.DIRTYPE}),
            ("d/x", b"now a dir"),
            ("l", None, {"type": tarfile.SYMTYPE, "linkname": "f"}),
            ("l", b"regular now"),
        ]
    )
    extract(tar, tmp_path / "c")
    assert (tmp_path / "c/f").read_bytes() == b"new"
    assert (tmp_path / "c/d/x").read_bytes() == b"now a dir"
    assert not (tmp_path / "c/l").is_symlink() and (tmp_path / "c/l").read_bytes() == b"regular now"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("d", b"x"), ("d/x", b"y")], "parent that is not a directory"),
        ([("l", None, {"type": tarfile.SYMTYPE, "linkname": "/etc"}), ("l/passwd", b"x")], "through a symlink"),
        ([("l", None, {"type": tarfile.SYMTYPE, "linkname": "../../etc"}), ("l/passwd", b"x")], "through a symlink"),
        (
            [("l", None, {"type": tarfile.SYMTYPE, "linkname": "/"}), ("l/tmp/evil", b"x")],
            "through a symlink that leaves the build context",
        ),
        ([("h", None, {"type": tarfile.LNKTYPE, "linkname": "../outside"})], "not in the archive"),
        ([("h", None, {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"})], "not in the archive"),
        ([("h", None, {"type": tarfile.LNKTYPE, "linkname": "missing"})], "not in the archive"),
        (
            [("l", None, {"type": tarfile.SYMTYPE, "linkname": "/"}),
             ("h", None, {"type": tarfile.LNKTYPE, "linkname": "l/etc/passwd"})],
            "through a symlink that leaves the build context",
        ),
    ],
)
def test_extract_hostile_entries(tmp_path, entries, message):
    dest = tmp_path / "deep" / "ctx"
    with pytest.raises(InvalidArgument, match=message):
        extract(make_tar([("Dockerfile", b"FROM x"), *entries]), dest)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "deep" / "evil").exists()
    assert not (tmp_path / "deep" / "outside").exists()


def test_extract_corrupt_input(tmp_path):
    tar = make_tar(BASIC)
    with pytest.raises(DataCorrupted):
        extract(gzip.compress(tar)[:-100], tmp_path / "a")
    with pytest.raises(DataCorrupted):
        extract(b"\x1f\x8b\x08" + b"garbage" * 100, tmp_path / "b")
    with pytest.raises(DataCorrupted):
        extract(b"this is not a tar archive at all " * 50, tmp_path / "c")
    with pytest.raises(DataCorrupted):
        extract(zstandard.ZstdCompressor().compress(tar)[:-50], tmp_path / "d")


def test_extract_compressed_contexts_use_the_checked_decompressor(tmp_path):
    """Contexts decompress through the layers' decompressor: truncated bzip2/xz streams are corrupt data, and an
    xz stream that asks for a 1.5 GiB dictionary is refused (the layers' memory limit) instead of growing the
    daemon by what its header claims."""
    tar = make_tar(BASIC)
    with pytest.raises(DataCorrupted):
        extract(bz2.compress(tar)[:-40], tmp_path / "a")
    with pytest.raises(DataCorrupted):
        extract(lzma.compress(tar)[:-40], tmp_path / "b")
    huge_dict = lzma.compress(tar, format=lzma.FORMAT_XZ,
                              filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1536 << 20, "preset": 0}])
    with pytest.raises(DataCorrupted, match="(?i)memory|limit"):
        extract(huge_dict, tmp_path / "c")


def test_extract_trailing_data_is_drained(tmp_path):
    consumed = []

    async def body():
        data = make_tar(BASIC) + b"\0" * 100_000
        for i in range(0, len(data), 512):
            consumed.append(i)
            yield data[i : i + 512]

    async def main():
        return await extract_context(body(), tmp_path / "c")

    asyncio.run(main())
    assert consumed[-1] >= len(make_tar(BASIC)) + 100_000 - 512


def test_extract_body_error_propagates(tmp_path):
    class Boom(Exception):
        pass

    async def body():
        yield make_tar(BASIC)[:2048]
        raise Boom("client went away")

    async def main():
        await extract_context(body(), tmp_path / "c")

    with pytest.raises(Boom):
        asyncio.run(main())


# -- COPY sources and checksums ----------------------------------------------------------------------


def _ctx(tmp_path) -> tuple[Path, DockerIgnore]:
    tar = make_tar(
        [
            ("Dockerfile", b"FROM x"),
            (".dockerignore", b"*.log\n"),
            ("a.txt", b"a"),
            ("b.txt", b"b"),
            ("c.md", b"c"),
            ("dir/x.txt", b"x"),
            ("dir/sub/y.txt", b"y"),
            ("link", None, {"type": tarfile.SYMTYPE, "linkname": "/dir"}),
            ("esc", None, {"type": tarfile.SYMTYPE, "linkname": "/../../../etc"}),
            ("star*name", b"literal"),
        ]
    )
    info = extract(tar, tmp_path / "ctx")
    return info.root, info.ignore


def test_resolve_sources(tmp_path):
    root, ig = _ctx(tmp_path)
    assert resolve_sources(root, ".", ig) == [root]
    assert resolve_sources(root, "./", ig) == [root]
    assert resolve_sources(root, "/a.txt", ig) == [root / "a.txt"]
    assert resolve_sources(root, "dir", ig) == [root / "dir"]
    assert resolve_sources(root, "dir/../b.txt", ig) == [root / "b.txt"]
    assert resolve_sources(root, "*.txt", ig) == [root / "a.txt", root / "b.txt"]
    assert resolve_sources(root, "dir/*", ig) == [root / "dir/sub", root / "dir/x.txt"]
    assert resolve_sources(root, "dir/*/*.txt", ig) == [root / "dir/sub/y.txt"]
    assert resolve_sources(root, "[ab].txt", ig) == [root / "a.txt", root / "b.txt"]
    assert resolve_sources(root, "?.md", ig) == [root / "c.md"]
    assert resolve_sources(root, "*.nothing", ig) == []
    assert resolve_sources(root, "star[*]name", ig) == [root / "star*name"]
    # symlinks resolved inside the context
    assert resolve_sources(root, "link/x.txt", ig) == [root / "dir/x.txt"]
    assert resolve_sources(root, "link", ig) == [root / "dir"]
    with pytest.raises(InvalidArgument) as exc:
        resolve_sources(root, "esc/passwd", ig)
    assert str(exc.value) == (
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat esc/passwd: file does not exist"
    )


def test_resolve_sources_errors(tmp_path):
    root, ig = _ctx(tmp_path)
    with pytest.raises(InvalidArgument) as exc:
        resolve_sources(root, "../x", ig)
    assert str(exc.value) == "COPY failed: forbidden path outside the build context: ../x ()"
    with pytest.raises(InvalidArgument) as exc:
        resolve_sources(root, "x", ig)
    assert str(exc.value) == (
        "COPY failed: file not found in build context or excluded by .dockerignore: stat x: file does not exist"
    )
    # ignored files are invisible even when present
    (root / "present.log").write_text("log")
    with pytest.raises(InvalidArgument, match="stat present.log"):
        resolve_sources(root, "present.log", ig)
    assert resolve_sources(root, "*.log", ig) == []


# -- remote contexts -------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    content_types: dict[str, str] = {}

    def log_message(self, *args):
        pass

    def guess_type(self, path):
        for suffix, ct in self.content_types.items():
            if str(path).endswith(suffix):
                return ct
        return super().guess_type(path)


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_remote_tarball(tmp_path, http_root):
    root, base = http_root
    (root / "ctx.tar.gz").write_bytes(gzip.compress(make_tar(BASIC)))
    (root / "ctx.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(make_tar(BASIC)))
    (root / "ctx.tar").write_bytes(make_tar(BASIC))
    for name in ("ctx.tar.gz", "ctx.tar.zst", "ctx.tar"):
        dest = tmp_path / name
        info = asyncio.run(fetch_remote(f"{base}/{name}", dest))
        assert info.dockerfile == b"FROM scratch\nCOPY . /\n"
        assert (dest / "dir/a.txt").read_bytes() == b"a"


def test_fetch_remote_plain_dockerfile(tmp_path, http_root):
    root, base = http_root
    (root / "Dockerfile").write_bytes(b"FROM alpine\nRUN true\n")  # served as application/octet-stream
    info = asyncio.run(fetch_remote(f"{base}/Dockerfile", tmp_path / "c"))
    assert info.dockerfile == b"FROM alpine\nRUN true\n" and info.dockerfile_path == "Dockerfile"
    assert (tmp_path / "c/Dockerfile").read_bytes() == b"FROM alpine\nRUN true\n"
    (root / "df.txt").write_bytes(b"FROM busybox\n")
    info = asyncio.run(fetch_remote(f"{base}/df.txt", tmp_path / "d"))
    assert info.dockerfile == b"FROM busybox\n"


def test_fetch_remote_errors(tmp_path, http_root):
    root, base = http_root
    with pytest.raises(InvalidArgument) as exc:
        asyncio.run(fetch_remote(f"{base}/missing.tar", tmp_path / "a"))
    assert str(exc.value).startswith(f"error downloading remote context {base}/missing.tar: ")
    assert f"failed to GET {base}/missing.tar with status 404 " in str(exc.value)
    (root / "page.html").write_bytes(b"<html><body>hi</body></html>")
    with pytest.raises(InvalidArgument, match='unsupported Content-Type "text/html"'):
        asyncio.run(fetch_remote(f"{base}/page.html", tmp_path / "b"))
    (root / "empty").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="empty response"):
        asyncio.run(fetch_remote(f"{base}/empty", tmp_path / "c"))
    with pytest.raises(InvalidArgument, match="could not be recognized as URL"):
        asyncio.run(fetch_remote("ftp://example.com/x", tmp_path / "d"))
    with pytest.raises(InvalidArgument, match="error downloading remote context http://127.0.0.1:1/x.tar"):
        asyncio.run(fetch_remote("http://127.0.0.1:1/x.tar", tmp_path / "e"))


def test_is_git_url():
    assert is_git_url("https://github.com/docker/docker.git")
    assert is_git_url("https://github.com/docker/docker.git#branch:dir")
    assert is_git_url("git://github.com/docker/docker")
    assert is_git_url("git@github.com:docker/docker.git")
    assert is_git_url("github.com/docker/docker")
    assert not is_git_url("https://example.com/context.tar.gz")


def _git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path):
    if shutil.which("git") is None:
        print("git is not installed: skipping git remote tests")
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "Dockerfile").write_text("FROM main\n")
    (repo / "sub").mkdir()
    (repo / "sub/Dockerfile").write_text("FROM sub\n")
    (repo / "sub/file.txt").write_text("v1\n")
    (repo / ".dockerignore").write_text("ignored.txt\n")
    (repo / "ignored.txt").write_text("no\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one")
    first = _git(repo, "rev-parse", "HEAD")
    _git(repo, "tag", "v1")
    _git(repo, "checkout", "-q", "-b", "feature")
    (repo / "sub/file.txt").write_text("feature\n")
    _git(repo, "commit", "-q", "-am", "two")
    _git(repo, "checkout", "-q", "main")
    return repo, first


def test_fetch_remote_git_file_url(tmp_path, git_repo):
    repo, first = git_repo
    info = asyncio.run(fetch_remote(f"file://{repo}", tmp_path / "a"))
    assert info.dockerfile == b"FROM main\n"
    assert (tmp_path / "a/sub/file.txt").read_text() == "v1\n"
    assert (tmp_path / "a/.git").is_dir()
    assert not (tmp_path / "a/ignored.txt").exists()

    info = asyncio.run(fetch_remote(f"file://{repo}#feature:sub", tmp_path / "b"))
    assert info.dockerfile == b"FROM sub\n"
    assert tree(tmp_path / "b") == ["Dockerfile", "file.txt"]
    assert (tmp_path / "b/file.txt").read_text() == "feature\n"

    info = asyncio.run(fetch_remote(f"file://{repo}#v1", tmp_path / "c"))
    assert (tmp_path / "c/sub/file.txt").read_text() == "v1\n"

    with pytest.raises(InvalidArgument, match="error fetching"):
        asyncio.run(fetch_remote(f"file://{repo}#nosuchref", tmp_path / "d"))
    with pytest.raises(InvalidArgument, match="not within git root"):
        asyncio.run(fetch_remote(f"file://{repo}#main:../..", tmp_path / "e"))
    with pytest.raises(InvalidArgument, match="not a directory"):
        asyncio.run(fetch_remote(f"file://{repo}#main:Dockerfile", tmp_path / "f"))
    with pytest.raises(InvalidArgument, match="invalid refspec"):
        asyncio.run(fetch_remote(f"file://{repo}#--upload-pack=x", tmp_path / "g"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".git-context-")] == []


def test_fetch_remote_git_dumb_http(tmp_path, git_repo, http_root):
    """A ``….git`` http URL on a server without smart HTTP: not shallow, as moby's gitutils."""
    repo, _ = git_repo
    www, base = http_root
    bare = www / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    info = asyncio.run(fetch_remote(f"{base}/repo.git#feature:sub", tmp_path / "c"))
    assert info.dockerfile == b"FROM sub\n"
    assert (tmp_path / "c/file.txt").read_text() == "feature\n"


def test_extract_cancelled_stops_the_worker(tmp_path):
    async def body():
        yield make_tar(BASIC)[:1536]
        await asyncio.Event().wait()  # a client that stalls

    async def main():
        await asyncio.wait_for(extract_context(body(), tmp_path / "c"), 0.3)

    result: list[BaseException] = []

    def run():
        try:
            asyncio.run(main())  # asyncio.run waits for the executor: hangs if the worker is stuck
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(result[0], (asyncio.TimeoutError, TimeoutError))


def test_relative_symlinks_out_of_the_context_are_kept(tmp_path):
    # dockerd unpacks contexts in a chroot, so such a link is kept; it is resolved inside the context when used
    tar = make_tar([("Dockerfile", b"FROM x"), ("d", None),
                    ("d/l", None, {"type": tarfile.SYMTYPE, "linkname": "../../etc"})])
    extract(tar, tmp_path / "c")
    assert os.readlink(tmp_path / "c/d/l") == "../../etc"


def test_tarsums_hashed_while_extracting_are_dockerds(tmp_path, extractor):
    """The tarsums the scanner computes from the client's headers are what srchash computes from the files
    for a docker-CLI-like context, so the COPY checksum is the same either way."""
    big = os.urandom(3 << 20)  # spans many chunks
    tar = make_tar([("Dockerfile", b"FROM x"), ("d", None), ("d/big", big), ("d/empty", b""),
                    ("s", None, {"type": tarfile.SYMTYPE, "linkname": "d/big"}),
                    ("d/re", b"old"), ("d/re", b"new"), ("x", b"file"), ("x", None)], fmt=tarfile.GNU_FORMAT)
    info = extract(tar, tmp_path / "c", size=65536)
    root = tmp_path / "c"
    from dockwright.builder import srchash  # both extractors hash the context through the same scanner
    assert set(info.tarsums) == {f"{root}/{n}" for n in ("Dockerfile", "d", "d/big", "d/empty", "s", "d/re", "x")}
    assert info.tarsums[f"{root}/d/re"] == hashlib.sha256(
        srchash.context_entry_header("d/re", 0o644, 0, 0, 3, "0") + b"new").hexdigest()
    assert info.tarsums[f"{root}/x"] == hashlib.sha256(
        srchash.context_entry_header("x/", 0o755, 0, 0, 0, "5")).hexdigest()  # the later entry wins
    for src in ("d", "s", "Dockerfile", "d/big"):
        assert (srchash.source_hash(root, src, known=info.tarsums) == srchash.source_hash(root, src)), src
