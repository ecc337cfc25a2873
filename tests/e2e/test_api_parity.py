"""API details that byte-comparing and generated clients see, held to dockerd's answers (issue 13).

* ``POST /images/load``: dockerd reads ``quiet`` with ``BoolValueOrDefault(r, "quiet", true)``: absent means quiet
  (only the ``Loaded image`` lines); progress only for a value that is false (``0``, ``false``, ``no``, ``""``).
* List parameters are the key repeated (``r.Form[…]``), never comma-joined: build ``t`` and ``extrahosts``,
  ``names`` of ``GET /images/get``, ``changes`` of commit and import, ``type`` of ``GET /system/df``.
* JSON as Go writes it: plain answers as ``httputils.WriteJSON`` (compact, ``<>&`` as they are, non-ASCII as UTF-8,
  U+2028 escaped), streams and events as ``json.Marshal`` (``<>&`` escaped too).
* A bad ``platform`` of ``POST /images/create`` and ``POST /build`` is a 400 with containerd's words before
  anything streams (moby's TestImagePullPlatformInvalid, TestBuildPlatformInvalid).
* ``GET /plugins`` is ``[]``, its filters checked.

Each is checked through docker-py, the docker CLI or raw HTTP against dockwright with dockerd's exact answers;
the ``*_like_dockerd`` tests send the same requests to a real dockerd 20.10 (skipped, with the reason, where one
cannot run here). Where dockerd 28 answers otherwise than 20.10, dockwright answers as 28 and the test says so.
"""

from __future__ import annotations

import http.client as httpclient
import io
import json
import os
import re
import socket
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from dockwright.oci.platform import host_platform

from conftest import FIXTURES, Daemon, make_rootfs_tar
from dockerd import Dockerd, dockerd_unavailable

BB = FIXTURES / "dockerd-20.10-save-busybox.tar"
LABELS_DOCKERFILE = 'FROM bb:1\nLABEL x="<a&b>" y="é\u2028z"\n'.encode()
HOSTS_DOCKERFILE = b"FROM bb:1\nRUN cat /etc/hosts\n"


