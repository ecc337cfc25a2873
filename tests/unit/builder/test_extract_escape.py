"""Archives that try to write outside their destination, through every extraction path: a layer
(``apply_layer``), an archive (``extract_archive``: ``docker cp``), ADD of a local archive (``copy_sources``) and
the build context (GNU tar confined by Landlock, and the Python extractor).

The archive of CVE-2025-4517 (CPython's ``test_realpath_limit_attack``, gh-135034) is built for a destination
whose path is exactly 60, 100 or 160 bytes long — the lengths the attack is computed for — so that against a
``realpath``-based check (``tarfile``'s ``data`` filter, which ADD used) it really escapes: each test checks that
the archive is live (its ``escape`` symlink leads to the canary on the host while ``os.path.realpath`` says it
stays inside) and that nothing was written there.  A canary directory next to the destination holds a file that
must keep its bytes and its single link.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from dockwright.builder import extract as ctx_extract
from dockwright.builder.confine import landlock_abi, spawn_confined
from dockwright.builder.context import extract_context
from dockwright.builder.copy import copy_sources, is_archive
from dockwright.errors import DataCorrupted, InvalidArgument
from dockwright.layers.apply import apply_layer, extract_archive

from hostile import Canary, Entry, cve_2025_4517_entries, tar_of_entries

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="extraction keeps owners and makes devices: needs root")

@pytest.fixture
def base() -> Iterator[Path]:
    """A short directory (the destination paths must be exactly 60 bytes long)."""
    d = Path(tempfile.mkdtemp(prefix="esc", dir="/tmp"))
    try:
        yield d
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=True)


LENGTHS = (60, 100, 160)  # the destination lengths CPython's test computes the CVE archive for


def dest_of_length(base: Path, length: int, tail: str = "") -> Path:
    """A new directory ``base/ppp…`` (+ ``tail``) whose path is ``length`` bytes long."""
    pad = length - len(str(base)) - 1 - len(tail)
    assert 0 < pad < 256, (base, length)
    d = Path(str(base) + "/" + "p" * pad + tail)
    d.mkdir(parents=True)
    assert len(str(d)) == length
    return d


def assert_live(dest: Path, canary: Canary) -> None:
    """The CVE archive left ``dest/escape``: the kernel resolves it to the canary directory while
    ``os.path.realpath`` (what the ``data`` filter trusts) says it stays in ``dest`` — a realpath-based
    extractor would have written through it."""
    esc = dest / "escape"
    assert os.path.islink(esc)
    assert os.path.samefile(esc, canary.dir)
    assert os.path.realpath(esc).startswith(str(dest) + "/")


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def _agen(data: bytes) -> Any:
    for c in chunks(data, 65536):
        yield c


def context(data: bytes, dest: Path) -> Any:
    return asyncio.run(extract_context(_agen(data), dest))


@pytest.fixture(params=["gnu-tar", "python"])
def extractor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setenv("DOCKWRIGHT_PY_EXTRACT", "1")
    elif ctx_extract.gnu_tar() is None:
        pytest.skip("no GNU tar, or no Landlock to confine it")
    return request.param


# -- CVE-2025-4517 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", LENGTHS)
def test_cve_2025_4517_archive(base: Path, length: int) -> None:
    """``extract_archive`` (docker cp, ADD): the escape link is made inside, the hard link through it finds no
    ``victim`` in the destination: refused naming the entry; nothing outside."""
    canary = Canary(base)
    dest = dest_of_length(base, length)
    data = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
    with pytest.raises(DataCorrupted, match=r"hardlink 'flaglink' -> 'escape/victim': cannot link to the target"):
        extract_archive(chunks(data), dest)
    assert_live(dest, canary)
    canary.assert_untouched()


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_cve_2025_4517_add(base: Path, length: int, compress: str) -> None:
    """``ADD evil.tar /d/`` with the rootfs mounted where ``<rootfs>/d`` is ``length`` bytes long (what ADD used
    to unpack with ``tarfile.extractall(filter="data")``, which this archive defeats): refused, clearly."""
    canary = Canary(base)
    rootfs = dest_of_length(base, length - 2)
    data = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    src = base / "evil.tar"
    src.write_bytes(data)
    assert is_archive(src)
    with pytest.raises(DataCorrupted, match=r"ADD failed: cannot unpack evil.tar: hardlink 'flaglink'"):
        copy_sources([src], rootfs, "/d/", ["evil.tar"], 0, 0, "", True)
    assert len(str(rootfs / "d")) == length
    assert_live(rootfs / "d", canary)
    canary.assert_untouched()
    assert sorted(os.listdir(base)) == ["canary", "evil.tar", rootfs.name]


@pytest.mark.parametrize("length", LENGTHS)
def test_cve_2025_4517_layer(base: Path, length: int) -> None:
    """A layer (import, load, pull, then run): a layer's hard link must name one of its own entries, reached
    without a symlink (the rule ingest applies too), so the layer is refused at the hard link's header, before
    the extraction gets to the escape link."""
    canary = Canary(base)
    dest = dest_of_length(base, length)
    data = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
    with pytest.raises(DataCorrupted, match=r"hardlink 'flaglink' -> 'escape/victim' goes through the symlink "
                                            r"'escape' of the layer"):
        apply_layer(chunks(data), dest)
    canary.assert_untouched()


@pytest.mark.parametrize("length", LENGTHS)
def test_cve_2025_4517_context(base: Path, extractor: str, length: int) -> None:
    """A build context: the first entry below one of the archive's symlinks is refused (400), so neither
    extractor gets to the escape."""
    canary = Canary(base)
    dest = dest_of_length(base, length)
    entries = [("Dockerfile", "file", b"FROM scratch\n"), *cve_2025_4517_entries(length, canary.climb(), "victim")]
    with pytest.raises(InvalidArgument, match=r"tar entry 'a/b/c.*' is written through the symlink 'a' of the "
                                              r"archive"):
        context(tar_of_entries(entries), dest)
    canary.assert_untouched()


# -- the classic escapes ---------------------------------------------------------------------------------------
def classic(canary: Canary, depth: int = 40) -> dict[str, list[Entry]]:
    up = "../" * depth + str(canary.dir).lstrip("/")
    return {
        "dotdot": [(up + "/pwned", "file", b"x")],
        "absolute-name": [(str(canary.dir) + "/pwned", "file", b"x")],
        "abs-symlink-then-write": [("l", "symlink", str(canary.dir)), ("l/pwned", "file", b"x"),
                                   ("l/victim", "file", b"overwritten")],
        "rel-symlink-then-write": [("l", "symlink", up), ("l/pwned", "file", b"x")],
        "symlink-chain-then-write": [("s", "dir", None), ("s/a", "symlink", "../b"), ("b", "symlink", str(canary.dir)),
                                     ("s/a/pwned", "file", b"x")],
        "hardlink-out-absolute": [("h", "hardlink", str(canary.victim))],
        "hardlink-out-dotdot": [("h", "hardlink", "../" * depth + str(canary.victim).lstrip("/"))],
        "hardlink-through-symlink": [("l", "symlink", str(canary.dir)), ("h", "hardlink", "l/victim"),
                                     ("h", "file", b"overwritten")],
        "replace-symlink-to-outside-file": [("v", "symlink", str(canary.victim)), ("v", "file", b"overwritten")],
    }


# what each extraction makes of each archive: an error matching the pattern, or None (it succeeds, inside)
ARCHIVE_OUTCOMES = {  # extract_archive, ADD and layers alike: moby's chroot semantics
    "dotdot": "escapes",
    "absolute-name": None,  # made relative, as dockerd does
    "abs-symlink-then-write": None,  # followed inside the destination
    "rel-symlink-then-write": None,  # ".." stops at the destination
    "symlink-chain-then-write": None,
    "hardlink-out-absolute": "cannot link to the target",  # /tmp/… inside the destination does not exist
    "hardlink-out-dotdot": "escapes",
    "hardlink-through-symlink": "cannot link to the target",
    "replace-symlink-to-outside-file": None,  # the symlink is replaced, not written through
}
LAYER_OUTCOMES = {  # a layer's hard links must name its own entries (dockerd applies it into an empty directory)
    **ARCHIVE_OUTCOMES,
    "hardlink-out-absolute": "the target is not in the layer",
    "hardlink-through-symlink": "goes through the symlink 'l' of the layer",
}
CONTEXT_OUTCOMES = {  # build contexts: names cleaned from the context's root (dockerd's chrooted Untar), else a 400
    "dotdot": None,  # ".." stops at the context's root
    "absolute-name": None,  # below the context's root
    "abs-symlink-then-write": "through a symlink that leaves the build context",
    "rel-symlink-then-write": "through a symlink that leaves the build context",
    "symlink-chain-then-write": "through a symlink that leaves the build context",
    "hardlink-out-absolute": "not in the archive",  # the target, cleaned into the context, is not there
    "hardlink-out-dotdot": "not in the archive",
    "hardlink-through-symlink": "through a symlink that leaves the build context",
    "replace-symlink-to-outside-file": None,
}


def _check_inside(case: str, dest: Path, canary: Canary) -> None:
    inner = dest / str(canary.dir).lstrip("/")
    if case in ("dotdot", "absolute-name", "abs-symlink-then-write", "rel-symlink-then-write",
                "symlink-chain-then-write"):
        assert (inner / "pwned").read_bytes() == b"x"
    if case == "abs-symlink-then-write":
        assert (inner / "victim").read_bytes() == b"overwritten"
    if case == "replace-symlink-to-outside-file":
        assert not os.path.islink(dest / "v") and (dest / "v").read_bytes() == b"overwritten"


@pytest.mark.parametrize("case", sorted(ARCHIVE_OUTCOMES))
@pytest.mark.parametrize("how", ["archive", "add", "layer"])
def test_classic_escapes(base: Path, case: str, how: str) -> None:
    canary = Canary(base)
    data = tar_of_entries(classic(canary)[case])
    expected = (LAYER_OUTCOMES if how == "layer" else ARCHIVE_OUTCOMES)[case]
    if how == "add":
        rootfs = base / "rootfs"
        rootfs.mkdir()
        dest = rootfs / "d"
        (base / "x.tar").write_bytes(data)
        run = lambda: copy_sources([base / "x.tar"], rootfs, "/d/", ["x.tar"], 0, 0, "", True)  # noqa: E731
    else:
        dest = base / "dest"
        dest.mkdir()
        fn = extract_archive if how == "archive" else apply_layer
        run = lambda: fn(chunks(data), dest)  # noqa: E731
    if expected is None:
        run()
        _check_inside(case, dest, canary)
    else:
        with pytest.raises(DataCorrupted, match=expected) as err:
            run()
        assert "tar entry" in str(err.value) or "hardlink" in str(err.value)
    canary.assert_untouched()


@pytest.mark.parametrize("case", sorted(CONTEXT_OUTCOMES))
def test_classic_escapes_in_a_build_context(base: Path, extractor: str, case: str) -> None:
    canary = Canary(base)
    dest = base / "ctx"
    data = tar_of_entries([("Dockerfile", "file", b"FROM scratch\n"), *classic(canary)[case]])
    expected = CONTEXT_OUTCOMES[case]
    if expected is None:
        context(data, dest)
        if case == "replace-symlink-to-outside-file" and extractor == "gnu-tar":
            # GNU tar makes an absolute symlink at the end, over a placeholder; the file that replaced the
            # placeholder (same inode number, reused) loses to it.  Harmless: nothing is written through it.
            assert (dest / "v").read_bytes() == b"overwritten" or os.readlink(dest / "v") == str(canary.victim)
        else:
            _check_inside(case, dest, canary)
    else:
        with pytest.raises(InvalidArgument, match=expected) as err:
            context(data, dest)
        assert "invalid build context: tar entry '" in str(err.value)
    canary.assert_untouched()


def test_context_entries_below_any_archive_symlink_are_refused(base: Path, extractor: str) -> None:
    """Even a symlink that stays inside: the checks look at names, the extractor would follow it.  A hard link
    to a symlink is that symlink."""
    for entries, shown in (
        ([("sub", "dir", None), ("l", "symlink", "sub"), ("l/f", "file", b"x")], "'l'"),
        ([("sub", "dir", None), ("s", "symlink", "sub"), ("h", "hardlink", "s"), ("h/f", "file", b"x")], "'h'"),
        ([("sub", "dir", None), ("sub/f", "file", b"x"), ("l", "symlink", "sub"), ("h", "hardlink", "l/f")], "'l'"),
    ):
        dest = base / f"ctx{len(os.listdir(base))}"
        with pytest.raises(InvalidArgument, match=f"is written through the symlink {shown} of the archive"):
            context(tar_of_entries([("Dockerfile", "file", b"FROM x\n"), *entries]), dest)


def test_context_pax_global_header_renaming_entries_is_refused(base: Path, extractor: str) -> None:
    """GNU tar (and tarfile) apply a global ``path`` to the entries after it, Go's reader does not: the checks
    would not see the name written."""
    data = tar_of_entries([("Dockerfile", "file", b"FROM x\n"), ("a", "file", b"1")], pax_global={"path": "l/pwned"})
    with pytest.raises(InvalidArgument, match="PAX global header .* sets 'path'"):
        context(data, base / "ctx")
    # a global comment (git archive writes one) is fine
    info = context(tar_of_entries([("Dockerfile", "file", b"FROM x\n")], pax_global={"comment": "abc"}), base / "ok")
    assert info.dockerfile == b"FROM x\n"


# -- the confinement itself -----------------------------------------------------------------------------------
needs_landlock = pytest.mark.skipif(landlock_abi() < 2, reason="the kernel has no Landlock ABI 2")


@needs_landlock
def test_confined_process_cannot_write_outside(base: Path) -> None:
    canary = Canary(base)
    dest = base / "dest"
    dest.mkdir()
    os.symlink(canary.dir, dest / "out")
    script = (f"echo in > {dest}/in; echo x > {canary.dir}/pwned; echo x > {dest}/out/pwned2; "
              f"echo x > {canary.victim}; ln {canary.victim} {dest}/hard; rm -f {canary.victim}; "
              f"mkdir {canary.dir}/d; true")
    proc = spawn_confined(["sh", "-c", script], str(dest), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    assert (dest / "in").read_text() == "in\n"
    assert err.count(b"Permission denied") + err.count(b"Invalid cross-device link") >= 5, err
    canary.assert_untouched()


@needs_landlock
def test_confined_gnu_tar_cannot_write_outside_even_with_absolute_names(base: Path) -> None:
    """What the checks would miss (a parser difference) still cannot leave the destination: GNU tar told to
    keep absolute names (``-P``) and to follow symlinks is refused by the kernel."""
    tar = ctx_extract.gnu_tar()
    if tar is None:
        pytest.skip("no GNU tar")
    canary = Canary(base)
    dest = base / "dest"
    dest.mkdir()
    data = tar_of_entries([(str(canary.dir) + "/pwned", "file", b"x"), (str(canary.victim), "file", b"overwritten"),
                     ("l", "symlink", str(canary.dir)), ("l/pwned2", "file", b"x")])
    proc = spawn_confined([tar, "-x", "-P", "-f", "-", "-C", str(dest)], str(dest),
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(data, timeout=30)
    assert proc.returncode != 0 and b"Permission denied" in err, err
    canary.assert_untouched()


# -- item 6: names the kernel cannot take -----------------------------------------------------------------------
def test_over_long_names_paths_and_deep_trees_are_400_naming_the_entry(base: Path, extractor: str) -> None:
    dest = base / "c9"  # every destination here has a name of this length
    room = 4095 - len(str(dest)) - 1  # the longest relative path whose full path fits in PATH_MAX
    depth = ctx_extract.MAX_DEPTH
    long_path = "/".join(["c" * 19] * (room // 20 + 1))  # fewer than MAX_DEPTH directories
    cases = [
        ("a" * 256, r"tar entry 'a{200}…' has a name of 256 bytes: longer than 255 \(NAME_MAX\)"),
        ("/".join(["b" * 250] * 20), r"tar entry 'b{200}…' has a path of 5019 bytes"),
        (long_path, rf"tar entry '(c{{19}}/){{10}}…' has a path of {len(long_path)} bytes: longer than the {room} "
                    r"a build context entry can have here \(PATH_MAX\)"),
        ("/".join(["d"] * (depth + 2)), rf"tar entry '(d/){{100}}…' is {depth + 1} directories deep: deeper than "
                                        rf"the {depth} a build context may be"),
    ]
    assert len(long_path) > room and long_path.count("/") < depth
    for i, (name, message) in enumerate(cases):
        with pytest.raises(InvalidArgument, match=message):
            context(tar_of_entries([("Dockerfile", "file", b"FROM x\n"), (name, "file", b"x")]), base / f"c{i}")
    with pytest.raises(InvalidArgument, match=r"tar entry 'h' is \d+ directories deep"):
        context(tar_of_entries([("Dockerfile", "file", b"FROM x\n"), ("h", "hardlink", "/".join(["d"] * (depth + 2)))]),
                base / "c8")
    link = tar_of_entries([("Dockerfile", "file", b"FROM x\n"), ("l", "symlink", "t" * 4096)])
    with pytest.raises(InvalidArgument, match=r"tar entry 'l' is a symlink to a target of 4096 bytes"):
        context(link, base / "c7")
    # as deep as allowed is fine, with either extractor
    deep = "/".join(["e"] * (depth + 1))
    context(tar_of_entries([("Dockerfile", "file", b"FROM x\n"), (deep, "file", b"deep")]), dest)
    assert (dest / deep).read_bytes() == b"deep"


def test_an_entry_gnu_tar_cannot_make_is_a_400_naming_it(base: Path, extractor: str) -> None:
    """A file over a non-empty directory: GNU tar refuses ("d: Cannot open: File exists", a 500 before), the
    Python extractor replaces the directory as dockerd does."""
    data = tar_of_entries([("Dockerfile", "file", b"FROM x\n"), ("d", "dir", None), ("d/f", "file", b"x"),
                     ("d", "file", b"now a file")])
    if extractor == "gnu-tar":
        with pytest.raises(InvalidArgument, match=r"invalid build context: d: Cannot open: File exists"):
            context(data, base / "ctx")
    else:
        context(data, base / "ctx")
        assert (base / "ctx" / "d").read_bytes() == b"now a file"


# -- ADD's unpacking: dockerd's Untar, confined to the destination ------------------------------------------------
def test_add_unpacks_like_dockerd_untar_inside_the_destination(base: Path) -> None:
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, uid, mode in (("owned", 1234, 0o4755), (".wh.gone", 0, 0o644)):
            ti = tarfile.TarInfo(name)
            ti.uid, ti.gid, ti.mode, ti.size = uid, uid, mode, 2
            tf.addfile(ti, io.BytesIO(b"hi"))
        ti = tarfile.TarInfo("root")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/"
        tf.addfile(ti)
        ti = tarfile.TarInfo("root/etc/passwd")  # through the archive's symlink: the destination's /etc
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"evil\n"))
    (base / "a.tar.bz2").write_bytes(bz2.compress(buf.getvalue()))
    copy_sources([base / "a.tar.bz2"], rootfs, "/opt/x/", ["a.tar.bz2"], 1000, 1000, "", True)
    x = rootfs / "opt" / "x"
    st = os.lstat(x / "owned")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 1234, 0o4755)  # --chown does not apply
    assert (x / ".wh.gone").read_bytes() == b"hi"  # no whiteout conversion
    assert (x / "etc" / "passwd").read_bytes() == b"evil\n"
    assert (rootfs / "etc" / "passwd").read_text() == "root\n"  # the rootfs outside the destination is untouched
    assert os.stat(rootfs / "opt").st_uid == 0 and os.stat(x).st_mode & 0o777 == 0o755


def test_add_destination_through_image_symlinks_stays_in_the_rootfs(base: Path) -> None:
    """The rootfs has /out -> <canary dir> (absolute, missing in the rootfs) and /rel climbing to it: ADD and
    COPY follow them inside the rootfs, as dockerd's FollowSymlinkInScope does."""
    canary = Canary(base)
    rootfs = base / "rootfs"
    rootfs.mkdir()
    os.symlink(canary.dir, rootfs / "out")
    os.symlink("../" * 30 + str(canary.dir).lstrip("/"), rootfs / "rel")
    (base / "f").write_bytes(b"payload")
    (base / "t.tar").write_bytes(tar_of_entries([("victim", "file", b"from the tar")]))
    copy_sources([base / "f"], rootfs, "/out/", ["f"], 0, 0, "", False)
    copy_sources([base / "f"], rootfs, "/rel/g", ["f"], 0, 0, "", False)
    copy_sources([base / "t.tar"], rootfs, "/out/", ["t.tar"], 0, 0, "", True)
    copy_sources([base / "f"], rootfs, "/out/victim2", ["f"], 0, 0, "", False)
    inner = rootfs / str(canary.dir).lstrip("/")
    assert sorted(os.listdir(inner)) == ["f", "g", "victim", "victim2"]
    assert (inner / "victim").read_bytes() == b"from the tar"
    canary.assert_untouched()


