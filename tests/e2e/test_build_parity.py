"""The classic builder side by side with a real dockerd 20.10 (the reference), for what moby's integration tests
check of it: ``--label`` with ``--target`` (TestBuildLabelWithTargets), one ``aux`` message per finished stage
(TestBuildMultiStageOnBuild reads them), context tars with unclean names (TestBuildUncleanTarFilenames) and the
intermediate containers ``rm``/``forcerm`` keep (TestBuildWithRemoveAndForceRemove).

Both daemons get the same context through the same client — the docker CLI (``DOCKER_BUILDKIT=0``) or docker-py
— from the same base image (the dockerd-made busybox fixture loaded into each); the outputs are compared with the
IDs normalised. Skipped, with the reason, only where dockerd cannot run.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from conftest import FIXTURES, Daemon
from dockerd import Dockerd, dockerd_unavailable

pytestmark = pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))

_ID = re.compile(r"\b(sha256:)?([0-9a-f]{64}|[0-9a-f]{12})\b")


@pytest.fixture(scope="module")
def dockerd(shared_daemon: Daemon) -> Iterator[Dockerd]:
    real = Dockerd(shared_daemon.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(why)
        for run in (real.docker, shared_daemon.docker):
            run("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        yield real
    finally:
        real.stop()


@pytest.fixture
def both(shared_daemon: Daemon, dockerd: Dockerd) -> Iterator[list[Any]]:
    """The two daemons (dockwright first), without containers before and after the test."""
    daemons: list[Any] = [shared_daemon, dockerd]
    for d in daemons:
        _remove_containers(d)
    yield daemons
    for d in daemons:
        _remove_containers(d)


def _remove_containers(d: Any) -> None:
    ids = d.docker("ps", "-aq").stdout.decode().split()
    if ids:
        d.docker("rm", "-f", *ids)


def _norm(text: str) -> str:
    return _ID.sub("<id>", text)


def _lines(out: bytes) -> list[str]:
    return [_norm(line) for line in out.decode().splitlines()]


def _norm_messages(messages: list[dict[str, Any]]) -> list[Any]:
    """The messages with IDs normalised and consecutive ``stream`` messages joined (how a RUN's output is cut
    into messages depends on timing)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if set(m) == {"stream"} and out and set(out[-1]) == {"stream"}:
            out[-1] = {"stream": out[-1]["stream"] + m["stream"]}
        else:
            out.append(dict(m))
    return json.loads(_norm(json.dumps(out)))


def _client(d: Any) -> docker.APIClient:
    return docker.APIClient(base_url=d.host, version="1.41", timeout=120)


def _api_build(d: Any, context: bytes, **kw: Any) -> list[dict[str, Any]]:
    """POST /build through docker-py's low-level client: every message of the stream, decoded."""
    api = _client(d)
    try:
        return list(api.build(fileobj=io.BytesIO(context), custom_context=True, decode=True, **kw))
    finally:
        api.close()