def http(sock: Path, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One raw request over a unix socket: the status and the body's bytes as sent."""
    class Conn(httpclient.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(120)
            s.connect(str(sock))
            self.sock = s

    c = Conn("localhost")
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def q(value: Any) -> str:
    return urllib.parse.quote(value if isinstance(value, str) else json.dumps(value), safe="")


def context_tar(dockerfile: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(dockerfile)
        tf.addfile(ti, io.BytesIO(dockerfile))
    return buf.getvalue()


TAR = {"Content-Type": "application/x-tar"}


def build(sock: Path, query: str, dockerfile: bytes) -> tuple[int, bytes]:
    return http(sock, "POST", "/build?" + query, context_tar(dockerfile), TAR)


def normalized(stream: bytes) -> bytes:
    """IDs (12 to 64 hex digits) replaced, so two engines' streams compare."""
    return re.sub(rb"[0-9a-f]{12,64}", b"<id>", stream)


@pytest.fixture(scope="module")
def ours(shared_daemon: Daemon) -> Daemon:
    shared_daemon.docker("load", "-i", str(BB))
    return shared_daemon


@pytest.fixture(scope="module")
def real(shared_daemon: Daemon) -> Iterator[Dockerd]:
    why = dockerd_unavailable()
    if why is not None:
        pytest.skip(why)
    d = Dockerd(shared_daemon.docker_config)
    try:
        why = d.start()
        if why is not None:
            pytest.skip(f"dockerd did not start here: {why}")
        d.docker("load", "-i", str(BB))
        yield d
    finally:
        d.stop()


# ---- POST /images/load: quiet unless asked otherwise ----------------------------------------------------------

PROGRESS_VARIANTS = ("?quiet=0", "?quiet=false", "?quiet=", "?quiet=no")
QUIET_VARIANTS = ("", "?quiet=1", "?quiet=true", "?quiet=foo")


@pytest.fixture(scope="module")
def load_archive(ours: Daemon, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A saved image of one layer no other image has (so each load after an rmi has a layer to load)."""
    rootfs = make_rootfs_tar({"etc/parity": os.urandom(200_000)}, with_busybox=False)
    ours.docker("import", "-", "parity/load:1", input=rootfs)
    out = tmp_path_factory.mktemp("load") / "load.tar"
    ours.docker("save", "-o", str(out), "parity/load:1")
    ours.docker("rmi", "parity/load:1")
    return out.read_bytes()


def load_variants(sock: Path, archive: bytes) -> dict[str, list[bytes]]:
    """Each variant's answer, the image removed before each load (its layer loaded every time)."""
    out = {}
    for variant in (*PROGRESS_VARIANTS, *QUIET_VARIANTS):
        http(sock, "DELETE", "/images/parity/load:1")
        status, body = http(sock, "POST", "/v1.41/images/load" + variant, archive, TAR)
        assert status == 200, (variant, body)
        assert body.endswith(b"\r\n"), body
        out[variant] = body.split(b"\r\n")[:-1]
    return out


LOADED = b'{"stream":"Loaded image: parity/load:1\\n"}'


def check_load_answers(answers: dict[str, list[bytes]]) -> None:
    for variant in QUIET_VARIANTS:
        assert answers[variant] == [LOADED], variant
    for variant in PROGRESS_VARIANTS:
        lines = answers[variant]
        assert lines[-1] == LOADED and len(lines) >= 2, variant
        for line in lines[:-1]:
            msg = json.loads(line)
            assert list(msg) == ["status", "progressDetail", "progress", "id"], line
            assert msg["status"] == "Loading layer" and len(msg["id"]) == 12
            assert b'"progress":"[' in line and b"\\u003e" in line and b">" not in line  # Go's HTML escape
            assert b'": ' not in line and b'", "' not in line  # compact


def test_load_is_quiet_unless_asked(ours: Daemon, load_archive: bytes) -> None:
    check_load_answers(load_variants(ours.sock, load_archive))
    api = ours.client().api
    # docker-py's load_image without quiet sends no parameter (the case of the openapi-generated clients)
    ours.docker("rmi", "parity/load:1")
    assert list(api.load_image(load_archive)) == [{"stream": "Loaded image: parity/load:1\n"}]
    ours.docker("rmi", "parity/load:1")
    msgs = list(api.load_image(load_archive, quiet=False))  # "quiet=False": progress
    assert {m.get("status") for m in msgs[:-1]} == {"Loading layer"} and msgs[-1] == {
        "stream": "Loaded image: parity/load:1\n"}
    ours.docker("rmi", "parity/load:1")
    out = ours.docker("load", input=load_archive).stdout.decode()  # the CLI, not on a terminal: quiet=1
    assert out == "Loaded image: parity/load:1\n"


def test_load_quiet_like_dockerd(ours: Daemon, real: Dockerd, load_archive: bytes) -> None:
    theirs = load_variants(real.sock, load_archive)
    check_load_answers(theirs)  # the expectations above are dockerd's own answers
    mine = load_variants(ours.sock, load_archive)
    for variant in (*PROGRESS_VARIANTS, *QUIET_VARIANTS):
        assert (len(mine[variant]) > 1) == (len(theirs[variant]) > 1), variant
        assert mine[variant][-1] == theirs[variant][-1]


# ---- repeated query parameters ---------------------------------------------------------------------------------

def test_build_extra_hosts_and_tags_repeated(ours: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_bytes(HOSTS_DOCKERFILE)
    # docker-py sends extra_hosts as extrahosts=a.example:1.2.3.4&extrahosts=b.example:5.6.7.8
    _, logs = ours.client().images.build(path=str(ctx), extra_hosts={"a.example": "1.2.3.4",
                                                                     "b.example": "5.6.7.8"}, nocache=True)
    text = "".join(m.get("stream", "") for m in logs)
    assert "1.2.3.4\ta.example\n" in text and "5.6.7.8\tb.example\n" in text, text
    # the CLI sends -t twice as t=…&t=…
    ours.docker("build", "-t", "parity/t:1", "-t", "parity/t:2", str(ctx))
    ids = {ours.out("image", "inspect", "-f", "{{.Id}}", f"parity/t:{n}") for n in (1, 2)}
    assert len(ids) == 1
    status, body = build(ours.sock, "t=parity/t:3&t=parity/t:4", HOSTS_DOCKERFILE)
    assert status == 200 and b"Successfully tagged parity/t:3" in body and b"Successfully tagged parity/t:4" in body
    # comma-joined is one value, as dockerd reads it: an invalid reference, nothing built
    status, body = build(ours.sock, "t=" + q("parity/t:5,parity/t:6"), HOSTS_DOCKERFILE)
    assert status >= 400 and json.loads(body) == {"message": "invalid reference format"}
    assert http(ours.sock, "GET", "/images/parity/t:5/json")[0] == 404


def test_get_names_repeated(ours: Daemon, tmp_path: Path) -> None:
    ours.docker("tag", "bb:1", "parity/names:1")
    out = tmp_path / "two.tar"
    ours.docker("save", "-o", str(out), "bb:1", "parity/names:1")  # names=bb:1&names=parity/names:1
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["bb:1", "parity/names:1"]
    status, body = http(ours.sock, "GET", "/images/get?names=bb:1&names=parity/names:1")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["bb:1", "parity/names:1"]
    status, body = http(ours.sock, "GET", "/images/get?names=" + q("bb:1,parity/names:1"))
    assert status >= 400 and json.loads(body) == {"message": "invalid reference format"}


def test_commit_and_import_changes_repeated(ours: Daemon) -> None:
    client = ours.client()
    c = client.containers.create("bb:1", "true", network_mode="none")
    try:
        img = c.commit(repository="parity/commit", tag="1", changes=["ENV A=1", 'CMD ["/bin/x"]', "WORKDIR /w"])
    finally:
        c.remove(force=True)
    cfg = client.api.inspect_image(img.id)["Config"]
    assert "A=1" in cfg["Env"] and cfg["Cmd"] == ["/bin/x"] and cfg["WorkingDir"] == "/w"
    rootfs = make_rootfs_tar({"etc/imported": b"1"}, with_busybox=False)
    out = client.api.import_image_from_data(rootfs, repository="parity/import", tag="1",
                                            changes=["ENV B=2", "WORKDIR /v", 'ENTRYPOINT ["/e"]'])
    assert "sha256:" in out
    cfg = client.api.inspect_image("parity/import:1")["Config"]
    assert cfg["Env"] == ["B=2"] and cfg["WorkingDir"] == "/v" and cfg["Entrypoint"] == ["/e"]


def test_df_type_repeated(ours: Daemon) -> None:
    status, body = http(ours.sock, "GET", "/system/df?type=image&type=container")
    d = json.loads(body)
    assert status == 200 and isinstance(d["Images"], list) and isinstance(d["Containers"], list)
    assert d.get("Volumes") is None and d.get("BuildCache") is None
    status, body = http(ours.sock, "GET", "/system/df?type=" + q("image,container"))
    assert (status, body) == (400, b'{"message":"unknown object type: image,container"}\n')


def test_extra_hosts_like_dockerd(ours: Daemon, real: Dockerd) -> None:
    query = "nocache=1&rm=1&extrahosts=a.example:1.2.3.4&extrahosts=b.example:5.6.7.8"
    answers = []
    for sock in (ours.sock, real.sock):
        status, body = build(sock, query, HOSTS_DOCKERFILE)
        assert status == 200
        text = "".join(json.loads(line).get("stream", "") for line in body.splitlines())
        answers.append([line for line in text.splitlines() if line.endswith(".example")])
    assert answers[0] == answers[1] == ["1.2.3.4\ta.example", "5.6.7.8\tb.example"]


# ---- JSON bytes as Go writes them ------------------------------------------------------------------------------

def test_json_bytes_as_go_writes_them(ours: Daemon) -> None:
    # a plain answer: httputils.WriteJSON, no HTML escaping, compact, a newline
    assert http(ours.sock, "GET", "/containers/" + q("a<b&c>") + "/json") == (
        404, b'{"message":"No such container: a<b&c>"}\n')
    assert http(ours.sock, "GET", "/plugins") == (200, b"[]\n")
    # a stream: json.Marshal, HTML escaped, non-ASCII as UTF-8, U+2028 escaped, CRLF; the image ID as {"aux":…}
    status, body = build(ours.sock, "t=parity/lab:1&nocache=1", LABELS_DOCKERFILE)
    assert status == 200
    assert 'Step 2/2 : LABEL x=\\"\\u003ca\\u0026b\\u003e\\" y=\\"é\\u2028z\\""}\r\n'.encode() in body
    assert b'{"stream":" ---\\u003e ' in body and re.search(rb'\r\n\{"aux":\{"ID":"sha256:[0-9a-f]{64}"\}\}\r\n', body)
    labels = '"Labels":{"x":"<a&b>","y":"é\\u2028z"}'.encode()
    assert labels in http(ours.sock, "GET", "/images/parity/lab:1/json")[1]
    status, listing = http(ours.sock, "GET", "/images/json?filters=" + q({"reference": ["parity/lab"]}))
    assert status == 200 and labels in listing and listing.endswith(b"}]\n")
    # an event: a Go json.Encoder (HTML escaped), the attributes map with its keys sorted
    since = time.time() - 1
    ours.docker("tag", "parity/lab:1", "parity/lab:2")
    status, events = http(ours.sock, "GET", f"/events?since={since:.3f}&until={time.time() + 1:.3f}&filters="
                          + q({"event": ["tag"], "image": ["parity/lab:2"]}))
    assert status == 200
    assert b'"Attributes":{"name":"parity/lab:2","x":"\\u003ca\\u0026b\\u003e","y":"\xc3\xa9\\u2028z"}' in events
    # a build's failure: code, then message (jsonmessage.JSONError)
    status, body = build(ours.sock, "rm=1", b"FROM bb:1\nRUN exit 3\n")
    msg = b"The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    assert body.endswith(b'{"errorDetail":{"code":3,"message":"' + msg + b'"},"error":"' + msg + b'"}\r\n')


def test_json_bytes_like_dockerd(ours: Daemon, real: Dockerd) -> None:
    path = "/containers/" + q("a<b&c>") + "/json"
    assert http(ours.sock, "GET", path) == http(real.sock, "GET", path)
    streams, inspects, events = [], [], []
    for sock in (ours.sock, real.sock):
        status, body = build(sock, "t=parity/cmp:1&nocache=1&rm=1", LABELS_DOCKERFILE)
        assert status == 200
        streams.append(normalized(body))
        inspects.append(http(sock, "GET", "/images/parity/cmp:1/json")[1])
        since = time.time() - 1
        assert http(sock, "POST", "/images/parity/cmp:1/tag?repo=parity/cmp&tag=2")[0] == 201
        status, body = http(sock, "GET", f"/v1.41/events?since={since:.3f}&until={time.time() + 1:.3f}&filters="
                            + q({"event": ["tag"], "image": ["parity/cmp:2"]}))
        events.append(re.sub(rb'"(time|timeNano)":\d+', rb'"\1":0', normalized(body)))
    assert streams[0] == streams[1]
    labels = '"Labels":{"x":"<a&b>","y":"é\\u2028z"}'.encode()
    assert labels in inspects[0] and labels in inspects[1]
    assert events[0] == events[1] and events[0].count(b"\n") == 1


def test_build_error_line_like_dockerd(ours: Daemon, real: Dockerd) -> None:
    tails = [build(sock, "rm=1", b"FROM bb:1\nRUN exit 3\n")[1].split(b"\r\n")[-2]
             for sock in (ours.sock, real.sock)]
    assert tails[0] == tails[1] and tails[0].startswith(b'{"errorDetail":{"code":3,"message":"The command')


# ---- platform checked before anything streams -----------------------------------------------------------------

def message(text: str) -> bytes:
    """dockerd's error body for ``text``."""
    return json.dumps({"message": text}, separators=(",", ":")).encode() + b"\n"


def bad_platform(spec: str, words: str) -> bytes:
    return message(f'"{spec}": {words}: invalid argument')


# containerd's platforms.Parse as dockerd 28 vendors it (dockerd 20.10's older copy words the component errors
# otherwise: "… is an invalid component of …" with the expression ^[A-Za-z0-9_-]+$)
PLATFORM_ERRORS = {
    "foobar": bad_platform("foobar", "unknown operating system or architecture"),
    "a/b/c/d": bad_platform("a/b/c/d", "cannot parse platform specifier"),
    "linux/*": bad_platform("linux/*", "wildcards not yet supported"),
    "linux/": message(r'"" is an invalid component of "linux/": platform specifier component must match '
                      r'"^[A-Za-z0-9_.-]+$": invalid argument'),
    "/amd64": message(r'"" is an invalid OS component of "/amd64": OSAndVersion specifier component must match '
                      r'"^([A-Za-z0-9_-]+)(?:\\(([A-Za-z0-9_.-]*)\\))?$": invalid argument'),
}


def test_platform_invalid(ours: Daemon) -> None:
    before = http(ours.sock, "GET", "/images/json?all=1")[1]
    rootfs = make_rootfs_tar({"etc/p": b"1"}, with_busybox=False)
    for spec, answer in PLATFORM_ERRORS.items():
        p = q(spec)
        assert http(ours.sock, "POST", f"/images/create?fromImage=busybox&tag=latest&platform={p}") == (400, answer)
        assert http(ours.sock, "POST", f"/images/create?fromSrc=-&repo=parity/imp&platform={p}", rootfs,
                    TAR) == (400, answer)
        assert build(ours.sock, f"t=parity/plat:1&platform={p}", HOSTS_DOCKERFILE) == (400, answer)
    assert http(ours.sock, "GET", "/images/json?all=1")[1] == before  # nothing pulled, imported or built
    client = ours.client()
    with pytest.raises(docker.errors.APIError) as err:
        client.images.pull("busybox", tag="latest", platform="foobar")
    assert err.value.status_code == 400
    assert err.value.explanation == '"foobar": unknown operating system or architecture: invalid argument'
    with pytest.raises(docker.errors.APIError) as err:
        client.images.build(fileobj=io.BytesIO(HOSTS_DOCKERFILE), platform="foobar")
    assert err.value.status_code == 400 and "unknown operating system or architecture" in str(err.value)
    # good specifiers: a lone OS or architecture, os/arch[/variant] whatever their names (containerd's rules)
    arch = host_platform().architecture
    for spec in ("linux", "LINUX", arch, f"linux/{arch}"):
        status, body = build(ours.sock, f"platform={q(spec)}", b"FROM bb:1\n")
        assert status == 200 and b"Successfully built" in body, (spec, body)
    # before API 1.32 dockerd does not read the parameter
    status, body = http(ours.sock, "POST", "/v1.31/build?platform=foobar", context_tar(b"FROM bb:1\n"), TAR)
    assert status == 200 and b"Successfully built" in body


def test_platform_invalid_like_dockerd(ours: Daemon, real: Dockerd) -> None:
    rootfs = make_rootfs_tar({"etc/p": b"1"}, with_busybox=False)
    for spec in ("foobar", "a/b/c/d", "linux/*"):  # the words 20.10 and 28 share
        p = q(spec)
        for method, path, body, headers in (
                ("POST", f"/images/create?fromImage=busybox&tag=latest&platform={p}", None, None),
                ("POST", f"/images/create?fromSrc=-&repo=parity/imp&platform={p}", rootfs, TAR),
                ("POST", f"/build?platform={p}", context_tar(HOSTS_DOCKERFILE), TAR)):
            mine = http(ours.sock, method, path, body, headers)
            assert mine == http(real.sock, method, path, body, headers), (spec, path)
            assert mine == (400, PLATFORM_ERRORS[spec])


# ---- GET /plugins ----------------------------------------------------------------------------------------------

PLUGIN_FILTERS = [({}, 200), ({"enabled": ["true"]}, 200), ({"enabled": ["false"], "capability": ["x"]}, 200),
                  ({"enabled": {"true": True}}, 200), ({"enable": ["true"]}, 400), ({"enabled": ["x"]}, 400)]


def test_plugins_empty(ours: Daemon) -> None:
    assert ours.client().plugins.list() == []
    assert ours.out("plugin", "ls").split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
    for f, status in PLUGIN_FILTERS:
        answer = http(ours.sock, "GET", "/plugins?filters=" + q(f))
        assert answer[0] == status, (f, answer)
        if status == 200:
            assert answer[1] == b"[]\n"
    assert http(ours.sock, "GET", "/plugins?filters=" + q({"enable": ["true"]}))[1] == (
        b'{"message":"invalid filter \'enable\'"}\n')
    assert http(ours.sock, "GET", "/plugins?filters=" + q({"enabled": ["x"]}))[1] == (
        b'{"message":"invalid filter \'enabled=[x]\'"}\n')


def test_plugins_like_dockerd(ours: Daemon, real: Dockerd) -> None:
    assert ours.out("plugin", "ls") == real.out("plugin", "ls")
    for f, _ in PLUGIN_FILTERS:
        path = "/plugins?filters=" + q(f)
        mine, theirs = http(ours.sock, "GET", path), http(real.sock, "GET", path)
        # dockerd 20.10 words the filter errors "Invalid filter …", dockerd 28 "invalid filter …"
        assert (mine[0], mine[1].lower()) == (theirs[0], theirs[1].lower()), f


def test_a_semicolon_in_the_query_is_refused_like_dockerd(ours: Daemon, real: Dockerd) -> None:
    """Go's url.ParseQuery refuses ``;`` since Go 1.17: dockerd's ParseForm answers 400."""
    for sock in (ours.sock, real.sock):
        status, body = http(sock, "GET", "/v1.41/images/json?all=1;digests=1")
        assert (status, json.loads(body)) == (400, {"message": "invalid semicolon separator in query"}), sock
        status, _ = http(sock, "GET", "/v1.41/images/json?filters=" + q({"label": ["a;b"]}))
        assert status == 200, sock  # an encoded semicolon is data