def test_copy_and_add_destinations_that_climb_stop_at_the_rootfs(base: Path) -> None:
    """``COPY f /../../x``: ``..`` stops at ``/`` as dockerd's ``filepath.Join`` makes it (it was a ValueError)."""
    canary = Canary(base)
    rootfs = base / "rootfs"
    rootfs.mkdir()
    (base / "f").write_bytes(b"payload")
    (base / "t.tar").write_bytes(tar_of_entries([("inner", "file", b"x")]))
    copy_sources([base / "f"], rootfs, "/../../canary/f", ["f"], 0, 0, "", False)
    copy_sources([base / "t.tar"], rootfs, "/a/../../../canary/", ["t.tar"], 0, 0, "", True)
    assert sorted(os.listdir(rootfs / "canary")) == ["f", "inner"]
    canary.assert_untouched()


@pytest.mark.parametrize("kind", ["plain", "gzip", "bzip2", "xz", "zstd"])
def test_is_archive_reads_every_compression_and_never_extracts(base: Path, kind: str) -> None:
    data = tar_of_entries([("f", "file", b"x")])
    comp = {"plain": lambda d: d, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
            "zstd": zstandard.ZstdCompressor().compress}[kind]
    p = base / "a"
    p.write_bytes(comp(data))
    assert is_archive(p)
    p.write_bytes(comp(b"just some text, not a tar\n" * 100))
    assert not is_archive(p)
    p.write_bytes(comp(bytes(10240)))  # an empty archive: Go's Next() says EOF, so not an archive
    assert not is_archive(p)
    # a small file whose first header announces a 1 GiB PAX record: read no further than a few MiB
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type, ti.size = tarfile.XHDTYPE, 1 << 30
    p.write_bytes(comp(ti.tobuf(format=tarfile.USTAR_FORMAT) + bytes(8 << 20)))
    assert not is_archive(p)
    assert sorted(os.listdir(base)) == ["a"]


def test_gnu_tar_needs_the_confinement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel cannot confine GNU tar, contexts go to the Python extractor."""
    monkeypatch.setattr(ctx_extract, "landlock_abi", lambda: 1)
    ctx_extract.gnu_tar.cache_clear()
    try:
        assert ctx_extract.gnu_tar() is None
    finally:
        monkeypatch.undo()
        ctx_extract.gnu_tar.cache_clear()
    if shutil.which("tar") and ctx_extract.landlock_abi() >= 2:
        assert ctx_extract.gnu_tar() is not None