def _tar(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "file":
                assert isinstance(data, bytes)
                ti.size, ti.mode = len(data), 0o644
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


def _history(run: Callable[..., Any], image: str) -> list[str]:
    return run("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout.decode().splitlines()


# -- item 13: --label with --target ---------------------------------------------------------------------------
TARGETS = """\
# escape=`
FROM bb:1 AS first
LABEL a=1
FROM first AS second
LABEL b=2
FROM bb:1 AS third
LABEL c=3
"""


def test_labels_land_on_the_target_stage(both: list[Any], tmp_path: Path) -> None:
    """moby's TestBuildLabelWithTargets: the --label steps are added to the target stage (the last one built),
    as they are, never expanded or unquoted (whatever the Dockerfile's escape character)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(TARGETS)
    outs, labels, histories = [], [], []
    for d in both:
        p = d.docker("build", "--label", "foo=bar", "--label", "z=it's $y \\\" `q", "--label", 'w\\x= "a b"',
                     "--target", "second", "-t", "parity/labels:1", str(ctx))
        outs.append(_lines(p.stdout))
        labels.append(json.loads(d.out("inspect", "-f", "{{json .Config.Labels}}", "parity/labels:1")))
        histories.append(_history(d.docker, "parity/labels:1"))
    assert outs[0] == outs[1]
    assert "Step 7/7 : LABEL z=it's $y \\\" `q" in outs[0]
    assert labels[0] == labels[1] == {"a": "1", "b": "2", "foo": "bar", "w\\x": ' "a b"', "z": "it's $y \\\" `q"}
    assert histories[0] == histories[1]
    # without a target, on the last stage of the file
    for d in both:
        d.docker("build", "--label", "foo=bar", "-t", "parity/labels:2", str(ctx))
    assert [json.loads(d.out("inspect", "-f", "{{json .Config.Labels}}", "parity/labels:2")) for d in both] == \
        [{"c": "3", "foo": "bar"}] * 2


# -- item 14: one aux message per stage -------------------------------------------------------------------------
STAGES = _tar([("Dockerfile", "file", b"FROM bb:1 AS a\nENV X=1\nRUN echo hi > /o\nFROM bb:1\nCOPY --from=a /o /h\n"
                                      b"LABEL q=r\n")])
FAILING = _tar([("Dockerfile", "file", b"FROM bb:1 AS a\nRUN echo hi\nFROM bb:1\nRUN echo out && exit 2\n")])


def test_one_aux_message_per_stage(both: list[Any]) -> None:
    """dockerd's classic builder sends ``{"aux":{"ID":…}}`` when each stage is done (before the unused build-args
    warning and "Successfully built"); the last one is the image built."""
    streams = [_api_build(d, STAGES, tag="parity/stages:1", nocache=True, buildargs={"UNUSED": "x"}) for d in both]
    assert _norm_messages(streams[0]) == _norm_messages(streams[1])
    for d, stream in zip(both, streams, strict=True):
        aux = [m["aux"]["ID"] for m in stream if "aux" in m]
        assert len(aux) == 2
        assert aux[-1] == d.out("inspect", "-f", "{{.Id}}", "parity/stages:1")
        assert _history(d.docker, aux[0])[0] == "/bin/sh -c echo hi > /o"  # stage a's image
    tail = _norm_messages(streams[0])[-2:]
    assert "aux" in tail[0] and tail[1]["stream"] == ("[Warning] One or more build-args [UNUSED] were not consumed\n"
                                                      "Successfully built <id>\nSuccessfully tagged parity/stages:1\n")


def test_quiet_build_streams_like_dockerd(both: list[Any]) -> None:
    """With ``q``, dockerd keeps the build's output (aux messages included) in a buffer: on success only the image
    ID is sent; on failure the whole output, then the error."""
    ok = [_api_build(d, STAGES, quiet=True) for d in both]
    assert _norm_messages(ok[0]) == _norm_messages(ok[1]) == [{"stream": "<id>\n"}]
    failed = [_api_build(d, FAILING, quiet=True) for d in both]
    assert _norm_messages(failed[0]) == _norm_messages(failed[1])
    assert [m for m in failed[0] if "aux" in m] and failed[0][-1]["errorDetail"]["code"] == 2
    assert {"stream": "out\n"} in failed[0]


# -- item 15: unclean names in the context tar -------------------------------------------------------------------
def _unclean(suffix: bytes) -> bytes:
    return _tar([
        ("Dockerfile", "file", b"FROM bb:1\nCOPY foo /\nCOPY bar /\nCOPY dir /dir/\nCOPY . /ctx/\n"
                               b"RUN find /ctx /foo /bar /dir | sort && cat /ctx/a/c /ctx/hl\n"),
        ("../foo", "file", b"foocontents" + suffix),
        ("/bar", "file", b"barcontents" + suffix),
        ("../dir/", "dir", b""),
        ("/dir/x", "file", b"x"),
        ("a/b/../c", "file", b"c\n"),            # a/c (GNU tar alone would make it c)
        ("hl", "hardlink", "../foo"),
        ("../../sl", "symlink", "../../nowhere"),
        ("//e/./f", "file", b"e"),
        ("x/../../../../" + "n" * 120, "file", b"long"),  # a PAX path
    ])


def test_unclean_context_names_like_dockerd(both: list[Any]) -> None:
    """moby's TestBuildUncleanTarFilenames: ``../foo``, ``/bar`` and the like are cleaned into the context's root
    (dockerd unpacks the context chrooted in it) and a build with changed contents uses no cache. The same steps,
    files and checksums (the COPY history) as dockerd."""
    first = [_api_build(d, _unclean(b"0"), tag="parity/unclean:1", rm=True, forcerm=True) for d in both]
    assert _norm_messages(first[0]) == _norm_messages(first[1])
    assert not any("error" in m for m in first[0])
    found = "".join(m.get("stream", "") for m in first[0] if "Step" not in m.get("stream", ""))
    for name in ("/ctx/a/c", "/ctx/bar", "/ctx/dir/x", "/ctx/e/f", "/ctx/foo", "/ctx/hl", "/ctx/sl",
                 "/ctx/" + "n" * 120, "/foo", "/bar", "/dir/x"):
        assert f"{name}\n" in found, name
    assert "c\nfoocontents0" in found
    second = [_api_build(d, _unclean(b"1"), tag="parity/unclean:2", rm=True, forcerm=True) for d in both]
    assert _norm_messages(second[0]) == _norm_messages(second[1])
    assert not any("Using cache" in m.get("stream", "") for m in second[0])
    assert _history(both[0].docker, "parity/unclean:2") == _history(both[1].docker, "parity/unclean:2")


# -- item 16: rm and forcerm ----------------------------------------------------------------------------------------
RM_DOCKERFILE = "FROM bb:1\nENV A=1\nRUN echo ok\nWORKDIR /w\nCOPY f /f\nRUN exit 3\n"


def _containers(d: Any) -> list[tuple[Any, ...]]:
    """Every container, newest first: its command (path and arguments), state, exit code, and whether its image
    exists."""
    out = []
    for cid in d.docker("ps", "-aq", "--no-trunc").stdout.decode().split():
        c = json.loads(d.out("inspect", cid))[0]
        image_exists = d.docker("image", "inspect", c["Image"], check=False).returncode == 0
        out.append(([c["Path"], *c["Args"]], c["State"]["Status"], c["State"]["ExitCode"], image_exists))
    return out


@pytest.mark.parametrize("rm,forcerm", [(True, False), (True, True), (False, False), (False, True)])
def test_intermediate_containers_like_dockerd(both: list[Any], tmp_path: Path, rm: bool, forcerm: bool) -> None:
    """moby's TestBuildWithRemoveAndForceRemove: dockerd removes a step's container after a success with rm,
    whatever happened with forcerm; a failed RUN's container stays with rm alone (``docker ps -a``: Exited (3)),
    and with rm=0 every step's container stays (a metadata step's never started: Created)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(RM_DOCKERFILE)
    (ctx / "f").write_text("f\n")
    results = []
    for d in both:
        p = d.docker("build", "--no-cache", f"--rm={str(rm).lower()}", f"--force-rm={str(forcerm).lower()}",
                     str(ctx), check=False)
        results.append((p.returncode, _lines(p.stdout), _lines(p.stderr)[-1:], _containers(d)))
    assert results[0] == results[1]
    kept = results[0][3]
    if forcerm:
        assert kept == []
    elif rm:
        assert kept == [(["/bin/sh", "-c", "exit 3"], "exited", 3, True)]
    else:
        assert [k[:3] for k in kept] == [(["/bin/sh", "-c", "exit 3"], "exited", 3),
                                         (["/bin/sh", "-c", "#(nop) WORKDIR /w"], "created", 0),
                                         (["/bin/sh", "-c", "echo ok"], "exited", 0),
                                         (["/bin/sh", "-c", "#(nop) ", "ENV A=1"], "created", 0)]


