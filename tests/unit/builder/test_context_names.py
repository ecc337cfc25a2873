"""Build-context entry names cleaned as dockerd's chrooted ``Untar`` places them (moby's
TestBuildUncleanTarFilenames): ``../foo``, ``/bar`` and ``a/b/../c`` are ``foo``, ``bar`` and ``a/c`` in the
context, with either extractor; GNU tar (which refuses ``..`` names and places ``..`` hard link targets elsewhere)
hands the rest of the stream to the Python extractor at the first such entry, whatever the chunking, with long
names in GNU and PAX headers, and the tarsums (COPY's checksums) are keyed by the cleaned names."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockwright.builder import extract as ctx_extract
from dockwright.builder.extract import ContextScanner, clean_name, extract_with_python, extract_with_tar
from dockwright.errors import InvalidArgument


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="names", dir="/tmp"))
    try:
        yield d
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=True)


def _tar(entries: list[tuple[str, str, bytes | str | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if kind == "file":
                assert isinstance(data, bytes)
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
                tf.addfile(ti)
            else:
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, str(data), 0o777
                tf.addfile(ti)
    return buf.getvalue()


def _reader(data: bytes, size: int):  # type: ignore[no-untyped-def]
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        piece = data[pos:pos + size]
        pos += len(piece)
        return piece

    return read


def _tree(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("symlink", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                st = p.stat()
                out[rel] = (p.read_bytes(), st.st_ino if st.st_nlink > 1 else None)
    # hard links: which names share an inode, not the inode numbers
    inodes: dict[object, list[str]] = {}
    for rel, v in out.items():
        if isinstance(v, tuple) and v[0] != "symlink" and v[1] is not None:
            inodes.setdefault(v[1], []).append(rel)
    for rel, v in list(out.items()):
        if isinstance(v, tuple) and v[0] != "symlink" and v[1] is not None:
            out[rel] = (v[0], tuple(sorted(inodes[v[1]])))
    return out


def test_clean_is_go_filepath_clean_from_the_root() -> None:
    for name, want in (("../foo", "foo"), ("/bar", "bar"), ("../bar/", "bar"), ("//e", "e"), ("a/../../../q", "q"),
                       ("./b/./c/../d", "b/d"), ("a/b/../c", "a/c"), ("..", ""), ("/", ""), ("./", ""),
                       ("a/b/..", "a"), ("plain/name", "plain/name"), ("dir/", "dir"), ("a..b/..c", "a..b/..c")):
        assert clean_name(name) == want, name


UNCLEAN = [
    ("Dockerfile", "file", b"FROM scratch\nCOPY foo bar /\n"),
    ("../foo", "file", b"foocontents"),
    ("/bar", "file", b"barcontents"),
    ("../dir/", "dir", None),
    ("../dir/x", "file", b"x"),
    ("//e", "file", b"e"),
    ("a/../../../qux", "file", b"qux"),
    ("./b/./c/../d", "file", b"d"),
    ("keep/sub/../f", "file", b"f"),
    ("hl", "hardlink", "keep/x/../f"),     # GNU tar would link to f
    ("../sl", "symlink", "../../anywhere"),  # a symlink's target is kept as it is
    ("after/" + "L" * 150 + "/../g", "file", b"g"),  # a long name (PAX path / GNU long name)
    ("last", "file", b"last"),
]
EXPECTED = {
    "Dockerfile": (b"FROM scratch\nCOPY foo bar /\n", None), "foo": (b"foocontents", None),
    "bar": (b"barcontents", None), "dir": "dir", "dir/x": (b"x", None), "e": (b"e", None), "qux": (b"qux", None),
    "b": "dir", "b/d": (b"d", None), "keep": "dir", "keep/f": (b"f", ("hl", "keep/f")), "hl": (b"f", ("hl", "keep/f")),
    "sl": ("symlink", "../../anywhere"), "after": "dir", "after/g": (b"g", None), "last": (b"last", None),
}


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_unclean_names_land_where_dockerd_puts_them(base: Path, fmt: int) -> None:
    data = _tar(UNCLEAN, fmt)
    sums = None
    runs = [("python", 65536)]
    if ctx_extract.gnu_tar() is not None:
        # every chunking: a header (or a PAX / GNU long-name body) split anywhere, several entries in one chunk
        runs += [("gnu", size) for size in (1, 100, 511, 512, 513, 1000, 1536, 4096, 65536)]
    for how, size in runs:
        dest = base / f"{how}-{size}"
        dest.mkdir()
        if how == "gnu":
            scan = extract_with_tar(ctx_extract.gnu_tar(), _reader(data, size), str(dest))  # type: ignore[arg-type]
            assert scan.takeover is not None  # at ../foo, the first name with "..": GNU tar refuses it
        else:
            scan = extract_with_python(_reader(data, size), str(dest))
        assert _tree(dest) == EXPECTED, (how, size)
        assert set(scan.tarsums) == {k for k in EXPECTED if k not in ("b", "keep", "after")}
        if sums is None:
            sums = scan.tarsums
        assert scan.tarsums == sums, (how, size)
        shutil.rmtree(dest)


def test_gnu_tar_alone_without_dotdot_names(base: Path) -> None:
    """Leading slashes are GNU tar's own business (it strips them): no takeover."""
    if ctx_extract.gnu_tar() is None:
        pytest.skip("no GNU tar, or no Landlock to confine it")
    data = _tar([("/abs", "file", b"a"), ("//x/./y", "file", b"y"), ("h", "hardlink", "/abs")])
    dest = base / "d"
    dest.mkdir()
    scan = extract_with_tar(ctx_extract.gnu_tar(), _reader(data, 700), str(dest))  # type: ignore[arg-type]
    assert scan.takeover is None
    assert _tree(dest) == {"abs": (b"a", ("abs", "h")), "h": (b"a", ("abs", "h")), "x": "dir", "x/y": (b"y", None)}


