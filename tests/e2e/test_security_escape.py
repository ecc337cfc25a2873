"""Archives that aim outside the store, through the real daemon and the docker CLI (issue 10, item 1; item 6's
over-long context names).

Every way an archive reaches an extractor is tried — ``docker build`` with ``ADD evil.tar /d/``, COPY into a
destination the image made a symlink to a host directory, the evil archive as the build context itself,
``docker import``, ``docker load`` and a pull from a test registry (those three check every entry as the layer
streams in and refuse what extraction would refuse: the hard link through ``escape``; the extractor's own refusal
is tested on layers in tests/unit/build/test_extract_escape.py) — with the archive of CVE-2025-4517 (CPython's
gh-135034 ``test_realpath_limit_attack``, computed for the path the daemon extracts into and for destinations of 60,
100 and 160 bytes) and the classic escapes.
A canary directory outside the data root (the test's own ``tmp_path``) must stay as it was: nothing new in it,
its file with its bytes and a single link.  Each test says what the daemon answers: a refusal naming the entry,
or — where dockerd accepts the archive too — success with everything inside the rootfs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, overlay_or_skip
from hostile import Canary, Entry, cve_2025_4517_entries, tar_of_entries
from registry import Registry, push_image, shared_registry  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="extraction and overlay mounts need root")

def classic(canary: Canary) -> dict[str, list[Entry]]:
    return {
        "dotdot": [(canary.climb(40) + "/pwned", "file", b"x")],
        "abs-symlink-then-write": [("l", "symlink", str(canary.dir)), ("l/pwned", "file", b"x")],
        "rel-symlink-then-write": [("l", "symlink", canary.climb(40)), ("l/pwned", "file", b"x")],
        "hardlink-out": [("h", "hardlink", str(canary.victim))],
        "hardlink-through-symlink": [("l", "symlink", str(canary.dir)), ("h", "hardlink", "l/victim"),
                                     ("h", "file", b"overwritten")],
    }


LENGTHS = (60, 100, 160)  # the destination lengths CPython's test computes the CVE archive for


# -- fixtures and helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("escape")
    overlay_or_skip(base)
    d = Daemon(base).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def canary(tmp_path: Path, sd: Daemon) -> Canary:
    c = Canary(tmp_path)
    assert not str(c.dir).startswith(str(sd.base))  # outside the daemon's directories
    return c


def _build_dir(tmp_path: Path, dockerfile: str, files: dict[str, bytes]) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, data in files.items():
        (ctx / name).write_bytes(data)
    return ctx


def _messages(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in body.splitlines() if ln.strip()]


def _post_build(d: Daemon, context: bytes, tag: str) -> tuple[int, bytes]:
    status, _, body = d.api("POST", f"/build?t={tag}&rm=1&forcerm=1", context, {"Content-Type": "application/x-tar"})
    return status, body


def _layer_files(d: Daemon, image: str, tmp_path: Path) -> set[str]:
    """The names in every layer of ``image`` (from ``docker save``)."""
    out = tmp_path / "saved.tar"
    d.docker("save", "-o", str(out), image)
    names: set[str] = set()
    with tarfile.open(out) as outer:
        for m in outer.getmembers():
            if m.isfile() and (m.name.endswith("layer.tar") or m.name.startswith("blobs/sha256/")):
                data = outer.extractfile(m).read()  # type: ignore[union-attr]
                try:
                    with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                        names.update(n.rstrip("/") for n in inner.getnames())
                except tarfile.TarError:
                    continue  # a config or manifest blob
    return names


def _snapshot_dest_lengths(d: Daemon) -> list[int]:
    """Where the next layer unpacks: ``<data-root>/snapshots/<id>/fs``, id one more than the largest so far."""
    snaps = d.data_root / "snapshots"
    ids = [int(n) for n in os.listdir(snaps) if n.isdigit()] if snaps.is_dir() else []
    nxt = max(ids, default=0) + 1
    return sorted({len(f"{snaps}/{nxt}/fs"), *LENGTHS})


# -- ADD of a local archive --------------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_add_cve_2025_4517_is_refused(sd: Daemon, canary: Canary, tmp_path: Path, compress: bool) -> None:
    """``ADD evil.tar /d/``: refused naming the entry (what ADD did before — ``tarfile.extractall`` with the
    ``data`` filter on the mounted rootfs — wrote into the canary).  The step's rootfs is mounted at
    ``<data-root>/tmp/extract-step-<16 hex>``, so ``/d`` has a known length; the usual ones are tried too."""
    exact = len(str(sd.data_root / "tmp")) + len("/extract-step-") + 16 + len("/d")
    for i, length in enumerate(sorted({exact, *LENGTHS})):
        evil = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
        ctx = _build_dir(tmp_path / str(i), "FROM scratch\nADD evil.tar /d/\n",
                         {"evil.tar": gzip.compress(evil) if compress else evil})
        p = sd.docker("build", "-t", "escape/add:cve", str(ctx), check=False)
        err = p.stderr.decode()
        assert p.returncode != 0
        assert "ADD failed: cannot unpack evil.tar: hardlink 'flaglink' -> 'escape/victim': cannot link to the " \
               "target: No such file or directory" in err, err
        canary.assert_untouched()
    assert sd.docker("image", "inspect", "escape/add:cve", check=False).returncode != 0


ADD_OUTCOMES = {  # dockerd's chrootarchive.Untar: symlinks resolve inside the destination, ".." is refused
    "dotdot": "escapes the destination",
    "abs-symlink-then-write": None,
    "rel-symlink-then-write": None,
    "hardlink-out": "cannot link to the target",
    "hardlink-through-symlink": "cannot link to the target",
}


@pytest.mark.parametrize("case", sorted(ADD_OUTCOMES))
def test_add_classic_escapes(sd: Daemon, canary: Canary, tmp_path: Path, case: str) -> None:
    ctx = _build_dir(tmp_path, "FROM scratch\nADD evil.tar /d/\n", {"evil.tar": tar_of_entries(classic(canary)[case])})
    tag = f"escape/add:{case}"
    p = sd.docker("build", "-t", tag, str(ctx), check=False)
    expected = ADD_OUTCOMES[case]
    if expected is None:  # succeeds, as with dockerd: the symlink is followed inside /d
        assert p.returncode == 0, p.stderr
        assert f"d/{str(canary.dir).lstrip('/')}/pwned" in _layer_files(sd, tag, tmp_path)
        sd.docker("rmi", tag)
    else:
        assert p.returncode != 0
        assert "ADD failed: cannot unpack evil.tar: " in p.stderr.decode() and expected in p.stderr.decode()
    canary.assert_untouched()


# -- COPY into a destination under an image's symlink ---------------------------------------------------------
def test_copy_into_a_symlinked_destination_stays_in_the_rootfs(sd: Daemon, canary: Canary, tmp_path: Path) -> None:
    """The image has ``/out`` -> the canary directory (absolute, a host path) and ``/rel`` climbing to it; COPY
    follows both *inside* the rootfs (dockerd's FollowSymlinkInScope), so the build succeeds and the files are
    in the image under that path."""
    links = tar_of_entries([("out", "symlink", str(canary.dir)), ("rel", "symlink", canary.climb(30))])
    sd.docker("import", "-", "escape/links:1", input=links)
    ctx = _build_dir(tmp_path, "FROM escape/links:1\nCOPY f /out/\nCOPY f /rel/g\nCOPY f /out/victim\n"
                               "ADD t.tar /rel/\n",
                     {"f": b"payload", "t.tar": tar_of_entries([("from-tar", "file", b"x")])})
    sd.docker("build", "-t", "escape/copy:1", str(ctx))
    canary.assert_untouched()
    inner = str(canary.dir).lstrip("/")
    names = _layer_files(sd, "escape/copy:1", tmp_path)
    assert {f"{inner}/f", f"{inner}/g", f"{inner}/victim", f"{inner}/from-tar", "out", "rel"} <= names
    sd.docker("rmi", "escape/copy:1", "escape/links:1")


# -- the build context ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", LENGTHS)
def test_build_context_cve_2025_4517_is_a_400(sd: Daemon, canary: Canary, length: int) -> None:
    ctx = tar_of_entries([("Dockerfile", "file", b"FROM scratch\nCOPY . /\n"),
                    *cve_2025_4517_entries(length, canary.climb(), "victim")])
    status, body = _post_build(sd, ctx, "escape/ctx:cve")
    assert status == 400, body[:500]
    msg = json.loads(body)["message"]
    assert msg.startswith("invalid build context: tar entry 'a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/llll") and \
        msg.endswith("is written through the symlink 'a' of the archive (entries below a symlink are refused)"), msg
    canary.assert_untouched()
    # the docker CLI shows it
    p = sd.docker("build", "-t", "escape/ctx:cve", "-", input=ctx, check=False)
    assert p.returncode != 0 and b"is written through the symlink 'a' of the archive" in p.stderr


CONTEXT_OUTCOMES = {  # None: built, with the entry inside the context (names are cleaned from its root, as dockerd)
    "dotdot": None,
    "abs-symlink-then-write": "is written through a symlink that leaves the build context",
    "rel-symlink-then-write": "is written through a symlink that leaves the build context",
    "hardlink-out": "which is not in the archive",  # the target, cleaned into the context, is not there
    "hardlink-through-symlink": "is written through a symlink that leaves the build context",
}


@pytest.mark.parametrize("case", sorted(CONTEXT_OUTCOMES))
def test_build_context_classic_escapes_are_400s(sd: Daemon, canary: Canary, case: str, tmp_path: Path) -> None:
    ctx = tar_of_entries([("Dockerfile", "file", b"FROM scratch\nCOPY . /\n"), *classic(canary)[case]])
    status, body = _post_build(sd, ctx, f"escape/ctx:{case}")
    if CONTEXT_OUTCOMES[case] is None:
        assert status == 200 and not any("errorDetail" in m for m in _messages(body)), body[-500:]
        assert str(canary.dir).lstrip("/") + "/pwned" in _layer_files(sd, f"escape/ctx:{case}", tmp_path)
        sd.docker("rmi", f"escape/ctx:{case}")
    else:
        assert status == 400, body[:500]
        msg = json.loads(body)["message"]
        assert msg.startswith("invalid build context: tar entry '") and CONTEXT_OUTCOMES[case] in msg, msg
    canary.assert_untouched()


def test_build_context_over_long_names_are_400s_naming_the_entry(sd: Daemon, tmp_path: Path) -> None:
    """Item 6: GNU tar's "Cannot open: File name too long" was taken for a host error (500), and a deep tree
    ran the builder out of Python's recursion limit (500).  dockerd fails the first ones too (its Untar gets
    ENAMETOOLONG); here each is a 400 that names the entry, before anything is written for it."""
    for name, message in (
        ("a" * 300, "has a name of 300 bytes: longer than 255 (NAME_MAX)"),
        ("/".join(["b" * 250] * 20), "has a path of 5019 bytes: longer than the "),
        ("/".join(["c" * 10] * 380), "has a path of 4179 bytes: longer than the "),
        ("/".join(["c"] * 1500), "is 1499 directories deep: deeper than the 400 a build context may be"),
    ):
        ctx = tar_of_entries([("Dockerfile", "file", b"FROM scratch\nCOPY . /\n"), (name, "file", b"x")])
        status, body = _post_build(sd, ctx, "escape/long:1")
        assert status == 400, body[:300]
        msg = json.loads(body)["message"]
        assert msg.startswith(f"invalid build context: tar entry '{name[:200]}…' ") and message in msg, msg
    # a tree as deep as allowed builds, and COPY takes it whole
    deep = "/".join(["e"] * 401)
    ctx = tar_of_entries([("Dockerfile", "file", b"FROM scratch\nCOPY . /x/\n"), (deep, "file", b"deep")])
    status, body = _post_build(sd, ctx, "escape/deep:1")
    assert status == 200 and not any("errorDetail" in m for m in _messages(body)), body[-500:]
    assert f"x/{deep}" in _layer_files(sd, "escape/deep:1", tmp_path)
    sd.docker("rmi", "escape/deep:1")


# -- import, load, pull: the layer is unpacked when a container is created -----------------------------------------
CVE_REFUSAL = b"hardlink 'flaglink' -> 'escape/victim' goes through the symlink 'escape' of the layer"


def _assert_refused_at_ingest(sd: Daemon, p: subprocess.CompletedProcess[bytes], image: str, words: bytes) -> None:
    """Refused while the layer streams in, naming the entry (what extraction would refuse later is checked at
    ingest), and nothing stored under the name."""
    assert p.returncode != 0, p.stdout
    assert words in p.stderr, p.stderr
    assert sd.docker("image", "inspect", image, check=False).returncode != 0


def test_import_cve_2025_4517_entries(sd: Daemon, canary: Canary) -> None:
    for length in _snapshot_dest_lengths(sd):
        evil = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
        p = sd.docker("import", "-", f"escape/import:{length}", input=evil, check=False)
        _assert_refused_at_ingest(sd, p, f"escape/import:{length}", CVE_REFUSAL)
        canary.assert_untouched()


@pytest.mark.parametrize("case,words", [
    ("dotdot", b"escapes the layer root"),
    ("hardlink-out", b"the target is not in the layer"),
    ("hardlink-through-symlink", b"hardlink 'h' -> 'l/victim' goes through the symlink 'l' of the layer"),
    ("abs-symlink-then-write", None)])
def test_import_classic_escapes(sd: Daemon, canary: Canary, case: str, words: bytes | None) -> None:
    image = f"escape/import:{case}"
    p = sd.docker("import", "-", image, input=tar_of_entries(classic(canary)[case]), check=False)
    if words is not None:
        _assert_refused_at_ingest(sd, p, image, words)
    else:  # a layer may hold that: the container sees its own /tmp/…/pwned
        assert p.returncode == 0, p.stderr
        cid = sd.out("create", image, "true")
        sd.docker("rm", cid)
        sd.docker("rmi", image)
    canary.assert_untouched()


def _save_archive(layer: bytes, tag: str) -> bytes:
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cfg = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg, "RepoTags": [tag], "Layers": ["l/layer.tar"]}]).encode()
    return tar_of_entries([("l", "dir", 0o755), ("l/layer.tar", "file", layer), (cfg, "file", config),
                     ("manifest.json", "file", manifest)])


def test_load_cve_2025_4517_entries(sd: Daemon, canary: Canary) -> None:
    for length in _snapshot_dest_lengths(sd):
        evil = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
        p = sd.docker("load", input=_save_archive(evil, f"escape/load:{length}"), check=False)
        _assert_refused_at_ingest(sd, p, f"escape/load:{length}", CVE_REFUSAL)
        canary.assert_untouched()


def test_pull_cve_2025_4517_entries(sd: Daemon, canary: Canary, shared_registry: Registry) -> None:  # noqa: F811
    for length in _snapshot_dest_lengths(sd):
        evil = tar_of_entries(cve_2025_4517_entries(length, canary.climb(), "victim"))
        img = push_image(shared_registry, "escape/pull", str(length), [evil])
        p = sd.docker("pull", img["reference"], check=False)
        _assert_refused_at_ingest(sd, p, img["reference"], CVE_REFUSAL)
        canary.assert_untouched()