def test_docker_py_build_keeps_containers_as_dockerd(both: list[Any], tmp_path: Path) -> None:
    """docker-py's ``images.build`` sends rm=0 unless told otherwise: the intermediate containers stay, as on
    dockerd; with rm=True the failed step's container stays and BuildError says why."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nENV A=1\nRUN echo ok\n")
    for d in both:
        client = docker.DockerClient(base_url=d.host, version="1.41", timeout=120)
        try:
            client.images.build(path=str(ctx), nocache=True)
        finally:
            client.close()
    assert _containers(both[0]) == _containers(both[1]) == [
        (["/bin/sh", "-c", "echo ok"], "exited", 0, True), (["/bin/sh", "-c", "#(nop) ", "ENV A=1"], "created", 0,
                                                            True)]
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN exit 4\n")
    errors = []
    for d in both:
        _remove_containers(d)
        client = docker.DockerClient(base_url=d.host, version="1.41", timeout=120)
        try:
            with pytest.raises(docker.errors.BuildError) as err:
                client.images.build(path=str(ctx), rm=True)
            errors.append(str(err.value))
        finally:
            client.close()
    assert errors[0] == errors[1] == "The command '/bin/sh -c exit 4' returned a non-zero code: 4"
    assert _containers(both[0]) == _containers(both[1]) == [(["/bin/sh", "-c", "exit 4"], "exited", 4, True)]


def test_config_maps_are_written_with_sorted_keys_like_dockerd(both: list[Any], tmp_path: Path) -> None:
    """Go marshals a map with its keys sorted: the stored config (and so the image ID) and the raw inspect answer
    have Labels, ExposedPorts and Volumes in key order, whatever order the Dockerfile gave them."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nLABEL zz=1 b=2\nLABEL a=3\nEXPOSE 90 8080/udp 1000\n"
                                    "VOLUME /z /a\n")
    raws = []
    for d in both:
        d.docker("build", "-t", "parity/sorted:1", str(ctx))
        image_id = d.out("inspect", "-f", "{{.Id}}", "parity/sorted:1")
        saved = d.docker("save", "parity/sorted:1").stdout
        with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
            names = tf.getnames()
            manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
            config = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        assert manifest[0]["Config"] in names
        raw = config.decode()
        raws.append(raw)
        assert image_id.removeprefix("sha256:") in manifest[0]["Config"]
    for raw in raws:
        labels = raw[raw.index('"Labels":'):]
        assert labels.startswith('"Labels":{"a":"3","b":"2","zz":"1"}'), labels[:80]
        ports = raw[raw.index('"ExposedPorts":'):]
        assert ports.startswith('"ExposedPorts":{"1000/tcp":{},"8080/udp":{},"90/tcp":{}}'), ports[:80]
        volumes = raw[raw.index('"Volumes":'):]
        assert volumes.startswith('"Volumes":{"/a":{},"/z":{}}'), volumes[:80]
