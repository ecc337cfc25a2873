"""Pull, push, login, search and distribution inspect against real registries, through the docker CLI and docker-py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker.errors
import pytest

from conftest import Daemon, make_rootfs_tar, small_tar
from registry import FaultProxy, Registry, push_image, push_multiplatform, registry, shared_registry, tar_of  # noqa: F401


def _lines(p: bytes) -> list[str]:
    return [line for line in p.decode().splitlines() if line.strip()]


def test_pull_by_tag_digest_and_progress_lines(daemon: Daemon, registry: Registry) -> None:
    img = push_image(registry, "team/app", "1", [tar_of({"a.txt": b"a" * 3000}), tar_of({"b.txt": b"b" * 40})])
    name = f"{registry.host}/team/app:1"
    out = daemon.out("pull", name)
    assert f"Digest: {img['manifest_digest']}" in out
    assert f"Status: Downloaded newer image for {name}" in out
    assert "Pull complete" in out
    insp = json.loads(daemon.out("image", "inspect", name))[0]
    assert insp["Id"] == img["config_digest"]
    assert insp["RepoDigests"] == [f"{registry.host}/team/app@{img['manifest_digest']}"]
    assert insp["RootFS"]["Layers"] == img["diff_ids"]
    # the raw stream, line for line
    c = daemon.client()
    daemon.docker("rmi", name)
    evs = list(c.api.pull(f"{registry.host}/team/app", tag="1", stream=True, decode=True))
    statuses = [(e.get("status"), e.get("id")) for e in evs]
    short = [d[7:19] for d in img["layer_digests"]]
    assert statuses[0] == ("Pulling from team/app", "1")
    for s in short:
        assert ("Pulling fs layer", s) in statuses or ("Already exists", s) in statuses
        assert ("Download complete", s) in statuses and ("Pull complete", s) in statuses
    pulling = [e for e in evs if e.get("status") == "Pulling fs layer"]
    assert all(e["progressDetail"] == {} for e in pulling)
    downloading = [e for e in evs if e.get("status") == "Downloading"]
    assert downloading and all("current" in e["progressDetail"] and "[" in e["progress"] for e in downloading)
    assert evs[-2] == {"status": f"Digest: {img['manifest_digest']}"}
    assert evs[-1] == {"status": f"Status: Downloaded newer image for {name}"}
    again = daemon.out("pull", name)
    assert f"Status: Image is up to date for {name}" in again
    # by digest
    daemon.docker("rmi", name)
    byd = f"{registry.host}/team/app@{img['manifest_digest']}"
    out = daemon.out("pull", byd)
    assert f"Status: Downloaded newer image for {byd}" in out
    rows = daemon.out("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}")
    assert f"{registry.host}/team/app <none> {img['manifest_digest']}" in rows


def test_pull_errors(daemon: Daemon, registry: Registry) -> None:
    push_image(registry, "team/app", "1", [tar_of({"a": b"a"})])
    p = daemon.docker("pull", f"{registry.host}/team/app:nope", check=False)
    assert p.returncode != 0
    assert f"manifest for {registry.host}/team/app:nope not found: manifest unknown".encode() in p.stderr
    p = daemon.docker("pull", f"{registry.host}/no/such:1", check=False)
    assert p.returncode != 0 and p.stderr.strip()
    s, body = daemon.api_json("POST", f"/images/create?fromImage={registry.host}/team/app&tag=nope")
    assert s == 404 and "manifest unknown" in body["message"]
    s, body = daemon.api_json("POST", "/images/create?fromImage=scratch&tag=latest")
    assert s == 403
    s, body = daemon.api_json("POST", "/images/create?fromImage=UPPER&tag=latest")
    assert s == 400
    assert daemon.out("images", "-q") == ""


def test_pull_all_tags(daemon: Daemon, registry: Registry) -> None:
    for t in ("1", "2", "3"):
        push_image(registry, "many/tags", t, [tar_of({f"{t}.txt": t.encode()})])
    out = daemon.out("pull", "-a", f"{registry.host}/many/tags")
    assert out.count("Digest: sha256:") == 3
    tags = sorted(daemon.out("images", "--format", "{{.Tag}}", f"{registry.host}/many/tags").splitlines())
    assert tags == ["1", "2", "3"]
    c = daemon.client()
    imgs = c.images.pull(f"{registry.host}/many/tags", all_tags=True)
    assert len(imgs) == 3


def test_tag_moved_leaves_old_image_dangling(daemon: Daemon, registry: Registry) -> None:
    first = push_image(registry, "mv/app", "latest", [tar_of({"v": b"1"})])
    daemon.docker("pull", f"{registry.host}/mv/app")
    second = push_image(registry, "mv/app", "latest", [tar_of({"v": b"2"})])
    daemon.docker("pull", f"{registry.host}/mv/app")
    assert daemon.out("images", "-q", "--no-trunc", "--filter", "dangling=true") == first["config_digest"]
    assert json.loads(daemon.out("image", "inspect", f"{registry.host}/mv/app"))[0]["Id"] == second["config_digest"]


def test_push_round_trip_and_second_registry(daemon: Daemon, registry: Registry, tmp_path: Path) -> None:
    image_id = daemon.out("import", "-c", "CMD [\"/bin/sh\"]", "-", "local/img:1", input=make_rootfs_tar())
    name = f"{registry.host}/round/trip:1"
    daemon.docker("tag", "local/img:1", name)
    out = daemon.out("push", name)
    assert f"The push refers to repository [{registry.host}/round/trip]" in out
    assert "Pushed" in out
    digest = next(line.split("digest: ")[1].split()[0] for line in out.splitlines() if "digest: " in line)
    again = daemon.out("push", name)
    assert "Layer already exists" in again and digest in again
    daemon.docker("rmi", "-f", image_id)
    daemon.docker("pull", name)
    insp = json.loads(daemon.out("image", "inspect", name))[0]
    assert insp["Id"] == image_id
    assert insp["RepoDigests"] == [f"{registry.host}/round/trip@{digest}"]
    # a second registry: same manifest digest
    with Registry(tmp_path / "reg2") as reg2:
        name2 = f"{reg2.host}/copy/trip:1"
        daemon.docker("tag", name, name2)
        out2 = daemon.out("push", name2)
        assert f"1: digest: {digest}" in out2
        # a mount from another repository of the same registry
        name3 = f"{reg2.host}/other/repo:1"
        daemon.docker("tag", name, name3)
        out3 = daemon.out("push", name3)
        assert "Mounted from copy/trip" in out3


def test_push_all_tags_and_docker_py_stream(daemon: Daemon, registry: Registry) -> None:
    daemon.docker("import", "-", f"{registry.host}/multi/tag:a", input=small_tar({"a": b"a"}))
    daemon.docker("import", "-", f"{registry.host}/multi/tag:b", input=small_tar({"b": b"b"}))
    out = daemon.out("push", "-a", f"{registry.host}/multi/tag")
    assert "a: digest: sha256:" in out and "b: digest: sha256:" in out
    c = daemon.client()
    evs = list(c.api.push(f"{registry.host}/multi/tag", tag="a", stream=True, decode=True))
    aux = [e["aux"] for e in evs if "aux" in e]
    assert aux and aux[0]["Tag"] == "a" and aux[0]["Digest"].startswith("sha256:") and aux[0]["Size"] > 0
    assert evs[0] == {"status": f"The push refers to repository [{registry.host}/multi/tag]"}
    dist = c.api.inspect_distribution(f"{registry.host}/multi/tag:a")
    assert dist["Descriptor"]["digest"] == aux[0]["Digest"]
    assert dist["Platforms"][0]["os"] == "linux"
    # as dockerd: the stream starts, then the error; other tags of the repository exist → "tag does not exist"
    p = daemon.docker("push", f"{registry.host}/multi/tag:none", check=False)
    assert p.returncode != 0 and f"The push refers to repository [{registry.host}/multi/tag]".encode() in p.stdout
    assert p.stderr.strip() == f"tag does not exist: {registry.host}/multi/tag:none".encode()
    p = daemon.docker("push", f"{registry.host}/nothing/here", check=False)  # no name of it at all
    assert p.returncode != 0 and f"The push refers to repository [{registry.host}/nothing/here]".encode() in p.stdout
    assert p.stderr.strip().endswith(
        f"An image does not exist locally with the tag: {registry.host}/nothing/here".encode())


def test_multi_platform_pull(daemon: Daemon, registry: Registry) -> None:
    res = push_multiplatform(registry, "mp/img", "1", ("linux/amd64", "linux/arm64"))
    name = f"{registry.host}/mp/img:1"
    import platform as _p
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(_p.machine(), _p.machine())
    daemon.docker("pull", name)
    insp = json.loads(daemon.out("image", "inspect", name))[0]
    assert insp["Architecture"] == host_arch
    assert insp["RepoDigests"] == [f"{registry.host}/mp/img@{res['index_digest']}"]
    other = "arm64" if host_arch == "amd64" else "amd64"
    daemon.docker("pull", "--platform", f"linux/{other}", name)
    insp = json.loads(daemon.out("image", "inspect", name))[0]
    assert insp["Architecture"] == other
    c = daemon.client()
    img = c.images.pull(f"{registry.host}/mp/img", tag="1", platform=f"linux/{host_arch}")
    assert img.attrs["Architecture"] == host_arch
    dist = c.api.inspect_distribution(name)
    assert sorted(p["architecture"] for p in dist["Platforms"]) == ["amd64", "arm64"]
    p = daemon.docker("pull", "--platform", "linux/s390x", name, check=False)
    assert p.returncode != 0 and b"no matching manifest for linux/s390x" in p.stderr


def test_login_htpasswd_then_pull_push(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d").start()
    try:
        with Registry(tmp_path / "reg", auth="htpasswd") as reg:
            user, pw = reg.credentials  # type: ignore[misc]
            p = d.docker("login", "-u", user, "--password-stdin", reg.host, input=b"wrong\n", check=False)
            assert p.returncode != 0 and b"unauthorized" in p.stderr.lower()
            p = d.docker("login", "-u", user, "--password-stdin", reg.host, input=pw.encode() + b"\n")
            assert b"Login Succeeded" in p.stdout
            d.docker("import", "-", f"{reg.host}/auth/img:1", input=small_tar({"x": b"x"}))
            d.docker("push", f"{reg.host}/auth/img:1")
            d.docker("rmi", f"{reg.host}/auth/img:1")
            d.docker("pull", f"{reg.host}/auth/img:1")
            d.docker("logout", reg.host)
            d.docker("rmi", f"{reg.host}/auth/img:1")
            p = d.docker("pull", f"{reg.host}/auth/img:1", check=False)
            assert p.returncode != 0
            c = d.client()
            assert c.login(username=user, password=pw, registry=reg.host)["Status"] == "Login Succeeded"
            with pytest.raises(docker.errors.APIError) as exc:
                c.login(username=user, password="bad", registry=reg.host, reauth=True)
            assert exc.value.status_code == 401
    finally:
        d.stop()


def test_token_auth_registry(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d").start()
    try:
        with Registry(tmp_path / "reg", auth="token") as reg:
            user, pw = reg.credentials  # type: ignore[misc]
            d.docker("login", "-u", user, "--password-stdin", reg.host, input=pw.encode() + b"\n")
            d.docker("import", "-", f"{reg.host}/tok/img:1", input=small_tar({"t": b"t"}))
            d.docker("push", f"{reg.host}/tok/img:1")
            d.docker("rmi", f"{reg.host}/tok/img:1")
            out = d.out("pull", f"{reg.host}/tok/img:1")
            assert "Downloaded newer image" in out
            p = d.docker("login", "-u", user, "--password-stdin", reg.host, input=b"bad\n", check=False)
            assert p.returncode != 0 and b"401" in p.stderr or b"unauthorized" in p.stderr.lower()
    finally:
        d.stop()


def test_tls_registry_with_certs_d(tmp_path: Path) -> None:
    """A TLS registry that requires a client certificate: certs.d beside daemon.json provides it.

    (Every loopback name is an insecure registry for dockerd — TLS without CA verification, then plain HTTP — so
    CA verification itself is covered by the distribution unit tests; here the client-cert half of certs.d is.)"""
    with Registry(tmp_path / "reg", tls=True, tls_client_auth=True) as reg:
        push_image(reg, "tls/img", "1", [tar_of({"s": b"s"})])
        d = Daemon(tmp_path / "d").start()
        try:
            p = d.docker("pull", f"{reg.host}/tls/img:1", check=False)
            assert p.returncode != 0 and p.stderr.strip()
            reg.install_certs_d(d.certs_d)
            out = d.out("pull", f"{reg.host}/tls/img:1")
            assert "Downloaded newer image" in out
            d.docker("tag", f"{reg.host}/tls/img:1", f"{reg.host}/tls/pushed:1")
            assert "digest: sha256:" in d.out("push", f"{reg.host}/tls/pushed:1")
        finally:
            d.stop()


def test_mirror_serves_docker_hub_names(tmp_path: Path) -> None:
    with Registry(tmp_path / "mirror") as mirror:
        img = push_image(mirror, "library/busybox", "latest", [make_rootfs_tar()])
        d = Daemon(tmp_path / "d", "--registry-mirror", f"http://{mirror.host}").start()
        try:
            out = d.out("pull", "busybox")
            assert "Downloaded newer image for busybox:latest" in out
            insp = json.loads(d.out("image", "inspect", "busybox"))[0]
            assert insp["Id"] == img["config_digest"]
            assert insp["RepoTags"] == ["busybox:latest"]
            assert insp["RepoDigests"] == [f"busybox@{img['manifest_digest']}"]
        finally:
            d.stop()


def test_search_offline_fails_cleanly(shared_daemon: Daemon) -> None:
    p = shared_daemon.docker("search", "busybox", check=False, timeout=90)
    assert p.returncode != 0 and p.stderr.strip()
    s, body = shared_daemon.api_json("GET", "/images/search?term=busybox&filters=%7B%22nope%22%3A%5B%221%22%5D%7D")
    assert s == 400 and body["message"] == "invalid filter 'nope'"


def test_corrupt_bytes_fail_and_store_nothing(daemon: Daemon, registry: Registry) -> None:
    push_image(registry, "bad/bytes", "1", [tar_of({"big": bytes(range(256)) * 4000})])
    with FaultProxy(registry, corrupt_blobs=True) as proxy:
        p = daemon.docker("pull", f"{proxy.host}/bad/bytes:1", check=False)
        assert p.returncode != 0
        assert b"verification failed" in p.stderr or b"digest" in p.stderr
    assert daemon.out("images", "-q", "-a") == ""
    blobs = list((daemon.data_root / "content" / "blobs" / "sha256").iterdir())
    assert blobs == []
    assert not any((daemon.data_root / "content" / "ingest").iterdir())


def test_resume_after_registry_cut(daemon: Daemon, registry: Registry) -> None:
    import os
    data = os.urandom(3 << 20)
    img = push_image(registry, "cut/img", "1", [tar_of({"r.bin": data})])
    layer = img["layer_digests"][0]
    size = img["layer_sizes"][0]
    # two faulty responses: the config blob (too small to be cut) and the layer
    with FaultProxy(registry, cut_after_bytes=size // 2, cut_times=2) as proxy:
        out = daemon.out("pull", f"{proxy.host}/cut/img:1")
        assert "Downloaded newer image" in out
        fetched = proxy.bytes_for(layer)
        assert fetched < size + size // 2 + 1, (fetched, size)  # the second request asked only for the rest
        assert proxy.ranges_for(layer), ("the resumed request must use a Range header", proxy.requests, proxy.ranges,
                                         proxy.cuts)


def test_kill9_mid_pull_then_resume(daemon: Daemon, registry: Registry) -> None:
    import os
    import subprocess
    data = os.urandom(4 << 20)
    img = push_image(registry, "slow/img", "1", [tar_of({"r.bin": data})])
    layer, size = img["layer_digests"][0], img["layer_sizes"][0]
    with FaultProxy(registry, delay_per_chunk=0.02, chunk_size=65536) as proxy:
        env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": str(daemon.docker_config)}
        from conftest import DOCKER
        assert DOCKER
        p = subprocess.Popen([DOCKER, "pull", f"{proxy.host}/slow/img:1"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        ingest = daemon.data_root / "content" / "ingest" / ("pull-" + layer[7:]) / "data"
        deadline = time.time() + 30
        while time.time() < deadline and (not ingest.exists() or ingest.stat().st_size < size // 4):
            time.sleep(0.05)
        assert ingest.exists() and ingest.stat().st_size > 0
        daemon.kill9()
        p.wait(30)
        kept = ingest.stat().st_size
        proxy.delay_per_chunk = 0
        proxy.reset()
        daemon.start()
        out = daemon.out("pull", f"{proxy.host}/slow/img:1")
        assert "Downloaded newer image" in out
        assert proxy.bytes_for(layer) <= size - kept + 65536
        assert json.loads(daemon.out("image", "inspect", f"{proxy.host}/slow/img:1"))[0]["Id"] == img["config_digest"]


def test_concurrent_pulls_share_downloads(daemon: Daemon, registry: Registry) -> None:
    import os
    import threading
    shared = tar_of({"shared.bin": os.urandom(1 << 20)})
    a = push_image(registry, "share/a", "1", [shared, tar_of({"a": b"a"})])
    b = push_image(registry, "share/b", "1", [shared, tar_of({"b": b"b"})])
    layer, size = a["layer_digests"][0], a["layer_sizes"][0]
    assert b["layer_digests"][0] == layer
    with FaultProxy(registry, delay_per_chunk=0.01, chunk_size=32768) as proxy:
        errors: list[BaseException] = []

        def pull(name: str) -> None:
            try:
                daemon.docker("pull", f"{proxy.host}/{name}:1")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=pull, args=(n,)) for n in ("share/a", "share/b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert proxy.bytes_for(layer) == size  # one download served both pulls
    ids = set(daemon.out("images", "-q", "--no-trunc").splitlines())
    assert ids == {a["config_digest"], b["config_digest"]}
