"""The classic builder through `docker build` (DOCKER_BUILDKIT=0) and docker-py."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import docker.errors
import pytest

from conftest import Daemon, busybox_path, make_rootfs_tar

APPLETS = ("sh", "ls", "cat", "echo", "true", "mkdir", "rm", "id", "env")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
    reason="RUN steps need root, runc and busybox-static (apt-get install runc busybox-static)")


def _base(d: Daemon) -> None:
    d.docker("import", "-c", "ENV PATH=/bin", "-", "base/bb:1",
             input=make_rootfs_tar({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
                                    "etc/group": b"root:x:0:\nnogroup:x:65534:\n"}, applets=APPLETS))


DOCKERFILE = """\
FROM base/bb:1
ENV GREETING=hello
LABEL org.example=yes
ARG WHO=world
RUN mkdir -p /data && echo "$GREETING $WHO" > /data/msg && echo to-stderr >&2
COPY app/ /app/
COPY a.txt /data/
WORKDIR /data
USER nobody
EXPOSE 8080
CMD ["cat", "/data/msg"]
"""


def _context(tmp_path: Path, dockerfile: str = DOCKERFILE) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "a.txt").write_text("file a\n")
    (ctx / "app" / "main.txt").write_text("main\n")
    (ctx / "app" / "secret.key").write_text("nope\n")
    (ctx / ".dockerignore").write_text("app/*.key\n")
    return ctx


def test_build_run_cache_and_edit(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _base(d)
    ctx = _context(tmp_path)
    p = d.docker("build", "-t", "built/app:1", "-t", "built/app:2", "--build-arg", "WHO=docker", str(ctx))
    out = p.stdout.decode()
    assert "Step 1/11 : FROM base/bb:1" in out and "Step 11/11 : CMD" in out
    assert " ---> Running in " in out and "Removing intermediate container" in out
    assert "Successfully built" in out and "Successfully tagged built/app:1" in out and "built/app:2" in out
    assert d.out("run", "--rm", "built/app:1") == "hello docker"
    assert d.out("run", "--rm", "built/app:1", "id", "-u") == "65534"
    assert d.out("run", "--rm", "built/app:1", "ls", "/app") == "main.txt"  # .dockerignore applied
    insp = json.loads(d.out("image", "inspect", "built/app:1"))[0]
    assert insp["Config"]["WorkingDir"] == "/data" and insp["Config"]["User"] == "nobody"
    assert insp["Config"]["Labels"] == {"org.example": "yes"} and "8080/tcp" in insp["Config"]["ExposedPorts"]
    hist = [json.loads(x) for x in d.out("history", "--no-trunc", "--format", "{{json .}}", "built/app:1").splitlines()]
    assert hist[0]["CreatedBy"] == '/bin/sh -c #(nop)  CMD ["cat" "/data/msg"]'
    assert any(h["CreatedBy"].startswith("|1 WHO=docker /bin/sh -c mkdir") for h in hist)
    assert "<missing>" not in hist[0]["ID"]  # intermediate images exist, so the history has their IDs
    assert len(d.out("images", "-a", "-q").splitlines()) > len(d.out("images", "-q").splitlines())
    # fully cached rebuild
    out = d.docker("build", "-t", "built/app:1", "--build-arg", "WHO=docker", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 10
    # one file edited: only the steps from its COPY on run again
    (ctx / "a.txt").write_text("file a, edited\n")
    out = d.docker("build", "-t", "built/app:3", "--build-arg", "WHO=docker", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 5  # ENV, LABEL, ARG, RUN, COPY app/ (FROM never says it)
    assert d.out("run", "--rm", "built/app:3", "cat", "/data/a.txt") == "file a, edited"


def test_build_failures_and_syntax_errors(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _base(d)
    ctx = _context(tmp_path, "FROM base/bb:1\nRUN exit 7\n")
    p = d.docker("build", str(ctx), check=False)
    assert p.returncode != 0
    assert b"The command '/bin/sh -c exit 7' returned a non-zero code: 7" in p.stderr + p.stdout
    (ctx / "Dockerfile").write_text("FROM base/bb:1\nBOGUS x\n")
    p = d.docker("build", str(ctx), check=False)
    # dockerd 20.10's words
    assert p.returncode != 0 and b"dockerfile parse error line 2: unknown instruction: BOGUS" in p.stderr
    c = d.client()
    with pytest.raises(docker.errors.BuildError) as exc:
        c.images.build(fileobj=io.BytesIO(b"FROM base/bb:1\nRUN exit 3\n"))
    assert "returned a non-zero code: 3" in str(exc.value)


def test_multistage_target_and_docker_py(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _base(d)
    df = ("FROM base/bb:1 AS builder\nARG V=1\nRUN echo v=$V > /v.txt\n"
          "FROM base/bb:1\nCOPY --from=builder /v.txt /copied.txt\nCMD [\"cat\", \"/copied.txt\"]\n")
    ctx = _context(tmp_path, df)
    d.docker("build", "--build-arg", "V=5", "-t", "ms/final:1", str(ctx))
    assert d.out("run", "--rm", "ms/final:1") == "v=5"
    d.docker("build", "--target", "builder", "-t", "ms/builder:1", str(ctx))
    assert d.out("run", "--rm", "ms/builder:1", "cat", "/v.txt") == "v=1"
    c = d.client()
    img, logs = c.images.build(path=str(ctx), tag="py/built:1", buildargs={"V": "9"}, labels={"by": "py"},
                               target=None)
    assert img.labels.get("by") == "py"
    assert c.containers.run("py/built:1", remove=True) == b"v=9\n"
    # a custom context and a Dockerfile outside the context (docker-py sends it as .dockerfile.<hex>)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"FROM base/bb:1\nCMD [\"echo\", \"custom\"]\n"
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    out = list(c.api.build(fileobj=buf, custom_context=True, tag="py/custom:1", decode=True))
    assert any("aux" in o for o in out)
    assert c.containers.run("py/custom:1", remove=True) == b"custom\n"
    outside = tmp_path / "Outside.Dockerfile"
    outside.write_text("FROM base/bb:1\nCOPY a.txt /\nCMD [\"cat\", \"/a.txt\"]\n")
    img, _ = c.images.build(path=str(ctx), dockerfile=str(outside), tag="py/outside:1")
    assert c.containers.run("py/outside:1", remove=True) == b"file a\n"


def test_step_containers_rm_forcerm_and_aux_per_stage(daemon: Daemon, tmp_path: Path) -> None:
    """What dockerd 20.10 answers (tests/e2e/test_build_parity.py compares it live): a failed RUN's container stays
    with rm alone (Exited (7)), --force-rm removes it (its line before the error), rm=0 keeps every step's container
    (a metadata step's never started); one aux message per stage; --label goes to the --target stage."""
    d = daemon
    _base(d)
    ctx = _context(tmp_path, "FROM base/bb:1\nENV A=1\nRUN exit 7\n")

    def kept() -> list[tuple[str, str, int]]:  # newest first
        out = []
        for cid in d.out("ps", "-aq").split():
            c = json.loads(d.out("inspect", cid))[0]
            out.append((" ".join([c["Path"], *c["Args"]]), c["State"]["Status"], c["State"]["ExitCode"]))
        return out

    p = d.docker("build", str(ctx), check=False)
    assert p.returncode == 7 and b"Removing intermediate container" in p.stdout  # the ENV step's
    assert kept() == [("/bin/sh -c exit 7", "exited", 7)]
    d.remove_all_containers()
    p = d.docker("build", "--force-rm", str(ctx), check=False)
    lines = p.stdout.decode().splitlines()
    running = [ln for ln in lines if ln.startswith(" ---> Running in ")][-1]
    assert lines[-1] == "Removing intermediate container " + running.split()[-1]
    assert kept() == []
    p = d.docker("build", "--rm=false", "--no-cache", str(ctx), check=False)
    assert b"Removing intermediate container" not in p.stdout
    assert kept() == [("/bin/sh -c exit 7", "exited", 7), ("/bin/sh -c #(nop)  ENV A=1", "created", 0)]
    d.remove_all_containers()
    df = "FROM base/bb:1 AS a\nRUN echo a > /a\nFROM a AS b\nLABEL in=b\nFROM base/bb:1\nLABEL in=c\n"
    (ctx / "Dockerfile").write_text(df)
    c = d.client()
    out = list(c.api.build(path=str(ctx), tag="st/b:1", target="b", labels={"x": "$y 'z'"}, decode=True))
    aux = [m["aux"]["ID"] for m in out if "aux" in m]
    assert len(aux) == 2 and aux[-1] == c.images.get("st/b:1").id
    assert c.images.get(aux[0]).history()[0]["CreatedBy"] == "/bin/sh -c echo a > /a"
    assert c.images.get("st/b:1").labels == {"in": "b", "x": "$y 'z'"}
    out = list(c.api.build(path=str(ctx), quiet=True, decode=True))
    assert out == [{"stream": c.images.get(out[0]["stream"].strip()).id + "\n"}]


def test_builder_prune_and_df(daemon: Daemon, tmp_path: Path) -> None:
    d = daemon
    _base(d)
    ctx = _context(tmp_path)
    d.docker("build", "-t", "pr/app:1", str(ctx))
    s, df = d.api_json("GET", "/system/df")
    assert df["BuildCache"], "build cache records are listed"
    total = sum(r["Size"] for r in df["BuildCache"])
    assert total > 0
    # limits that already hold delete nothing; until= keeps what is younger
    for query in (f"max-used-space={total}", f"reserved-space={total}", f"keep-storage={total}", "min-free-space=1"):
        s, res = d.api_json("POST", f"/v1.51/build/prune?{query}")
        assert s == 200 and res == {"CachesDeleted": None, "SpaceReclaimed": 0}, (query, res)
    out = d.out("builder", "prune", "-a", "-f", "--filter", "until=1h")
    assert "Total reclaimed space: 0B" in out
    # a limit that does not hold deletes the oldest records until it does
    s, res = d.api_json("POST", f"/v1.51/build/prune?max-used-space={total - 1}")
    assert res["CachesDeleted"] and 0 < res["SpaceReclaimed"] <= total
    s, df = d.api_json("GET", "/system/df")
    left = sum(r["Size"] for r in df["BuildCache"])
    assert left <= total - 1 and left + res["SpaceReclaimed"] == total
    out = d.out("builder", "prune", "-f")
    assert "Total reclaimed space" in out
    s, df = d.api_json("GET", "/system/df")
    assert df["BuildCache"] == []
    c = d.client()
    assert c.api.prune_builds()["SpaceReclaimed"] == 0
    # the tagged result survives
    assert d.out("run", "--rm", "pr/app:1") == "hello world"


def test_client_disconnect_cancels_the_build_and_its_run_container(shared_daemon: Daemon, tmp_path: Path) -> None:
    import subprocess
    import time

    from conftest import DOCKER
    d = shared_daemon
    _base(d)
    ctx = _context(tmp_path, "FROM base/bb:1\nRUN echo started && sleep 300\n")
    before = set(d.out("ps", "-aq").split())  # containers other tests left on the shared daemon
    env = dict(os.environ, DOCKER_HOST=d.host, DOCKER_BUILDKIT="0")
    p = subprocess.Popen([DOCKER, "build", "-t", "cancelled:1", str(ctx)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env)
    try:
        assert p.stdout is not None
        seen = b""
        while True:  # the RUN's own output (not the step line, which also says "started")
            line = p.stdout.readline()
            assert line, seen
            seen += line
            if line.strip() == b"started":
                break
        assert set(d.out("ps", "-q").split()) - before, "the RUN container is running"
    finally:
        p.kill()  # the client goes away mid-step
        p.wait()
    deadline = time.monotonic() + 15
    while set(d.out("ps", "-aq").split()) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(d.out("ps", "-aq").split()) == before, "the RUN container was killed and removed"
    assert d.docker("image", "inspect", "cancelled:1", check=False).returncode != 0


def test_reproducible_with_source_date_epoch(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        d = Daemon(tmp_path / name).start()
        try:
            from conftest import FIXTURES
            d.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))  # the same base image ID
            ctx = _context(tmp_path / f"ctx-{name}", "FROM bb:1\nRUN echo deterministic > /out.txt\n"
                                                     "COPY a.txt /\nENV X=1\n")
            d.docker("build", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", "-t", "rep:1", str(ctx))
            ids.append(json.loads(d.out("image", "inspect", "rep:1"))[0]["Id"])
        finally:
            d.stop()
    assert ids[0] == ids[1]


# ---- ONBUILD, cachefrom, heredocs, ADD of URLs, metadata steps ------------------------------------------------

def _history(d: Daemon, image: str) -> list[str]:
    return [json.loads(x)["CreatedBy"] for x in
            d.out("history", "--no-trunc", "--format", "{{json .}}", image).splitlines()]


def _inspect(d: Daemon, image: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.out("image", "inspect", image))[0]  # type: ignore[no-any-return]


def _export(d: Daemon, image: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    cid = d.out("create", image, "true")
    try:
        data = d.docker("export", cid).stdout
    finally:
        d.docker("rm", cid)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name.removeprefix("./").rstrip("/")] = (m, f.read() if f else b"")
    return out


def test_onbuild_triggers_run_in_child_builds(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _base(d)
    parent = ("FROM base/bb:1\nENV WHO=parent\nONBUILD ARG GREETING=hi\n"
              "ONBUILD RUN echo \"$GREETING from trigger\" > /trigger.txt\nONBUILD COPY a.txt /onbuild/\n"
              "ONBUILD ENV TRIGGERED=yes\n")
    ctx = _context(tmp_path, parent)
    d.docker("build", "-t", "ob/parent:1", str(ctx))
    assert _inspect(d, "ob/parent:1")["Config"]["OnBuild"] == [
        "ARG GREETING=hi", 'RUN echo "$GREETING from trigger" > /trigger.txt', "COPY a.txt /onbuild/",
        "ENV TRIGGERED=yes"]
    assert _history(d, "ob/parent:1")[0] == "/bin/sh -c #(nop)  ONBUILD ENV TRIGGERED=yes"
    (ctx / "Dockerfile").write_text("FROM ob/parent:1\nRUN cat /trigger.txt /onbuild/a.txt\n")
    out = d.docker("build", "--build-arg", "GREETING=hello", "-t", "ob/child:1", str(ctx)).stdout.decode()
    assert "Step 1/2 : FROM ob/parent:1\n# Executing 4 build triggers\n ---> Running in " in out
    assert out.count(" ---> Running in ") == 4  # ARG, RUN, ENV and the child's RUN (COPY has no container)
    assert "hello from trigger\nfile a\n" in out
    child = _inspect(d, "ob/child:1")
    assert child["Config"]["OnBuild"] is None  # the triggers ran: the child has none
    assert "TRIGGERED=yes" in child["Config"]["Env"]
    hist = _history(d, "ob/child:1")
    assert hist[1] == "/bin/sh -c #(nop)  ENV TRIGGERED=yes"
    assert hist[3] == '|1 GREETING=hello /bin/sh -c echo "$GREETING from trigger" > /trigger.txt'
    assert hist[4] == "/bin/sh -c #(nop)  ARG GREETING=hi"
    # cached: every trigger says so, then the FROM step's image
    out = d.docker("build", "--build-arg", "GREETING=hello", "-t", "ob/child:1", str(ctx)).stdout.decode()
    assert "# Executing 4 build triggers\n" + " ---> Using cache\n" * 4 + " ---> " in out
    # triggers are not inherited further, and FROM an earlier stage runs them once
    (ctx / "Dockerfile").write_text("FROM ob/child:1\nRUN true\n")
    assert "Executing" not in d.docker("build", str(ctx)).stdout.decode()
    (ctx / "Dockerfile").write_text("FROM ob/parent:1 AS a\nFROM a\nRUN cat /trigger.txt\n")
    assert d.docker("build", str(ctx)).stdout.decode().count("# Executing 4 build triggers") == 1
    # what may not be a trigger is refused when the Dockerfile is read, as dockerd does
    (ctx / "Dockerfile").write_text("FROM base/bb:1\nONBUILD FROM base/bb:1\n")
    p = d.docker("build", str(ctx), check=False)
    assert p.returncode != 0
    assert b"dockerfile parse error line 2: FROM isn't allowed as an ONBUILD trigger" in p.stderr


def test_cache_from(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _base(d)
    token = os.urandom(4).hex()
    ctx = _context(tmp_path, f"FROM base/bb:1\nENV TOKEN={token}\nRUN echo $TOKEN > /token\nCOPY a.txt /a.txt\n"
                             "CMD [\"cat\", \"/token\"]\n")
    src = f"cf/src:{token}"
    d.docker("build", "-t", src, str(ctx))
    src_id = _inspect(d, src)["Id"]
    # as if pulled: the image alone, without its intermediate images or build cache records
    saved = tmp_path / "src.tar"
    d.docker("save", "-o", str(saved), src)
    d.docker("rmi", src)
    d.docker("load", "-i", str(saved))
    assert _inspect(d, src)["Parent"] == ""
    out = d.docker("build", str(ctx)).stdout.decode()
    assert "Using cache" not in out  # no cache without --cache-from
    out = d.docker("build", "--cache-from", src, "-t", f"cf/again:{token}", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 4 and " ---> Running in" not in out
    assert _inspect(d, f"cf/again:{token}")["Id"] == src_id  # the last step is the cache-from image itself
    assert d.out("run", "--rm", f"cf/again:{token}") == token
    # a changed file: cached up to its COPY, then built
    (ctx / "a.txt").write_text("changed\n")
    out = d.docker("build", "--cache-from", src, "--cache-from", "no/such:image", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 2 and out.count(" ---> Running in") == 1  # ENV, RUN; CMD runs
    # docker-py's cache_from
    (ctx / "a.txt").write_text("file a\n")
    c = d.client()
    img, logs = c.images.build(path=str(ctx), cache_from=[src], tag=f"cf/py:{token}")
    assert img.id == src_id
    assert sum(" ---> Using cache" in (x.get("stream") or "") for x in logs) == 4


def test_copy_heredocs(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _base(d)
    df = ("FROM base/bb:1\nARG NAME=world\n"
          "COPY <<EOF /greet.txt\nhello $NAME\n\"quoted\" ${NAME}\nEOF\n"
          "COPY <<-\"END\" <<EOT a.txt /multi/\n\tno $NAME expansion\n\tEND\nsecond ${NAME}\nEOT\n"
          "ADD --chown=65534:65534 <<EOF /added.tar\nnot a tar, not unpacked\nEOF\n"
          "COPY --chmod=0600 <<'EOF' /private\nsecret\nEOF\n")
    ctx = _context(tmp_path, df)
    out = d.docker("build", "-t", "hd/img:1", str(ctx)).stdout.decode()
    assert "Step 3/6 : COPY <<EOF /greet.txt\n" in out
    files = _export(d, "hd/img:1")
    assert files["greet.txt"][1] == b'hello world\n"quoted" world\n'
    assert files["greet.txt"][0].mode & 0o7777 == 0o664 and files["greet.txt"][0].uid == 0
    assert files["multi/END"][1] == b"no $NAME expansion\n"  # <<- strips tabs; a quoted delimiter: no expansion
    assert files["multi/EOT"][1] == b"second world\n"
    assert files["multi/a.txt"][1] == b"file a\n"
    added = files["added.tar"][0]
    assert files["added.tar"][1] == b"not a tar, not unpacked\n" and (added.uid, added.gid) == (65534, 65534)
    assert files["private"][0].mode & 0o7777 == 0o600
    hist = _history(d, "hd/img:1")
    assert hist[3].startswith("/bin/sh -c #(nop) COPY file:") and hist[3].endswith(" in /greet.txt ")
    assert hist[2].startswith("/bin/sh -c #(nop) COPY multi:") and hist[2].endswith(" in /multi/ ")
    assert hist[1].startswith("/bin/sh -c #(nop) ADD --chown=65534:65534file:")
    # the cache key is the content: unchanged → cached, a changed build arg changes the expanded heredoc
    out = d.docker("build", "-t", "hd/img:1", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 5
    out = d.docker("build", "--build-arg", "NAME=you", "-t", "hd/img:2", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 1  # the ARG step only
    assert _export(d, "hd/img:2")["greet.txt"][1] == b'hello you\n"quoted" you\n'
    (ctx / "Dockerfile").write_text("FROM base/bb:1\nCOPY a.txt <<EOF\nx\nEOF\n")
    p = d.docker("build", str(ctx), check=False)
    assert p.returncode != 0 and b"COPY cannot accept a heredoc as a destination" in p.stderr + p.stdout


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    root = tmp_path_factory.mktemp("www")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _lazy_tarsum(name: str, data: bytes, mode: int = 0o100600) -> str:
    """dockerd's checksum of a downloaded file (tarsum v1 of its header, without mtime, and its bytes)."""
    import grp
    import hashlib
    import pwd
    fields = [("name", name), ("mode", str(mode)), ("uid", str(os.geteuid())), ("gid", str(os.getegid())),
              ("size", str(len(data))), ("typeflag", "0"), ("linkname", ""),
              ("uname", pwd.getpwuid(os.geteuid()).pw_name), ("gname", grp.getgrgid(os.getegid()).gr_name),
              ("devmajor", "0"), ("devminor", "0")]
    return hashlib.sha256("".join(k + v for k, v in fields).encode() + data).hexdigest()


def test_add_url(shared_daemon: Daemon, tmp_path: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    d = shared_daemon
    _base(d)
    www, addr = http_server
    remote = b"remote content " + os.urandom(4).hex().encode() + b"\n"
    (www / "r.txt").write_bytes(remote)
    os.utime(www / "r.txt", (1600000000, 1600000000))  # served as Last-Modified
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("inside.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"in\n"))
    (www / "rt.tar").write_bytes(buf.getvalue())
    (www / "dir").mkdir(exist_ok=True)
    df = (f"FROM base/bb:1\nADD http://{addr}/r.txt /remote/\nADD http://{addr}/rt.tar /remote/\n"
          f"ADD http://{addr}/r.txt /renamed.txt\nADD --chown=65534:65534 http://{addr}/r.txt /owned/\n"
          f"ADD http://{addr}/dir/ /unnamed\n")
    ctx = _context(tmp_path, df)
    c = d.client()
    events = list(c.api.build(path=str(ctx), tag="url/img:1", decode=True))
    i = events.index({"stream": f"Step 2/6 : ADD http://{addr}/r.txt /remote/"})
    assert events[i + 1] == {"stream": "\n"}
    assert events[i + 2]["status"] == "Downloading"
    assert events[i + 2]["progressDetail"] == {"current": len(remote), "total": len(remote)}
    assert events[i + 3] == {"stream": "\n"} and events[i + 4]["stream"].startswith(" ---> ")
    files = _export(d, "url/img:1")
    m, data = files["remote/r.txt"]
    assert data == remote and m.mode & 0o7777 == 0o600 and m.mtime == 1600000000 and m.uid == 0
    assert files["remote/rt.tar"][1] == buf.getvalue() and "remote/inside.txt" not in files  # never unpacked
    assert files["renamed.txt"][1] == remote
    assert (files["owned/r.txt"][0].uid, files["owned/r.txt"][0].gid) == (65534, 65534)
    assert b"<html" in files["unnamed"][1].lower()  # a URL without a file name: the destination names it
    hist = _history(d, "url/img:1")
    assert hist[4] == f"/bin/sh -c #(nop) ADD {_lazy_tarsum('r.txt', remote)} in /remote/ "
    assert hist[3] == f"/bin/sh -c #(nop) ADD {_lazy_tarsum('rt.tar', buf.getvalue())} in /remote/ "
    assert hist[1] == f"/bin/sh -c #(nop) ADD --chown=65534:65534{_lazy_tarsum('r.txt', remote)} in /owned/ "
    # downloaded every time; the cache key is the content
    out = d.docker("build", "-t", "url/img:1", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 5
    (www / "r.txt").write_bytes(remote + b"more\n")
    out = d.docker("build", "-t", "url/img:2", str(ctx)).stdout.decode()
    assert out.count(" ---> Using cache") == 0  # the first ADD changed, so every step after it runs
    for text, message in ((f"ADD http://{addr}/missing.txt /x/",
                           f"ADD failed: failed to GET http://{addr}/missing.txt with status 404 File not found: "),
                          ("ADD http://127.0.0.1:1/x.txt /x/",
                           'ADD failed: Get "http://127.0.0.1:1/x.txt": dial tcp 127.0.0.1:1: connect: '
                           "connection refused"),
                          (f"ADD http://{addr}/dir/ /x/",
                           f"ADD failed: cannot determine filename for source http://{addr}/dir/")):
        (ctx / "Dockerfile").write_text(f"FROM base/bb:1\n{text}\n")
        p = d.docker("build", str(ctx), check=False)
        assert p.returncode != 0 and message.encode() in p.stderr, (text, p.stderr)


def test_metadata_steps_like_dockerd(shared_daemon: Daemon, tmp_path: Path) -> None:
    """What dockerd 20.10 prints and records for the steps that only change the config (its strings)."""
    d = shared_daemon
    _base(d)
    d.docker("import", "-", "base/noenv:1", input=make_rootfs_tar(applets=APPLETS))  # no Env at all
    df = ("ARG BASE=base/noenv:1\nFROM $BASE\nENV A=1 B=\"two words\"\nENV C $A\nLABEL \"l 2\"=\"y z\"\n"
          "EXPOSE 8080 53/udp\nVOLUME /data /logs\nSHELL [\"/bin/sh\", \"-c\"]\n"
          "HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD cat /x\nSTOPSIGNAL SIGTERM\n"
          "WORKDIR /made/here\nWORKDIR /bin\nMAINTAINER me <me@example.com>\nCMD echo hi\n")
    ctx = _context(tmp_path, df)
    out = d.docker("build", "-t", "meta/img:1", str(ctx)).stdout.decode()
    assert "Step 1/14 : ARG BASE=base/noenv:1\nStep 2/14 : FROM $BASE\n ---> " in out
    steps = out.split("Step ")[3:]
    assert len(steps) == 12
    for s in steps:  # every one commits through a container, as dockerd's
        lines = s.splitlines()
        assert lines[1].startswith(" ---> Running in ") and lines[2].startswith("Removing intermediate container ")
        assert lines[1][-12:] == lines[2][-12:], s
    assert _history(d, "meta/img:1")[:13] == [
        '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]',
        "/bin/sh -c #(nop)  MAINTAINER me <me@example.com>",
        "/bin/sh -c #(nop) WORKDIR /bin",
        "/bin/sh -c #(nop) WORKDIR /made/here",
        "/bin/sh -c #(nop)  STOPSIGNAL SIGTERM",
        "/bin/sh -c #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"cat /x\"] \"5s\" \"3s\" \"0s\" '\\x02'}",
        "/bin/sh -c #(nop)  SHELL [/bin/sh -c]",
        "/bin/sh -c #(nop)  VOLUME [/data /logs]",
        "/bin/sh -c #(nop)  EXPOSE 53/udp 8080",
        "/bin/sh -c #(nop)  LABEL l 2=y z",
        "/bin/sh -c #(nop)  ENV C=1",
        "/bin/sh -c #(nop)  ENV A=1 B=two words",
        "",
    ]
    img = _inspect(d, "meta/img:1")
    assert img["Author"] == "me <me@example.com>"
    assert img["Config"]["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1",
                                    "B=two words", "C=1"]  # FROM adds the default PATH
    assert len(img["RootFS"]["Layers"]) == 2  # WORKDIR made a directory (a layer); an existing one makes none
    files = _export(d, "meta/img:1")
    assert files["made/here"][0].isdir() and files["made/here"][0].mode & 0o7777 == 0o755
    # --rm=false keeps the containers: no "Removing" lines
    out = d.docker("build", "--no-cache", "--rm=false", str(ctx)).stdout.decode()
    assert " ---> Running in " in out and "Removing intermediate container" not in out
    # stages are named, not numbered, for FROM and --target (COPY --from takes a number)
    (ctx / "Dockerfile").write_text("FROM base/bb:1\nRUN echo one > /one\nFROM base/bb:1\nCOPY --from=0 /one /\n")
    p = d.docker("build", "--target", "0", str(ctx), check=False)
    assert p.returncode != 0 and b"failed to reach build target 0 in Dockerfile" in p.stderr
    d.docker("build", "-t", "meta/copy0:1", str(ctx))
    assert d.out("run", "--rm", "meta/copy0:1", "cat", "/one") == "one"


def test_refused_requests(shared_daemon: Daemon) -> None:
    """Requests the classic builder refuses before reading the context, with dockerd's status and words."""
    d = shared_daemon
    s, body = d.api_json("POST", "/v1.41/build?squash=1", b"")
    assert (s, body) == (400, {"message": "squash is only supported with experimental mode"})
    s, body = d.api_json("POST", "/v1.41/build?version=2", b"")
    assert s in (400, 501) and "BuildKit" in body["message"]  # type: ignore[index]
    s, body = d.api_json("POST", "/v1.41/build?t=Bad:Name", b"")
    assert s == 400
