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
    assert p.returncode != 0 and b"dockerfile parse error on line 2: unknown instruction: BOGUS" in p.stderr
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


def test_builder_prune_and_df(daemon: Daemon, tmp_path: Path) -> None:
    d = daemon
    _base(d)
    ctx = _context(tmp_path)
    d.docker("build", "-t", "pr/app:1", str(ctx))
    s, df = d.api_json("GET", "/system/df")
    assert df["BuildCache"], "build cache records are listed"
    out = d.out("builder", "prune", "-f")
    assert "Total reclaimed space" in out
    s, df = d.api_json("GET", "/system/df")
    assert df["BuildCache"] == []
    c = d.client()
    assert c.api.prune_builds()["SpaceReclaimed"] == 0
    # the tagged result survives
    assert d.out("run", "--rm", "pr/app:1") == "hello world"


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
