"""Image import, list, inspect, history, tag, rmi and prune through the real docker CLI."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import zstandard

from conftest import Daemon, make_rootfs_tar, small_tar


def _import(d: Daemon, data: bytes, *args: str) -> str:
    out = d.out("import", *args, "-", input=data) if not args or args[-1].startswith("-") else \
        d.out("import", "-", *args, input=data)
    assert out.startswith("sha256:"), out
    return out


def test_import_file_stdin_changes_message(daemon: Daemon, tmp_path: Path) -> None:
    data = make_rootfs_tar({"etc/hello": b"hi\n"})
    f = tmp_path / "rootfs.tar"
    f.write_bytes(data)
    image_id = daemon.out("import", "-m", "my message", "-c", "CMD [\"/bin/sh\"]", "-c", "ENV A=1 B=two",
                          "-c", "LABEL com.example=yes", "-c", "EXPOSE 80/tcp", "-c", "WORKDIR /srv",
                          "-c", "USER nobody", "-c", "VOLUME /data", str(f), "imp/one:1")
    assert image_id.startswith("sha256:")
    insp = json.loads(daemon.out("image", "inspect", "imp/one:1"))[0]
    assert insp["Id"] == image_id
    assert insp["RepoTags"] == ["imp/one:1"]
    assert insp["RepoDigests"] == []
    assert insp["Comment"] == "my message"
    cfg = insp["Config"]
    assert cfg["Cmd"] == ["/bin/sh"]
    assert cfg["Env"] == ["A=1", "B=two"]
    assert cfg["Labels"] == {"com.example": "yes"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["User"] == "nobody"
    assert cfg["Volumes"] == {"/data": {}}
    assert insp["Os"] == "linux" and insp["Architecture"]
    assert len(insp["RootFS"]["Layers"]) == 1
    assert insp["Size"] > 0
    assert insp["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    # stdin, no tag: dangling image; default comment
    id2 = daemon.out("import", "-", input=small_tar({"a": b"1"}))
    insp2 = json.loads(daemon.out("image", "inspect", id2))[0]
    assert insp2["RepoTags"] == [] and insp2["Comment"] == "Imported from -"
    hist = json.loads("[" + ",".join(daemon.out("history", "--no-trunc", "--format", "{{json .}}",
                                                id2).splitlines()) + "]")
    assert len(hist) == 1 and hist[0]["ID"] == id2 and hist[0]["Comment"] == "Imported from -"
    assert hist[0]["CreatedBy"] == ""


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd", "none"])
def test_import_compressions_same_diff_id(shared_daemon: Daemon, kind: str) -> None:
    data = small_tar({"x/y.txt": b"compress me " * 1000})
    packed = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
              "zstd": lambda b: zstandard.ZstdCompressor().compress(b), "none": lambda b: b}[kind](data)
    image_id = shared_daemon.out("import", "-", f"comp/{kind}:1", input=packed)
    insp = json.loads(shared_daemon.out("image", "inspect", image_id))[0]
    import hashlib
    assert insp["RootFS"]["Layers"] == ["sha256:" + hashlib.sha256(data).hexdigest()]
    assert insp["Size"] == len(b"compress me " * 1000)


def _store_snapshot(d: Daemon) -> tuple[list[str], list[str]]:
    blobs = sorted(p.name for p in (d.data_root / "content" / "blobs" / "sha256").iterdir())
    status, images = d.api_json("GET", "/images/json?all=1")
    return blobs, sorted(i["Id"] for i in images)  # type: ignore[union-attr]


def test_bad_import_leaves_store_unchanged(daemon: Daemon) -> None:
    daemon.docker("import", "-", "keep:1", input=small_tar({"k": b"k"}))
    before = _store_snapshot(daemon)
    p = daemon.docker("import", "-", "bad:1", input=b"this is not a tar archive at all" * 100, check=False)
    assert p.returncode != 0 and p.stderr
    gz = gzip.compress(small_tar({"big": bytes(range(256)) * 400}))
    p = daemon.docker("import", "-", "bad:2", input=gz[: len(gz) // 2], check=False)
    assert p.returncode != 0
    assert b"unexpected EOF" in p.stderr or b"truncated" in p.stderr.lower()
    p = daemon.docker("import", "-", "BAD:1", input=small_tar({"k": b"k"}), check=False)
    assert p.returncode != 0 and b"invalid reference format" in p.stderr
    status, body = daemon.api_json("POST", "/images/create?fromSrc=-&repo=ok&changes=FROM%20busybox",
                                   body=small_tar({"z": b"z"}))
    assert status == 400 and body["message"] == "from is not a valid change command"  # as dockerd words it
    assert _store_snapshot(daemon) == before
    assert not list((daemon.data_root / "content" / "ingest").iterdir())


def test_images_listing_and_filters(daemon: Daemon) -> None:
    a = daemon.out("import", "-c", "LABEL team=a", "-c", "LABEL tier=web", "-", "lst/a:1", input=small_tar({"a": b"a"}))
    time.sleep(1.1)
    b = daemon.out("import", "-c", "LABEL team=b", "-", "lst/b:1", input=small_tar({"b": b"b"}))
    time.sleep(1.1)
    c = daemon.out("import", "-", input=small_tar({"c": b"c"}))  # dangling
    daemon.docker("tag", "lst/a:1", "other/a:latest")

    def ids(*args: str) -> list[str]:
        # one row per tag: an image with two tags is listed twice
        return list(dict.fromkeys(daemon.out("images", "-q", "--no-trunc", *args).splitlines()))

    assert set(ids()) == {a, b, c}
    assert ids("--filter", "dangling=true") == [c]
    assert set(ids("--filter", "dangling=false")) == {a, b}
    assert ids("--filter", "label=team=a") == [a]
    assert set(ids("--filter", "label=team")) == {a, b}
    assert ids("--filter", "label=team=a", "--filter", "label=tier") == [a]
    assert ids("--filter", "reference=lst/*") == [b, a]
    assert ids("--filter", "reference=other/*:latest") == [a]
    assert ids("--filter", "reference=*/a") == [a]
    assert ids("--filter", "before=lst/b:1") == [a]
    assert ids("--filter", "since=lst/a:1") == [c, b]
    assert ids("--filter", f"until={int(time.time()) + 60}") == [c, b, a]
    assert ids("--filter", "until=1970-01-02") == []
    rows = [json.loads(r) for r in daemon.out("images", "--format", "{{json .}}").splitlines()]
    repos = sorted((r["Repository"], r["Tag"]) for r in rows)
    assert ("<none>", "<none>") in repos and ("lst/a", "1") in repos and ("other/a", "latest") in repos
    out = daemon.out("images", "--digests", "--no-trunc", "lst/a")
    assert "DIGEST" in out.splitlines()[0] and a in out
    # bad filters: clear 400s through the API and the CLI
    status, body = daemon.api_json("GET", "/images/json?filters=%7Bnot-json")
    assert status == 400 and "invalid filter" in body["message"]
    status, body = daemon.api_json("GET", "/images/json?filters=" + quote(json.dumps({"nope": ["x"]})))
    assert status == 400 and body["message"] == "invalid filter 'nope'"
    p = daemon.docker("images", "--filter", "nope=1", check=False)
    assert p.returncode != 0 and b"invalid filter 'nope'" in p.stderr
    # legacy filter encoding map[string]map[string]bool works too
    status, body = daemon.api_json("GET", "/images/json?filters=" + quote(json.dumps({"label": {"team=b": True}})))
    assert status == 200 and [i["Id"] for i in body] == [b]


def test_list_shapes_per_version(shared_daemon: Daemon) -> None:
    dangling = shared_daemon.out("import", "-", input=small_tar({"shape": b"1"}))
    s, old = shared_daemon.api_json("GET", "/v1.41/images/json")
    row = next(i for i in old if i["Id"] == dangling)
    assert row["RepoTags"] == ["<none>:<none>"] and row["RepoDigests"] == ["<none>@<none>"]
    assert row["VirtualSize"] == row["Size"] and row["SharedSize"] == -1 and row["Containers"] == -1
    s, new = shared_daemon.api_json("GET", "/v1.51/images/json?shared-size=1")
    row = next(i for i in new if i["Id"] == dangling)
    assert row["RepoTags"] == [] and row["RepoDigests"] == [] and "VirtualSize" not in row
    assert row["Containers"] == 0 and row["SharedSize"] == 0
    assert "Descriptor" not in row  # graphdriver-style store: no containerd descriptor in the list
    s, insp41 = shared_daemon.api_json("GET", f"/v1.41/images/{dangling}/json")
    assert "ContainerConfig" in insp41 and insp41["Config"]["Hostname"] == "" and "VirtualSize" in insp41
    s, insp51 = shared_daemon.api_json("GET", f"/v1.51/images/{dangling}/json")
    assert "ContainerConfig" not in insp51 and "Hostname" not in insp51["Config"]
    assert insp51["Config"]["Cmd"] is None and insp51["Config"]["WorkingDir"] == ""
    assert "Descriptor" in insp51


def test_shared_size(daemon: Daemon) -> None:
    base = small_tar({"shared/file": b"s" * 5000})
    # same layer content imported twice gives two images (different created) sharing one layer
    a = daemon.out("import", "-", "ss/a:1", input=base)
    time.sleep(0.01)
    b = daemon.out("import", "-", "ss/b:1", input=base)
    assert a != b
    s, rows = daemon.api_json("GET", "/images/json?shared-size=1")
    sizes = {r["Id"]: (r["Size"], r["SharedSize"]) for r in rows}
    assert sizes[a] == (5000, 5000) and sizes[b] == (5000, 5000)
    df = json.loads(daemon.out("system", "df", "--format", "{{json .}}").splitlines()[0])
    assert df["Type"] == "Images" and df["TotalCount"] == "2"
    s, body = daemon.api_json("GET", "/system/df")
    assert body["LayersSize"] == 5000


def test_inspect_names_and_errors(shared_daemon: Daemon) -> None:
    d = shared_daemon
    image_id = d.out("import", "-", "names/x:1", input=small_tar({"n": b"n"}))
    hexid = image_id.split(":")[1]
    for name in (image_id, hexid, hexid[:12], "names/x:1", "docker.io/names/x:1"):
        assert json.loads(d.out("image", "inspect", name))[0]["Id"] == image_id
    p = d.docker("image", "inspect", "names/x:nope", check=False)
    assert p.returncode != 0 and b"No such image: names/x:nope" in p.stderr
    s, body = d.api_json("GET", "/images/names/x:nope/json")
    assert s == 404 and body == {"message": "No such image: names/x:nope"}
    s, body = d.api_json("GET", "/images/Bad_Name/json")
    assert s == 400 and "invalid reference format" in body["message"]
    s, body = d.api_json("GET", "/images/localhost:5000/a/b:c/json")
    assert s == 404 and body["message"] == "No such image: localhost:5000/a/b:c"
    d.docker("tag", "names/x:1", "localhost:5000/a/b:c")
    s, body = d.api_json("GET", "/images/localhost:5000/a/b:c/json")
    assert s == 200 and body["Id"] == image_id
    s, body = d.api_json("POST", "/images/names/x:1/tag?repo=sha256")
    assert s == 400 and "ambiguous" in body["message"]
    s, body = d.api_json("POST", "/images/names/x:1/tag?repo=ok&tag=bad:tag")
    assert s == 400
    s, body = d.api_json("POST", "/images/nope:1/tag?repo=ok&tag=t")
    assert s == 404


def test_rmi_semantics(daemon: Daemon) -> None:
    d = daemon
    image_id = d.out("import", "-", "rm/a:1", input=small_tar({"r": b"r" * 100}))
    d.docker("tag", "rm/a:1", "rm/b:1")
    short = image_id.split(":")[1][:12]
    p = d.docker("rmi", short, check=False)
    assert p.returncode != 0
    assert (f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple "
            f"repositories").encode() in p.stderr
    s, body = d.api_json("DELETE", "/images/rm/b:1")
    assert s == 200 and body == [{"Untagged": "rm/b:1"}]
    s, body = d.api_json("DELETE", "/images/rm/a:1")
    assert s == 200
    assert body[0] == {"Untagged": "rm/a:1"} and body[1] == {"Deleted": image_id}
    insp_layers = [b["Deleted"] for b in body[2:]]
    assert len(insp_layers) == 1 and insp_layers[0].startswith("sha256:")
    s, body = d.api_json("DELETE", "/images/rm/a:1")
    assert s == 404 and body["message"] == "No such image: rm/a:1"
    # -f by ID with several repositories untags all and deletes
    image_id = d.out("import", "-", "rm/c:1", input=small_tar({"c": b"c"}))
    d.docker("tag", "rm/c:1", "rm/d:1")
    out = d.out("rmi", "-f", image_id)
    assert "Untagged: rm/c:1" in out and "Untagged: rm/d:1" in out and f"Deleted: {image_id}" in out
    assert not list((d.data_root / "content" / "blobs" / "sha256").iterdir())


def test_image_prune(daemon: Daemon) -> None:
    d = daemon
    dangling = d.out("import", "-c", "LABEL keep=no", "-", input=small_tar({"p": b"p"}))
    tagged_old = d.out("import", "-c", "LABEL keep=yes", "-", "pr/old:1", input=small_tar({"o": b"o"}))
    tagged_lbl = d.out("import", "-c", "LABEL gone=1", "-", "pr/lbl:1", input=small_tar({"l": b"l"}))
    out = d.out("image", "prune", "-f")
    assert f"deleted: {dangling}" in out.lower()
    assert "Total reclaimed space" in out
    ids = set(d.out("images", "-q", "--no-trunc").splitlines())
    assert ids == {tagged_old, tagged_lbl}
    out = d.out("image", "prune", "-a", "-f", "--filter", "label!=keep=yes")
    ids = set(d.out("images", "-q", "--no-trunc").splitlines())
    assert ids == {tagged_old}
    out = d.out("image", "prune", "-a", "-f", "--filter", "until=1970-01-02T00:00:00")
    assert set(d.out("images", "-q", "--no-trunc").splitlines()) == {tagged_old}
    out = d.out("image", "prune", "-a", "-f", "--filter", "label=keep=yes")
    assert d.out("images", "-q") == ""
    s, body = d.api_json("POST", "/images/prune?filters=" + quote(json.dumps({"bogus": ["1"]})))
    assert s == 400 and body["message"] == "invalid filter 'bogus'"
    s, body = d.api_json("POST", "/images/prune")
    assert s == 200 and body == {"ImagesDeleted": None, "SpaceReclaimed": 0}


def test_import_from_url_and_platform(daemon: Daemon, tmp_path: Path) -> None:
    import http.server
    import threading
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "rootfs.tar.gz").write_bytes(gzip.compress(small_tar({"from/url": b"u" * 10})))
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/rootfs.tar.gz"
        out = daemon.out("import", "--platform", "linux/arm64", url, "url/img:1")
        assert out.splitlines()[-1].startswith("sha256:")
        insp = json.loads(daemon.out("image", "inspect", "url/img:1"))[0]
        assert insp["Architecture"] == "arm64" and insp["Os"] == "linux"
        assert insp["Comment"] == f"Imported from {url}"
        assert insp["Size"] == 10
        c = daemon.client()
        stream = c.api.import_image_from_url(url, repository="url/py", tag="2")
        assert "Downloading from" in stream and "sha256:" in stream
        p = daemon.docker("import", f"http://127.0.0.1:{srv.server_address[1]}/missing.tar", "url/x:1", check=False)
        assert p.returncode != 0 and b"404" in p.stderr
    finally:
        srv.shutdown()