@pytest.mark.parametrize("how", ["gnu", "python"])
def test_refusals_after_a_takeover_still_hold(base: Path, how: str) -> None:
    """Names cleaned into the context are checked as before: a write below the archive's symlink, after the
    Python extractor took over, is refused before anything is written for it."""
    if how == "gnu" and ctx_extract.gnu_tar() is None:
        pytest.skip("no GNU tar, or no Landlock to confine it")
    outside = base / "outside"
    outside.mkdir()
    data = _tar([("x/../first", "file", b"1"), ("l", "symlink", str(outside)), ("../l/pwned", "file", b"x")])
    dest = base / "d"
    dest.mkdir()
    with pytest.raises(InvalidArgument, match="'../l/pwned' is written through a symlink that leaves the build"):
        if how == "gnu":
            extract_with_tar(ctx_extract.gnu_tar(), _reader(data, 512), str(dest))  # type: ignore[arg-type]
        else:
            extract_with_python(_reader(data, 512), str(dest))
    assert os.listdir(outside) == []


def test_scanner_safe_end_holds_back_an_entrys_headers() -> None:
    """What may go to GNU tar: never part of an entry whose header blocks are not all seen."""
    data = _tar([("a", "file", b"x" * 600), ("p/" + "n" * 200, "file", b"y")])  # the second has a PAX header
    scan = ContextScanner()
    scan.feed(data[:1536 + 100])  # a's header and body, then into the PAX header of the second
    assert scan.safe_end() == 1536
    scan.feed(data[1636:1536 + 1024 + 10])  # the PAX body, and 10 bytes of the entry's own header
    assert scan.safe_end() == 1536
    scan.feed(data[1536 + 1024 + 10:])
    assert scan.safe_end() == len(data)
    scan.close()


@pytest.mark.parametrize("how", ["gnu", "python"])
def test_directory_modes_are_never_set_through_a_symlink(base: Path, how: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory of the archive replaced later by a symlink to a host directory: the directory modes and
    times restored after extraction must not reach the host directory (they followed the symlink before)."""
    import asyncio

    from dockwright.builder.context import extract_context

    if how == "python":
        monkeypatch.setenv("DOCKWRIGHT_PY_EXTRACT", "1")
    elif ctx_extract.gnu_tar() is None:
        pytest.skip("no GNU tar, or no Landlock to confine it")
    host = base / "host"
    (host / "sub").mkdir(parents=True)
    os.chmod(host, 0o755)
    os.chmod(host / "sub", 0o755)
    os.utime(host, (1e9, 1e9))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = 7
        tf.addfile(ti, io.BytesIO(b"FROM x\n"))
        # e/sub: through the symlink e (GNU tar does not replace a directory that is not empty by a symlink)
        nested = how == "python"
        for name in ("d", "e", "e/sub") if nested else ("d",):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o700, 5
            tf.addfile(ti)
        for name, target in (("d", str(host)), ("e", str(host))) if nested else (("d", str(host)),):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
    data = buf.getvalue()

    async def chunks():  # type: ignore[no-untyped-def]
        yield data

    asyncio.run(extract_context(chunks(), base / "ctx"))
    assert os.readlink(base / "ctx" / "d") == str(host)
    for p in (host, host / "sub"):
        assert os.stat(p).st_mode & 0o7777 == 0o755, p
    assert os.stat(host).st_mtime == 1e9
