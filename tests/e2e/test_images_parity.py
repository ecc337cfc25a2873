"""Image operations compared with a real dockerd 20.10 (Debian's docker.io), the reference, side by side.

The same commands go to both daemons with the same docker CLI (CLI 28, and CLI 20.10 where its output differs):
``docker rmi`` of an image with child images, the ``GraphDriver`` of image inspect, the events of ``docker load``
and ``docker save`` and the events filters, the error words of import, load, save, inspect and build, and
``docker system df -v``. Outputs are compared after IDs, data roots and temporary names are normalised. Skipped,
with the reason, only where dockerd cannot run.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DOCKER, FIXTURES, Daemon, small_tar
from dockerd import Dockerd, dockerd_unavailable

pytestmark = pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))

CLI20 = "/usr/bin/docker"  # Debian's docker.io CLI (20.10), beside the CLI 28 the tests use
BUSYBOX = FIXTURES / "dockerd-20.10-save-busybox.tar"
_ID = re.compile(r"\b(sha256:)?([0-9a-f]{64}|[0-9a-f]{12})\b")
_DEPRECATION = ("DEPRECATED:", "BuildKit is currently disabled", "environment-variable.")


class Side:
    """One daemon (ours or dockerd) driven by a docker CLI; outputs normalised for comparison."""

    def __init__(self, host: str, docker_config: Path, root: Path) -> None:
        self.host = host
        self.docker_config = docker_config
        self.root = root

    def run(self, *args: str, cli: str | None = None, input: bytes | None = None,
            check: bool = False) -> subprocess.CompletedProcess[bytes]:
        exe = cli or DOCKER
        assert exe is not None
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.docker_config),
               "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_API_VERSION", None)
        p = subprocess.run([exe, *args], input=input, capture_output=True, env=env, timeout=180)
        if check and p.returncode != 0:
            raise AssertionError(f"{self.host}: docker {' '.join(args)} failed ({p.returncode}): "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    def out(self, *args: str, input: bytes | None = None) -> str:
        return self.run(*args, input=input, check=True).stdout.decode().strip()

    def norm(self, text: bytes | str) -> list[str]:
        s = text.decode(errors="replace") if isinstance(text, bytes) else text
        s = s.replace(str(self.root), "<ROOT>")
        s = re.sub(r"docker-import-\d+", "docker-import-N", s)
        return [_ID.sub("<id>", line) for line in s.splitlines()
                if line.strip() and not any(m in line for m in _DEPRECATION)]

    def result(self, *args: str, cli: str | None = None,
               input: bytes | None = None) -> tuple[int, list[str], list[str]]:
        p = self.run(*args, cli=cli, input=input)
        return p.returncode, self.norm(p.stdout), self.norm(p.stderr)


@pytest.fixture(scope="module")
def sides(shared_daemon: Daemon) -> Iterator[tuple[Side, Side]]:
    real = Dockerd(shared_daemon.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(why)
        ours = Side(shared_daemon.host, shared_daemon.docker_config, shared_daemon.data_root)
        theirs = Side(real.host, real.docker_config, real.base / "root")
        for s in (ours, theirs):
            s.run("load", "-i", str(BUSYBOX), check=True)
        yield ours, theirs
    finally:
        shared_daemon.remove_all_containers()
        real.stop()


def both(sides: tuple[Side, Side], *args: str, cli: str | None = None,
         input: bytes | None = None) -> tuple[Any, Any]:
    ours, theirs = sides
    return ours.result(*args, cli=cli, input=input), theirs.result(*args, cli=cli, input=input)


def same(sides: tuple[Side, Side], *args: str, cli: str | None = None, input: bytes | None = None) -> Any:
    a, b = both(sides, *args, cli=cli, input=input)
    assert a == b, f"docker {' '.join(args)}:\nours:    {a}\ndockerd: {b}"
    return a


def _build(side: Side, dockerfile: str, *args: str, ctx: Path | None = None) -> None:
    if ctx is None:
        side.run("build", "-q", *args, "-", input=dockerfile.encode(), check=True)
    else:
        (ctx / "Dockerfile").write_text(dockerfile)
        side.run("build", "-q", *args, str(ctx), check=True)


# ---- 5: rmi of an image that has children ----------------------------------------------------------------------
def test_rmi_of_the_only_tag_of_a_parent_untags_it(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for s in sides:
        _build(s, "FROM bb:1 AS base\nRUN echo a > /a\nFROM base\nRUN echo b > /b\n", "--target", "base", "-t",
               "par/build:base", ctx=ctx)
        _build(s, "FROM bb:1 AS base\nRUN echo a > /a\nFROM base\nRUN echo b > /b\n", "-t", "par/build:final",
               ctx=ctx)
    assert same(sides, "rmi", "par/build:base") == (0, ["Untagged: par/build:base"], [])
    # the parent stays, untagged: hidden from the list, there with -a
    assert same(sides, "images", "--format", "{{.Repository}}:{{.Tag}}", "par/build")[1] == ["par/build:final"]
    # (dockerd orders images created in the same second at random: compared sorted)
    listed = [sorted(s.out("images", "-a", "--format", "{{.Repository}}:{{.Tag}}").split()) for s in sides]
    assert listed[0] == listed[1] and "<none>:<none>" in listed[0] and "par/build:base" not in listed[0]
    # by ID it is refused (hard conflict, with or without -f), as dockerd refuses it
    for s in sides:
        parent = s.out("image", "inspect", "-f", "{{.Parent}}", "par/build:final")
        assert s.out("image", "inspect", "-f", "{{.RepoTags}}", parent) == "[]"
        for args in (("rmi", parent), ("rmi", "-f", parent), ("rmi", parent[7:19])):
            p = s.run(*args)
            assert p.returncode == 1
            assert s.norm(p.stderr) == ["Error response from daemon: conflict: unable to delete <id> (cannot be "
                                        "forced) - image has dependent child images"]


def test_rmi_force_of_an_imported_image_with_a_child(sides: tuple[Side, Side]) -> None:
    layer = small_tar({"f": b"hi\n"})
    for s in sides:
        s.run("import", "-", "imp/x:1", input=layer, check=True)
        _build(s, 'FROM imp/x:1\nCMD ["x"]\n', "-t", "imp/child:1")
    for s in sides:
        image_id = s.out("image", "inspect", "-f", "{{.Id}}", "imp/x:1")
        p = s.run("rmi", image_id)
        assert (p.returncode, s.norm(p.stderr)) == (1, [
            "Error response from daemon: conflict: unable to delete <id> (cannot be forced) - image has dependent "
            "child images"])
    assert same(sides, "rmi", "-f", "imp/x:1") == (0, ["Untagged: imp/x:1"], [])
    # the untagged parent goes with its last child (and then its layer)
    assert same(sides, "rmi", "imp/child:1") == (0, ["Untagged: imp/child:1", "Deleted: <id>", "Deleted: <id>",
                                                     "Deleted: <id>"], [])


def test_docker_py_remove_of_a_parent_untags(sides: tuple[Side, Side], shared_daemon: Daemon) -> None:
    import docker
    ours, theirs = sides
    for s in sides:
        s.run("tag", "bb:1", "py/parent:1", check=True)
        _build(s, "FROM py/parent:1\nRUN echo c > /c\n", "-t", "py/child:1")
    results = []
    for s in sides:
        c = docker.DockerClient(base_url=s.host, version="auto", timeout=120)
        try:
            parent_id = c.images.get("py/parent:1").id
            c.images.remove("bb:1")  # bb:1 and py/parent:1 name one image: a plain untag
            results.append(c.api.remove_image("py/parent:1"))
            c.images.get(parent_id)  # still there, untagged
            with pytest.raises(docker.errors.APIError) as info:
                c.images.remove(parent_id)
            assert info.value.status_code == 409
            results.append(_ID.sub("<id>", info.value.explanation or ""))
        finally:
            c.close()
        s.run("tag", parent_id, "bb:1", check=True)
    assert results[:2] == results[2:]
    assert results[0] == [{"Untagged": "py/parent:1"}]
    assert results[1] == ("conflict: unable to delete <id> (cannot be forced) - image has dependent child images")


# ---- 8: GraphDriver --------------------------------------------------------------------------------------------
def test_image_graph_driver_names_the_layer_directories(sides: tuple[Side, Side], shared_daemon: Daemon) -> None:
    ours, theirs = sides
    layer = small_tar({"top.txt": b"top\n"})
    for s in sides:
        s.run("import", "-", "gd/one:1", input=layer, check=True)
        _build(s, "FROM bb:1\nRUN echo m > /m.txt\nRUN echo t > /t.txt\n", "-t", "gd/three:1")
    for image, n_layers, top_file in (("bb:1", 1, "bin"), ("gd/one:1", 1, "top.txt"), ("gd/three:1", 3, "t.txt")):
        mine = json.loads(ours.out("image", "inspect", "-f", "{{json .GraphDriver}}", image))
        real = json.loads(theirs.out("image", "inspect", "-f", "{{json .GraphDriver}}", image))
        assert mine["Name"] == real["Name"] == "overlay2"
        assert list(mine["Data"]) == list(real["Data"]), image  # the same keys, in the same (sorted) order
        upper = Path(mine["Data"]["UpperDir"])
        assert upper.is_dir() and top_file in os.listdir(upper), image  # the top layer, unpacked
        assert str(upper).startswith(str(shared_daemon.data_root) + "/")
        lowers = mine["Data"].get("LowerDir", "").split(":") if n_layers > 1 else []
        assert len(lowers) == n_layers - 1 and all(Path(p).is_dir() for p in lowers)
        if lowers:
            assert "m.txt" in os.listdir(lowers[0]) and "bin" in os.listdir(lowers[-1])  # nearest first
        for key in ("MergedDir", "WorkDir"):
            assert Path(mine["Data"][key]).parent == upper.parent
    # docker-py reads the same
    c = shared_daemon.client()
    try:
        attrs = c.images.get("gd/three:1").attrs
        assert attrs["GraphDriver"]["Data"]["UpperDir"] == json.loads(
            ours.out("image", "inspect", "-f", "{{json .GraphDriver}}", "gd/three:1"))["Data"]["UpperDir"]
    finally:
        c.close()


# ---- 10: events of load and save; the events filters -------------------------------------------------------------
def _events(side: Side, since: float, until: int, *filters: str) -> list[str]:
    args = ["events", "--since", f"{since:.9f}", "--until", str(until), "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}"]
    for f in filters:
        args += ["--filter", f]
    return side.norm(side.out(*args))


def test_load_save_events_and_filters(sides: tuple[Side, Side]) -> None:
    since = time.time()
    for s in sides:
        s.run("load", "-i", str(BUSYBOX), check=True)  # already there: no "tag" event, as dockerd
        s.run("save", "bb:1", check=True)
        s.run("tag", "bb:1", "busybox", check=True)
        s.run("tag", "bb:1", "busybox:2", check=True)
        s.run("tag", "bb:1", "other:1", check=True)
        cid = s.out("create", "--name", "netx", "busybox", "true")
        s.run("rm", cid, check=True)
        s.run("rmi", "busybox", "busybox:2", "other:1", check=True)
    time.sleep(1.1)
    until = int(time.time()) + 1
    ours, theirs = sides
    everything = _events(ours, since, until)
    assert everything == _events(theirs, since, until)
    assert everything[0] == 'image load <id> {"name":"<id>"}'
    assert everything[1] == 'image save <id> {"name":"<id>"}'
    for filters in (("image=busybox",), ("image=bb",), ("image=sha256",), ("image=other:1",), ("network=net",),
                    ("container=ne",), ("volume=busy",), ("event=untag", "image=busybox"), ("type=container",),
                    ("event=tag", "event=load"), ("bogus=1",)):
        assert _events(ours, since, until, *filters) == _events(theirs, since, until, *filters), filters
    assert [e.split(" {")[0] for e in _events(ours, since, until, "image=busybox")] == [
        "image tag <id>", "image tag <id>", "container create <id>", "container destroy <id>"]


# ---- 11: error words -------------------------------------------------------------------------------------------
def _garbage() -> dict[str, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("x")
        ti.size = 5000
        tf.addfile(ti, io.BytesIO(b"a" * 5000))
    return {"text": b"garbage" * 100, "short": b"hello\n", "truncated": buf.getvalue()[:2000],
            "no-manifest": buf.getvalue(), "empty": b""}


@pytest.mark.parametrize("cli", ["28", "20.10"])
def test_error_words(sides: tuple[Side, Side], tmp_path: Path, cli: str) -> None:
    exe = None if cli == "28" else CLI20
    if exe is not None and not os.access(exe, os.X_OK):
        pytest.skip(f"no docker CLI 20.10 at {exe}")
    layer = small_tar({"f": b"x"})
    got = same(sides, "import", "-c", "BOGUS x", "-", "err/x:1", cli=exe, input=layer)
    assert got == (1, [], ["Error response from daemon: bogus is not a valid change command"])
    for name, data in _garbage().items():
        got = same(sides, "load", cli=exe, input=data)
        assert got[0] == 1, name
    assert same(sides, "load", cli=exe, input=b"garbage" * 100)[2] == [
        "Error processing tar file(exit status 1): archive/tar: invalid tar header"]
    assert same(sides, "load", cli=exe, input=b"hello\n")[2] == [
        "Error processing tar file(exit status 1): unexpected EOF"]
    assert same(sides, "load", cli=exe, input=b"")[2] == [
        "open <ROOT>/tmp/docker-import-N/repositories: no such file or directory"]
    assert same(sides, "save", "nosuch", cli=exe) == (1, [], ["Error response from daemon: No such image: nosuch"])
    assert same(sides, "save", "abcdef", cli=exe) == (1, [], ["Error response from daemon: No such image: abcdef"])
    assert same(sides, "save", "nosuch:1", cli=exe) == (1, [], [
        "Error response from daemon: reference does not exist"])
    assert same(sides, "save", "bb:1", "nosuch", "-o", str(tmp_path / "x.tar"), cli=exe)[2] == [
        "Error response from daemon: No such image: nosuch"]
    ours, theirs = sides
    # an empty Dockerfile; one with no instruction
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "Empty").write_bytes(b"")
    (ctx / "sub" / "Comment").write_text("# nothing\n\n")
    (ctx / "Dockerfile").write_bytes(b"")
    assert same(sides, "build", str(ctx), cli=exe)[2][-1] == (
        "Error response from daemon: the Dockerfile (Dockerfile) cannot be empty")
    assert same(sides, "build", "-f", str(ctx / "sub" / "Empty"), str(ctx), cli=exe)[2][-1] == (
        "Error response from daemon: the Dockerfile (sub/Empty) cannot be empty")
    assert same(sides, "build", "-", cli=exe, input=b"")[2][-1] == (
        "Error response from daemon: the Dockerfile (Dockerfile) cannot be empty")
    assert same(sides, "build", "-f", str(ctx / "sub" / "Comment"), str(ctx), cli=exe)[2][-1] == (
        "Error response from daemon: failed to parse sub/Comment: file with no instructions")
    # image inspect of a missing image: CLI 20.10 prints its own words for a 404
    p = ours.run("image", "inspect", "nosuch", cli=exe)
    assert p.returncode == 1
    if cli == "20.10":
        assert same(sides, "image", "inspect", "nosuch", cli=exe) == (1, ["[]"], ["Error: No such image: nosuch"])
    else:  # dockerd 28's words (20.10 wrapped them: "no such image: nosuch: No such image: nosuch:latest")
        assert ours.norm(p.stderr) == ["Error response from daemon: No such image: nosuch:latest"]


# ---- 12: system df -v ------------------------------------------------------------------------------------------
def _df(side: Side, cli: str | None = None) -> dict[str, Any]:
    p = side.run("system", "df", "-v", "--format", "{{json .}}", cli=cli, check=True)
    d = json.loads(p.stdout)
    images = sorted((i["Repository"], i["Tag"], i["Size"], i["SharedSize"], i["UniqueSize"], i["Containers"])
                    for i in d["Images"])
    containers = sorted((c["Names"], c["Size"]) for c in d["Containers"])
    return {"images": images, "containers": containers}


def test_system_df_sizes(sides: tuple[Side, Side]) -> None:
    for s in sides:
        # a built image whose last step only sets config: its RUN layer is still its own (unique) size
        _build(s, 'FROM bb:1\nRUN echo xyz > /x\nCMD ["sh"]\n', "-t", "df/built:1")
        s.run("import", "-", "df/imported:1", input=small_tar({"i": b"12345"}), check=True)
        _build(s, 'FROM df/imported:1\nCMD ["x"]\n', "-t", "df/child:1")
        s.run("rmi", "df/imported:1", check=True)  # the parent, untagged, is hidden: the child owns its layer
        s.run("create", "--name", "df-created", "bb:1", "true", check=True)
        s.run("run", "--name", "df-ran", "--network", "none", "bb:1", "sh", "-c",
              "echo hello > /f; ln /f /g; mkdir -p /d/e; ln -s /nonexistent/abc /s", check=True)
    ours, theirs = sides
    mine, real = _df(ours), _df(theirs)
    assert mine == real
    rows = {(r[0], r[1]): r for r in mine["images"]}
    assert rows[("df/built", "1")][4] == "4B"
    assert rows[("df/child", "1")][3:5] == ("0B", "5B")
    sizes = dict(mine["containers"])
    assert sizes["df-created"] == "0B" and sizes["df-ran"] == "22B"
    if os.access(CLI20, os.X_OK):
        assert _df(ours, CLI20) == _df(theirs, CLI20)
    # the API: SizeRw and SizeRootFs omitted when 0, as dockerd's; shared sizes at every version
    for path in ("/v1.41/system/df", "/system/df"):
        got = []
        for s in sides:
            d = _get_json(s, path)
            got.append(sorted((c["Names"][0], c.get("SizeRw"), c.get("SizeRootFs")) for c in d["Containers"]
                              if c["Names"][0].startswith("/df-")))
            got.append(sorted((i["RepoTags"], i["Size"], i["SharedSize"]) for i in d["Images"]
                              if any(t.startswith("df/") for t in i["RepoTags"] or [])))
        assert got[:2] == got[2:], path
        assert ("/df-created", None, 1982312) in got[0]
        assert ("/df-ran", 22, 1982312 + 22) in got[0]
        assert all(row[2] >= 0 for row in got[1])


def _get_json(side: Side, path: str) -> Any:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(side.host.removeprefix("unix://"))
            self.sock = s

    c = Conn("localhost")
    try:
        c.request("GET", path)
        r = c.getresponse()
        assert r.status == 200, (path, r.status)
        return json.loads(r.read())
    finally:
        c.close()
