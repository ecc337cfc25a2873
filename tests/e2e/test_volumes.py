"""Volumes of the ``local`` driver through the docker CLI and docker-py: named and anonymous volumes, the image's
files copied into a new volume, ``rm -v`` and ``--rm``, in-use conflicts, prune by API version, driver options
(a tmpfs volume), events, ``system df``, and volumes across a daemon restart. (Side by side with a real dockerd:
tests/e2e/test_containers_parity.py.)"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import docker.errors
import pytest

from conftest import FIXTURES, Daemon, busybox_path

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
    reason="containers need root, runc and busybox-static (apt-get install runc busybox-static)")

DOCKERFILE = b"""FROM bb:1
RUN mkdir -p /data/sub && echo hello > /data/sub/f && busybox chown 7:8 /data && busybox chmod 750 /data
VOLUME /data
"""


@pytest.fixture(scope="module")
def d(shared_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
    ctx = tmp_path_factory.mktemp("volctx")
    (ctx / "Dockerfile").write_bytes(DOCKERFILE)
    shared_daemon.docker("build", "-q", "-t", "volimg:1", str(ctx))
    return shared_daemon


@pytest.fixture(autouse=True)
def clean(d: Daemon) -> Iterator[None]:
    yield
    ids = d.out("ps", "-aq").split()
    if ids:
        d.docker("rm", "-f", "-v", *ids, check=False)
    vols = d.out("volume", "ls", "-q").split()
    if vols:
        d.docker("volume", "rm", "-f", *vols, check=False)


def test_named_volume_keeps_data_and_lives_in_the_data_root(d: Daemon) -> None:
    d.out("run", "--rm", "-v", "keep:/v", "bb:1", "busybox", "sh", "-c", "echo kept > /v/f")
    assert d.out("run", "--rm", "-v", "keep:/w:ro", "bb:1", "busybox", "cat", "/w/f") == "kept"
    p = d.docker("run", "--rm", "-v", "keep:/w:ro", "bb:1", "busybox", "touch", "/w/x", check=False)
    assert p.returncode != 0 and b"Read-only file system" in p.stderr
    info = json.loads(d.out("volume", "inspect", "keep"))[0]
    assert info["Mountpoint"] == str(d.data_root / "volumes" / "keep" / "_data")
    assert (d.data_root / "volumes" / "keep" / "_data" / "f").read_text() == "kept\n"
    assert os.stat(d.data_root / "volumes").st_mode & 0o777 == 0o701
    assert os.stat(d.data_root / "volumes" / "keep").st_mode & 0o777 == 0o701
    assert os.stat(d.data_root / "volumes" / "keep" / "_data").st_mode & 0o777 == 0o755
    assert info["Driver"] == "local" and info["Scope"] == "local" and info["Labels"] is None


def test_image_volume_is_anonymous_copied_and_goes_with_rm_v(d: Daemon) -> None:
    cid = d.out("create", "volimg:1", "busybox", "sleep", "300")
    (m,) = json.loads(d.out("inspect", "--format", "{{json .Mounts}}", cid))
    assert m["Type"] == "volume" and m["Destination"] == "/data" and m["Mode"] == "" and m["RW"] is True
    src = Path(m["Source"])
    st = src.stat()  # the image's files, and the directory's owner and mode, copied at create as dockerd does
    assert (src / "sub" / "f").read_text() == "hello\n"
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (7, 8, 0o750)
    vol = json.loads(d.out("volume", "inspect", m["Name"]))[0]
    assert vol["Labels"] == {"com.docker.volume.anonymous": ""}
    d.out("start", cid)
    d.out("rm", "-f", cid)  # without -v the volume stays
    assert d.out("volume", "ls", "-q").split() == [m["Name"]]
    cid = d.out("create", "volimg:1", "busybox", "true")
    name = json.loads(d.out("inspect", "--format", "{{json .Mounts}}", cid))[0]["Name"]
    d.out("rm", "-v", cid)
    assert name not in d.out("volume", "ls", "-q").split()
    d.out("run", "--rm", "volimg:1", "busybox", "true")  # --rm takes the anonymous volumes along
    assert d.out("volume", "ls", "-q").split() == [m["Name"]]
    # a named volume over the same path: copied when new and empty, not with nocopy, never removed by rm -v
    assert d.out("run", "--rm", "-v", "named:/data", "volimg:1", "busybox", "cat", "/data/sub/f") == "hello"
    assert d.out("run", "--rm", "-v", "nc:/data:nocopy", "volimg:1", "busybox", "ls", "/data") == ""
    assert {"named", "nc"} <= set(d.out("volume", "ls", "-q").split())
    # a bind over the image's volume path: no anonymous volume
    before = set(d.out("volume", "ls", "-q").split())
    d.out("run", "--rm", "-v", f"{d.base}:/data", "volimg:1", "busybox", "true")
    assert set(d.out("volume", "ls", "-q").split()) == before


def test_docker_py_volumes(d: Daemon, tmp_path: Path) -> None:
    client = d.client()
    v = client.volumes.create("pyvol", labels={"team": "a"})
    assert v.attrs["Labels"] == {"team": "a"} and v.attrs["Mountpoint"].endswith("/volumes/pyvol/_data")
    assert client.volumes.get("pyvol").name == "pyvol"
    assert [x.name for x in client.volumes.list(filters={"label": "team=a"})] == ["pyvol"]
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("nope")
    # podman's test_mount_preexisting_dir / test_non_existent_workdir: volumes by the docker-py dict
    out = client.containers.run("bb:1", ["busybox", "sh", "-c", "echo data > /bin/../mnt2/f; busybox pwd"],
                                volumes={"pyvol": {"bind": "/mnt2", "mode": "rw"},
                                         str(tmp_path): {"bind": "/host", "mode": "ro"}},
                                working_dir="/does/not/exist", remove=True)
    assert out == b"/does/not/exist\n"
    assert (Path(v.attrs["Mountpoint"]) / "f").read_text() == "data\n"
    c = client.containers.create("bb:1", ["busybox", "sleep", "300"], volumes=["pyvol:/v"])
    with pytest.raises(docker.errors.APIError) as err:
        client.volumes.get("pyvol").remove(force=True)
    assert err.value.status_code == 409
    assert str(err.value.explanation) == f"remove pyvol: volume is in use - [{c.id}]"
    assert [x.id for x in client.containers.list(all=True, filters={"volume": "pyvol"})] == [c.id]
    assert [x.id for x in client.containers.list(all=True, filters={"volume": "/v"})] == [c.id]
    c.remove()
    client.volumes.get("pyvol").remove()
    assert client.volumes.list() == []


def test_prune_by_api_version(d: Daemon) -> None:
    d.out("volume", "create", "named1")
    anon = d.out("volume", "create")
    d.out("volume", "create", "--label", "keep=1", "named2")
    d.out("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "withopts")
    used = d.out("create", "-v", "usedvol:/u", "bb:1", "busybox", "true")
    # 1.51: only the anonymous ones by default
    assert d.out("volume", "prune", "-f").splitlines()[:2] == ["Deleted Volumes:", anon]
    status, body = d.api_json("POST", "/v1.51/volumes/prune")
    assert status == 200 and body == {"VolumesDeleted": [], "SpaceReclaimed": 0}
    status, body = d.api_json("POST", "/v1.51/volumes/prune?filters=" + quote(json.dumps({"label!": ["keep"],
                                                                                             "all": ["true"]})))
    assert status == 200 and body["VolumesDeleted"] == ["named1"]
    status, body = d.api_json("POST", "/v1.41/volumes/prune?filters=" + quote(json.dumps({"all": ["true"]})))
    assert status == 400 and body == {"message": "invalid filter 'all'"}
    # 1.41: every unused one, as dockerd 20.10 (not one with driver options, not one in use)
    status, body = d.api_json("POST", "/v1.41/volumes/prune")
    assert status == 200 and body["VolumesDeleted"] == ["named2"]
    assert sorted(d.out("volume", "ls", "-q").split()) == ["usedvol", "withopts"]
    d.out("rm", used)


def test_tmpfs_volume_mounted_while_in_use(d: Daemon) -> None:
    d.out("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=2m", "tv")
    info = json.loads(d.out("volume", "inspect", "tv"))[0]
    assert info["Options"] == {"device": "tmpfs", "o": "size=2m", "type": "tmpfs"}
    cid = d.out("run", "-d", "-v", "tv:/t", "bb:1", "busybox", "sh", "-c",
                "busybox grep ' /t ' /proc/mounts; echo x > /t/f; echo written; busybox sleep 300")
    data = Path(info["Mountpoint"])
    deadline = time.time() + 30
    while "written" not in d.out("logs", cid) and time.time() < deadline:
        time.sleep(0.1)
    assert d.out("logs", cid).startswith("tmpfs ")
    assert (data / "f").exists()  # the same tmpfs on the host
    d.out("stop", "-t", "0", cid)
    assert not (data / "f").exists()  # unmounted after its last user
    d.out("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=bogusopt", "bad")
    p = d.docker("run", "--rm", "-v", "bad:/x", "bb:1", "busybox", "true", check=False)
    assert p.returncode != 0
    assert (f"error while mounting volume '{d.data_root}/volumes/bad/_data': failed to mount local volume: mount "
            f"tmpfs:{d.data_root}/volumes/bad/_data, data: bogusopt: invalid argument").encode() in p.stderr


def test_events_and_system_df(d: Daemon) -> None:
    since = str(time.time() - 0.5)
    cid = d.out("run", "-d", "-v", "ev:/n", "bb:1", "busybox", "sh", "-c", "echo 12345 > /n/a; sleep 300")
    time.sleep(0.5)
    d.out("stop", "-t", "0", cid)
    d.out("rm", cid)
    d.out("volume", "rm", "ev")
    d.out("volume", "create", "dfv")
    d.out("run", "--rm", "-v", "dfv:/d", "bb:1", "busybox", "sh", "-c", "echo 12345 > /d/a; echo 1 > /d/b")
    d.out("create", "-v", "dfv:/d", "bb:1", "busybox", "true")
    d.out("volume", "prune", "-f")
    lines = d.out("events", "--since", since, "--until", str(time.time()), "--filter", "type=volume", "--format",
                  "{{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}").splitlines()
    seen = [(a, vid, json.loads(attrs)) for a, vid, attrs in (line.split(" ", 2) for line in lines)
            if vid in ("ev", "dfv", "")]
    seen = seen[seen.index(("create", "ev", {"driver": "local"})):]  # not what an earlier test did just before
    assert seen[:4] == [
        ("create", "ev", {"driver": "local"}),
        ("mount", "ev", {"container": cid, "destination": "/n", "driver": "local", "propagation": "",
                         "read/write": "true"}),
        ("unmount", "ev", {"container": cid, "driver": "local"}),
        ("destroy", "ev", {"driver": "local"}),
    ]
    assert seen[-1] == ("prune", "", {"reclaimed": "0"})
    status, df = d.api_json("GET", "/system/df?type=volume")
    assert status == 200
    (vol,) = [v for v in df["Volumes"] if v["Name"] == "dfv"]  # type: ignore[index]
    assert vol["UsageData"] == {"RefCount": 1, "Size": 8}
    rows = d.out("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}")
    assert "Local Volumes 1 1 8B 0B (0%)" in rows.splitlines()


def test_volumes_survive_a_restart(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d").start()
    try:
        d.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        cid = d.out("run", "-d", "-v", "rv:/v", "-v", "/anon", "bb:1", "busybox", "sh", "-c",
                    "echo before > /v/f; sleep 300")
        before = json.loads(d.out("volume", "ls", "--format", "{{json .}}").splitlines()[0])
        d.stop(clean=False)
        d.start()
        assert d.out("volume", "inspect", "--format", "{{.Name}} {{.CreatedAt}}", "rv").split()[0] == "rv"
        assert len(d.out("volume", "ls", "-q").split()) == 2 and before
        p = d.docker("volume", "rm", "rv", check=False)
        assert p.returncode != 0 and f"volume is in use - [{cid}]".encode() in p.stderr
        assert (d.data_root / "volumes" / "rv" / "_data" / "f").read_text() == "before\n"
        assert d.out("inspect", "--format", "{{.State.Running}}", cid) == "true"
        d.out("rm", "-f", "-v", cid)
        assert d.out("volume", "ls", "-q").split() == ["rv"]
    finally:
        d.stop()


def test_tmpfs_mounts(d: Daemon) -> None:
    """``--mount type=tmpfs`` (a mount point in inspect) and ``--tmpfs`` (HostConfig.Tmpfs only), with dockerd's
    default options merged with the given ones."""
    out = d.out("run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=1770", "--tmpfs",
                "/run:size=2m,exec", "bb:1", "busybox", "grep", "-E", " /(t|run) ", "/proc/mounts")
    assert sorted(out.splitlines()) == ["tmpfs /run tmpfs rw,nosuid,nodev,relatime,size=2048k 0 0",
                                        "tmpfs /t tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=1770 0 0"]
    cid = d.out("create", "--mount", "type=tmpfs,dst=/t,readonly", "--tmpfs", "/r", "bb:1", "busybox", "true")
    info = json.loads(d.out("inspect", cid))[0]
    assert info["Mounts"] == [{"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": False,
                               "Propagation": ""}]
    assert info["HostConfig"]["Tmpfs"] == {"/r": ""}
    p = d.docker("run", "--rm", "--tmpfs", "/x:bogus", "bb:1", "busybox", "true", check=False)
    assert p.returncode != 0 and b'Invalid tmpfs option ["bogus"]' in p.stderr


def test_podman_compat_mounts_over_image_directories(d: Daemon) -> None:
    """podman's compat tests test_mount_preexisting_dir and test_non_existent_workdir, through docker-py: a new
    named volume over a directory of the image takes its owner and its files."""
    import io

    from docker.types import Mount

    client = d.client()
    img, _ = client.images.build(fileobj=io.BytesIO(
        b"FROM bb:1\nRUN mkdir -p /workspace && busybox chown 1042:1043 /workspace\n"), rm=True)
    ctr = client.containers.create(img.id, command=["busybox", "stat", "-c", "%u:%g", "/workspace"], detach=True,
                                   mounts=[Mount(source="test_vol", target="/workspace")])
    ctr.start()
    assert ctr.wait()["StatusCode"] == 0
    assert ctr.logs().rstrip() == b"1042:1043"
    ctr.remove()
    img, _ = client.images.build(fileobj=io.BytesIO(
        b"FROM bb:1\nWORKDIR /workspace/scratch\nRUN touch test\n"), rm=True)
    ctr = client.containers.create(img.id, command=["busybox", "stat", "-c", "%n", "/workspace/scratch/test"],
                                   working_dir="/workspace/scratch", detach=True,
                                   mounts=[Mount(source="test_vol2", target="/workspace")])
    ctr.start()
    assert ctr.wait()["StatusCode"] == 0
    assert ctr.logs().rstrip() == b"/workspace/scratch/test"
    ctr.remove()
