"""JSON bodies of create and commit through a real daemon, and import from a URL that fails (issue 10, items 4-6).

A body that does not fit dockerd's types (``Cmd: 5``, ``Env: "A=1"``, ``HostConfig.Memory: "x"``) or nests too
deep is a 400 with dockerd's message and leaves nothing behind — no container record, no ``containers/<id>``
directory, no image; the container list keeps answering. A record an older version stored with such values is
repaired when the daemon starts. A failing import from a URL closes its HTTP client session.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import docker.errors
import pytest

from conftest import Daemon, make_rootfs_tar, small_tar

W = "ContainerConfigWrapper"
DEEP = "[" * 100_000 + "]" * 100_000
IMAGE = "bodies/base:1"


@pytest.fixture(scope="module")
def bd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("bodies")).start()
    d.docker("import", "-c", "ENV PATH=/bin", "-c", 'CMD ["sh"]', "-", IMAGE, input=make_rootfs_tar())
    try:
        yield d
    finally:
        d.stop()


def _post(d: Daemon, path: str, body: bytes | str, ctype: str = "application/json") -> tuple[int, dict]:
    raw = body.encode() if isinstance(body, str) else body
    status, _, data = d.api("POST", path, raw, {"Content-Type": ctype} if ctype else {})
    return status, json.loads(data) if data else {}


def _store(d: Daemon) -> tuple[list[str], list[str], list[str]]:
    """Container IDs (the list must answer), container directories and image IDs."""
    status, rows = d.api_json("GET", "/containers/json?all=1")
    assert status == 200, rows
    status, images = d.api_json("GET", "/images/json?all=1")
    assert status == 200, images
    cdir = d.data_root / "containers"
    return (sorted(r["Id"] for r in rows), sorted(os.listdir(cdir)) if cdir.is_dir() else [],  # type: ignore
            sorted(i["Id"] for i in images))  # type: ignore[union-attr]


@pytest.mark.parametrize("body,message", [
    ({"Image": IMAGE, "Cmd": 5}, f"invalid JSON: json: cannot unmarshal number into Go struct field {W}.Cmd of "
                                 "type string"),
    ({"Image": IMAGE, "Env": "A=1"}, f"invalid JSON: json: cannot unmarshal string into Go struct field {W}.Env "
                                     "of type []string"),
    ({"Image": IMAGE, "HostConfig": {"Memory": "x"}}, "invalid JSON: json: cannot unmarshal string into Go struct "
                                                      "field HostConfig.HostConfig.Memory of type int64"),
    ({"Image": IMAGE, "Labels": {"a": 1}}, f"invalid JSON: json: cannot unmarshal number into Go struct field "
                                           f"{W}.Labels of type string"),
    ({"Image": [IMAGE]}, f"invalid JSON: json: cannot unmarshal array into Go struct field {W}.Image of type "
                         "string"),
    (DEEP, "invalid JSON: invalid character '[' exceeded max depth"),
    ('{"Image":"' + IMAGE + '","Cmd":' + DEEP + "}", "invalid JSON: invalid character '[' exceeded max depth"),
    ('{"Image": ', "invalid JSON: unexpected EOF"),
    ("", "invalid JSON: got EOF while reading request body"),
    ("{}", "config cannot be empty in order to create a container"),
    ('{"Image":"' + IMAGE + '","Cmd":["true"]} trailing', "unexpected content after JSON"),
])
def test_create_refuses_a_body_that_does_not_fit_and_leaves_nothing(bd: Daemon, body: object,
                                                                     message: str) -> None:
    before = _store(bd)
    raw = body if isinstance(body, str) else json.dumps(body)
    status, answer = _post(bd, "/containers/create?name=bad-body", raw)
    assert (status, answer) == (400, {"message": message})
    assert _store(bd) == before
    status, _ = bd.api_json("GET", "/containers/bad-body/json")
    assert status == 404
    assert "Traceback" not in bd.log() and "RecursionError" not in bd.log()


@pytest.mark.parametrize("host_config,message", [
    ({"Memory": 1}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 8 << 20, "MemorySwap": 7 << 20},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"MemorySwap": 7 << 20}, "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"CpuPeriod": 100}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"CpusetCpus": "0-99999"}, "Invalid value 0-99999 for cpuset cpus"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"ExtraHosts": ["bad"]}, 'bad format for add-host: "bad"'),
])
def test_create_refuses_resources_as_dockerd(bd: Daemon, host_config: dict, message: str) -> None:
    """The resource checks dockerd makes at create (the builder's RUN steps make the same ones): 400, nothing left."""
    before = _store(bd)
    status, body = _post(bd, "/containers/create", json.dumps({"Image": IMAGE, "Cmd": ["true"],
                                                                "HostConfig": host_config}))
    assert status == 400, body
    assert message in body["message"]
    assert _store(bd) == before
    p = bd.docker("create", "--memory", "1", IMAGE, "true", check=False)  # the CLI shows the daemon's words
    assert p.returncode != 0 and b"Minimum memory limit allowed is 6MB" in p.stderr


def test_create_needs_a_json_content_type(bd: Daemon) -> None:
    before = _store(bd)
    status, answer = _post(bd, "/containers/create", json.dumps({"Image": IMAGE}), ctype="text/plain")
    assert (status, answer) == (400, {"message": "Content-Type specified (text/plain) must be 'application/json'"})
    assert _store(bd) == before


def test_create_decodes_as_dockerd(bd: Daemon) -> None:
    """Go's rules for what fits: a string Cmd, names in any case, unknown fields dropped, nulls."""
    body = {"image": IMAGE, "CMD": "echo hi", "entrypoint": None, "Unknown": {"deep": [[1]]}, "Hostname": None,
            "Labels": {"a": "b"}, "HostConfig": {"memory": 1 << 26}}
    status, answer = _post(bd, "/containers/create?name=decoded", json.dumps(body))
    assert status == 201, answer
    try:
        status, insp = bd.api_json("GET", "/containers/decoded/json")
        assert status == 200
        assert insp["Config"]["Cmd"] == ["echo hi"] and insp["Config"]["Image"] == IMAGE  # type: ignore[index]
        assert insp["Config"]["Labels"] == {"a": "b"}  # type: ignore[index]
        assert "Unknown" not in insp["Config"] and "image" not in insp["Config"]  # type: ignore[operator]
        assert insp["HostConfig"]["Memory"] == 1 << 26  # type: ignore[index]
    finally:
        bd.api("DELETE", "/containers/decoded?force=1")


def test_docker_py_create_with_wrong_types_is_a_400(bd: Daemon) -> None:
    c = bd.client()
    before = _store(bd)
    with pytest.raises(docker.errors.APIError) as exc:
        c.api.create_container(IMAGE, command=5)  # type: ignore[arg-type]
    assert exc.value.status_code == 400
    assert exc.value.explanation == f"invalid JSON: json: cannot unmarshal number into Go struct field {W}.Cmd " \
                                    "of type string"
    with pytest.raises(docker.errors.APIError) as exc:
        c.api.create_container(IMAGE, command=["true"], labels={"a": 1})  # type: ignore[dict-item]
    assert exc.value.status_code == 400 and "Go struct field ContainerConfigWrapper.Labels of type string" in \
        exc.value.explanation
    assert _store(bd) == before
    assert c.containers.list(all=True) is not None


@pytest.mark.parametrize("body,message", [
    ({"Cmd": 5}, f"invalid JSON: json: cannot unmarshal number into Go struct field {W}.Cmd of type string"),
    ({"Env": "A=1"}, f"invalid JSON: json: cannot unmarshal string into Go struct field {W}.Env of type []string"),
    ({"ExposedPorts": ["80/tcp"]}, f"invalid JSON: json: cannot unmarshal array into Go struct field "
                                   f"{W}.ExposedPorts of type nat.PortSet"),
    (DEEP, "invalid JSON: invalid character '[' exceeded max depth"),
    ("{not json", "invalid JSON: invalid character 'n' looking for beginning of object key string"),
])
def test_commit_refuses_a_config_that_does_not_fit_and_makes_no_image(bd: Daemon, body: object,
                                                                      message: str) -> None:
    cid = bd.out("create", IMAGE, "true")
    try:
        before = _store(bd)
        raw = body if isinstance(body, str) else json.dumps(body)
        status, answer = _post(bd, f"/commit?container={cid}&repo=bodies/commit&tag=bad", raw)
        assert (status, answer) == (400, {"message": message})
        assert _store(bd) == before
        assert bd.api_json("GET", "/images/bodies/commit:bad/json")[0] == 404
    finally:
        bd.docker("rm", "-f", cid)


def test_commit_with_a_typed_config_or_none(bd: Daemon) -> None:
    cid = bd.out("create", IMAGE, "true")
    try:
        status, answer = _post(bd, f"/commit?container={cid}&repo=bodies/commit&tag=cfg",
                               json.dumps({"Cmd": "echo committed", "Env": ["A=1"], "Unknown": 5}))
        assert status == 201, answer
        status, insp = bd.api_json("GET", "/images/bodies/commit:cfg/json")
        assert status == 200
        assert insp["Config"]["Cmd"] == ["echo committed"] and "A=1" in insp["Config"]["Env"]  # type: ignore
        status, answer = _post(bd, f"/commit?container={cid}&repo=bodies/commit&tag=empty", b"", ctype="")
        assert status == 201, answer  # no body: the container's config, as the docker CLI commits
    finally:
        bd.docker("rm", "-f", cid)
        bd.docker("rmi", "bodies/commit:cfg", "bodies/commit:empty", check=False)


def test_a_create_that_fails_part_way_leaves_no_directory(bd: Daemon) -> None:
    """The layer blob of a fresh image is gone: the snapshot cannot be made; the create leaves nothing."""
    image_id = bd.out("import", "-", "bodies/broken:1", input=small_tar({"f": os.urandom(4096)}))
    before = _store(bd)
    db = sqlite3.connect(bd.data_root / "metadata.db")
    try:
        digests = [r[0] for r in db.execute("SELECT digest FROM image_layers WHERE image_id=?", (image_id,))]
    finally:
        db.close()
    assert len(digests) == 1
    (bd.data_root / "content" / "blobs" / "sha256" / digests[0].split(":")[1]).unlink()
    status, answer = _post(bd, "/containers/create?name=broken", json.dumps({"Image": "bodies/broken:1",
                                                                            "Cmd": ["true"]}))
    assert status >= 400 and answer["message"], answer
    assert _store(bd) == before
    assert bd.api_json("GET", "/containers/broken/json")[0] == 404
    # the name was not kept by the failed create
    status, answer = _post(bd, "/containers/create?name=broken", json.dumps({"Image": IMAGE, "Cmd": ["true"]}))
    assert status == 201, answer
    bd.api("DELETE", "/containers/broken?force=1")


def test_concurrent_creates_of_one_name_give_one_container_and_conflicts(bd: Daemon) -> None:
    results: list[tuple[int, dict]] = []
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"]})

    def create() -> None:
        results.append(_post(bd, "/containers/create?name=twin", body))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(status for status, _ in results) == [201] + [409] * 5, results
        winner = next(answer["Id"] for status, answer in results if status == 201)
        for status, answer in results:
            if status == 409:
                assert answer["message"].startswith('Conflict. The container name "/twin" is already in use by '
                                                    f'container "{winner}"'), answer
        assert [c for c in _store(bd)[0] if c == winner] == [winner]
    finally:
        bd.api("DELETE", "/containers/twin?force=1")


def test_a_stored_record_with_bad_types_is_repaired_at_start(tmp_path: Path) -> None:
    """A container an older version stored from ``{"Cmd": 5, "Env": "A=1", …}`` does not break the list."""
    d = Daemon(tmp_path / "d").start()
    try:
        d.docker("import", "-c", 'CMD ["sh"]', "-", IMAGE, input=make_rootfs_tar())
        cid = d.out("create", "--name", "old", "-l", "keep=1", IMAGE, "true")
        d.stop(clean=False)
        db = sqlite3.connect(d.data_root / "metadata.db")
        with db:
            config, host_config = db.execute("SELECT config, host_config FROM containers WHERE id=?",
                                             (cid,)).fetchone()
            config = {**json.loads(config), "Cmd": 5, "Env": "A=1", "Entrypoint": "sh", "Tty": "yes"}
            host_config = {**json.loads(host_config), "Binds": "x", "Memory": "lots"}
            db.execute("UPDATE containers SET config=?, host_config=? WHERE id=?",
                       (json.dumps(config), json.dumps(host_config), cid))
        db.close()
        d.start()
        status, rows = d.api_json("GET", "/containers/json?all=1")
        assert status == 200 and [r["Id"] for r in rows] == [cid], rows  # type: ignore[index,union-attr]
        assert rows[0]["Command"] == "sh"  # type: ignore[index]
        status, insp = d.api_json("GET", f"/containers/{cid}/json")
        assert status == 200, insp
        # the bad values are dropped; the keys stay, null, as dockerd always writes them
        assert insp["Config"]["Entrypoint"] == ["sh"] and insp["Config"]["Cmd"] is None  # type: ignore[index]
        assert insp["Config"]["Env"] is None and insp["Config"]["Labels"] == {"keep": "1"}  # type: ignore[index]
        assert "Binds" not in insp["HostConfig"] or insp["HostConfig"]["Binds"] is None  # type: ignore[index]
        assert "stored record repaired" in d.log()
        assert d.out("ps", "-a", "-q", "--no-trunc") == cid
        d.docker("rm", cid)
    finally:
        d.stop()


# a push of a name with no image answers 200 and fails in-band, as dockerd (the stream has started)
@pytest.mark.parametrize("path,status", [("/images/bodies/nosuch:1/push", 200),
                                         ("/images/create?fromImage=127.0.0.1:1/x&tag=1", 500)])
def test_a_deeply_nested_registry_auth_header_is_ignored_as_undecodable(bd: Daemon, path: str,
                                                                       status: int) -> None:
    """dockerd's pull and push ignore an X-Registry-Auth they cannot decode; nesting is no exception (no
    RecursionError): the answer is the operation's own."""
    header = base64.urlsafe_b64encode(b"[" * 6_000).decode()
    got, _, data = bd.api("POST", path, None, {"X-Registry-Auth": header})
    assert got == status, data
    assert b"recursion" not in data
    if status == 200:
        assert b'"errorDetail":{"message":"An image does not exist locally with the tag: bodies/nosuch"}' in data


@pytest.mark.parametrize("value,message", [
    ("[" * 2_500, "failed to parse platform: unexpected EOF"),
    ("[" * 1_200 + "]" * 1_200, "failed to parse platform: not a JSON object"),
    ('{"os":"linux","x":' + "[" * 1_100 + "]" * 1_100 + "}", "failed to parse platform: nested too deeply"),
    ("{x", "failed to parse platform: invalid character 'x' looking for beginning of object key string"),
])
def test_a_platform_parameter_nested_deeply_is_a_400(bd: Daemon, value: str, message: str) -> None:
    status, answer = bd.api_json("GET", f"/images/{IMAGE}/json?platform={quote(value, safe='')}")
    assert (status, answer) == (400, {"message": message})


# -- import from a URL ----------------------------------------------------------------------------------------
def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            body = b"no such file\n"
        else:
            self.send_response(200)
            body = data
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def files() -> Iterator[tuple[str, dict[str, bytes]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Files.files
    finally:
        server.shutdown()
        server.server_close()


def test_import_from_a_url_that_cannot_be_reached_closes_its_session(bd: Daemon) -> None:
    port = _closed_port()
    before = _store(bd)
    for _ in range(50):  # a leaked session is reported when the garbage collector finds it: give it work
        url = f"http://127.0.0.1:{port}/rootfs.tar"
        status, answer = _post(bd, f"/images/create?fromSrc={quote(url, safe='')}&repo=bodies/url&tag=1", b"",
                               ctype="")
        # dockerd: remotecontext.GetWithStatusError's error, a system error
        assert (status, answer) == (500, {"message": f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: '
                                                     "connection refused"})
    p = bd.docker("import", f"http://127.0.0.1:{port}/x.tar", check=False)
    assert p.returncode != 0 and b"connection refused" in p.stderr
    assert _store(bd) == before
    bd.api("GET", "/_ping")
    assert "Unclosed client session" not in bd.log()
    assert "Unclosed connection" not in bd.log()


def test_import_from_a_url_that_answers_404_or_serves_the_archive(bd: Daemon,
                                                                   files: tuple[str, dict[str, bytes]]) -> None:
    base, served = files
    before = _store(bd)
    url = f"{base}/missing.tar"
    status, answer = _post(bd, f"/images/create?fromSrc={quote(url, safe='')}&repo=bodies/url&tag=1", b"",
                           ctype="")
    assert (status, answer) == (404, {"message": f"failed to GET {url} with status 404 Not Found: no such file"})
    assert _store(bd) == before
    served["/rootfs.tar"] = small_tar({"hello": b"world\n"})
    out = bd.out("import", f"{base}/rootfs.tar", "bodies/url:2")
    assert out.splitlines()[0] == f"Downloading from {base}/rootfs.tar"
    assert out.splitlines()[-1].startswith("sha256:")
    assert bd.api_json("GET", "/images/bodies/url:2/json")[0] == 200
    served["/bad.tar"] = b"this is not a tar archive" * 100
    status, _, data = bd.api("POST", f"/images/create?fromSrc={quote(base + '/bad.tar', safe='')}&repo=bodies/url"
                                     "&tag=3")
    assert status == 200 and b"errorDetail" in data  # the download had started: the error is in the stream
    bd.docker("rmi", "bodies/url:2")
    bd.api("GET", "/_ping")
    assert "Unclosed client session" not in bd.log()
