"""Containers side by side with a real dockerd 20.10 (Debian's docker.io): inspect's keys, restart, rename, top,
prune and volumes as dockerd answers them.

Both engines run the same containers from the same dockerd-made busybox image (and an image with ``VOLUME``s built
by each from the same Dockerfile), both without a bridge (``--bridge=none``); their answers are compared at API
1.41, dockerd 20.10's, where values are host-independent, and by key where they are not (IDs, paths, times).
At 1.44 and 1.51 (which dockerd 20.10 does not speak) dockwright's keys are dockerd's at 1.41 with the changes the
specs and the version history list. Skipped, with the reason, only where dockerd cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conftest import FIXTURES, Daemon, busybox_path, make_rootfs_tar
from dockerd import Dockerd, dockerd_unavailable

pytestmark = [
    pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable())),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
                       reason="containers need root, runc and busybox-static"),
]

Engine = Daemon | Dockerd

DOCKERFILE = b"""FROM bb:1
RUN mkdir -p /data/sub && echo hello > /data/sub/f && echo top > /data/t && \
busybox chown 7:8 /data && busybox chmod 750 /data
VOLUME /data
VOLUME ["/empty"]
"""
ONBUILD_DOCKERFILE = b"""FROM bb:1
ONBUILD RUN echo hi
SHELL ["/bin/sh", "-xc"]
STOPSIGNAL SIGUSR1
HEALTHCHECK CMD true
EXPOSE 80
"""


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (``HostConfig.LogConfig.Type``); list items as ``[]``."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(value, list):
        for v in value:
            out |= _keys(v, prefix + "[].")
    return out


def _api(engine: Engine, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """An HTTP request to either engine's socket: (status, decoded JSON or text)."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(120)
            s.connect(str(engine.sock))
            self.sock = s

    c = Conn("localhost")
    try:
        data = None if body is None else json.dumps(body).encode()
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw.decode(errors="replace")
    finally:
        c.close()


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Dockerd]]:
    base = tmp_path_factory.mktemp("parity")
    ours = Daemon(base / "d").start()
    real = Dockerd(ours.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(f"dockerd did not start here: {why}")
        ctx = base / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_bytes(DOCKERFILE)
        ctx2 = base / "ctx2"
        ctx2.mkdir()
        (ctx2 / "Dockerfile").write_bytes(ONBUILD_DOCKERFILE)
        for engine in (ours, real):
            engine.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
            engine.docker("build", "-q", "-t", "volimg:1", str(ctx))
            engine.docker("build", "-q", "-t", "obimg:1", str(ctx2))
        yield ours, real
    finally:
        for engine in (ours, real):
            _clean(engine)
        real.stop()
        ours.stop()


def _clean(engine: Engine) -> None:
    ids = engine.docker("ps", "-aq", check=False).stdout.decode().split()
    if ids:
        engine.docker("rm", "-f", "-v", *ids, check=False)
    vols = engine.docker("volume", "ls", "-q", check=False).stdout.decode().split()
    if vols:
        engine.docker("volume", "rm", "-f", *vols, check=False)


@pytest.fixture
def both(engines: tuple[Daemon, Dockerd], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Dockerd]]:
    monkeypatch.setenv("DOCKER_API_VERSION", "1.41")  # dockerd 20.10's: the same version against both
    yield engines
    for engine in engines:
        _clean(engine)


def _inspect(engine: Engine, ref: str, version: str = "1.41") -> dict[str, Any]:
    status, body = _api(engine, "GET", f"/v{version}/containers/{ref}/json")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _comparable_mounts(mounts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A container's mounts without what depends on the host (paths, random volume names)."""
    out = []
    for m in mounts:
        named = m.get("Name") if m["Type"] == "volume" and len(m.get("Name", "")) != 64 else ""
        out.append((m["Type"], named, m["Destination"], m.get("Driver"), m["Mode"], m["RW"], m["Propagation"],
                    sorted(m)))
    return sorted(out)


CASES: dict[str, list[str]] = {
    "run-d": ["run", "-d", "bb:1", "busybox", "sleep", "300"],
    "created": ["create", "bb:1", "busybox", "sleep", "300"],
    "tty": ["run", "-d", "-it", "bb:1", "sh"],
    "rich": ["run", "-d", "-e", "A=1", "-l", "k=v", "--expose", "80", "-w", "/tmp", "-u", "0", "-h", "myhost",
             "--stop-signal", "SIGINT", "--entrypoint", "busybox", "--rm", "bb:1", "sleep", "300"],
    "volumes": ["run", "-d", "-v", "pvol:/data", "-v", "{bind}:/h:ro", "--mount", "type=volume,src=pv2,dst=/m2",
                "--mount", "type=bind,src={bind},dst=/b", "--mount", "type=volume,dst=/anon", "bb:1", "busybox",
                "sleep", "300"],
    "image-volumes": ["create", "volimg:1", "busybox", "sleep", "300"],
    "image-config": ["create", "obimg:1", "busybox", "true"],  # healthcheck, stop signal, ports: not ONBUILD, SHELL
    "tmpfs": ["run", "-d", "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=1770", "--mount",
              "type=tmpfs,dst=/t2,readonly", "--tmpfs", "/run:size=2m,exec", "--tmpfs", "/r2", "bb:1", "busybox",
              "sleep", "300"],
}


def test_inspect_has_dockerds_keys_and_defaults(both: tuple[Daemon, Dockerd], tmp_path: Path) -> None:
    ours, real = both
    bind = tmp_path / "bind"
    bind.mkdir()
    for name, args in CASES.items():
        cids = {e: e.out(*(a.format(bind=bind) for a in args)) for e in (ours, real)}
        got = {e: _inspect(e, cid) for e, cid in cids.items()}
        assert _keys(got[ours]) - {"NetworkSettings"} == _keys(got[real]) - {"NetworkSettings"}, name
        for part in ("Config", "HostConfig"):
            assert _keys(got[ours][part]) == _keys(got[real][part]), (name, part)
        # the values that do not depend on the host or on IDs
        cfg = {e: {k: v for k, v in got[e]["Config"].items() if k != "Hostname"} for e in got}
        assert cfg[ours] == cfg[real], name
        hc = {e: {k: sorted(v) if k == "Binds" and v else v for k, v in got[e]["HostConfig"].items()
                  if k not in ("MaskedPaths",)} for e in got}  # the CLI sends -v binds in a map's order
        assert hc[ours] == hc[real], name
        assert _comparable_mounts(got[ours]["Mounts"]) == _comparable_mounts(got[real]["Mounts"]), name
        assert got[ours]["GraphDriver"]["Name"] == "overlay2"
        assert _keys(got[ours]["GraphDriver"]) == _keys(got[real]["GraphDriver"]), name
        # the real directories of the container's snapshot
        data = got[ours]["GraphDriver"]["Data"]
        assert Path(data["UpperDir"]).is_dir() and Path(data["WorkDir"]).is_dir()
        assert all(Path(p).is_dir() for p in data["LowerDir"].split(":"))
        if got[ours]["State"]["Running"]:
            assert Path(data["MergedDir"], "bin", "busybox").exists()
        # aiodocker reads Config.Tty
        assert got[ours]["Config"]["Tty"] is (name == "tty")
        # docker-py's view: the same attrs
        assert ours.client(version="1.41").containers.get(cids[ours]).attrs["HostConfig"].keys() == \
            got[real]["HostConfig"].keys()


def test_inspect_keys_at_newer_api_versions(both: tuple[Daemon, Dockerd]) -> None:
    """1.42 omits an unset KernelMemory/KernelMemoryTCP (version history); otherwise Config and HostConfig keep
    dockerd's keys at 1.44 and 1.51 (their specs list the same fields)."""
    ours, real = both
    cids = {e: e.out("run", "-d", "bb:1", "busybox", "sleep", "300") for e in (ours, real)}
    base = _inspect(real, cids[real])
    for version in ("1.44", "1.51"):
        got = _inspect(ours, cids[ours], version)
        assert set(got["HostConfig"]) == set(base["HostConfig"]) - {"KernelMemory", "KernelMemoryTCP"}, version
        assert set(got["Config"]) == set(base["Config"]), version
        assert "ImageManifestDescriptor" not in got  # containerd image store only


def test_restart_rename_top_like_dockerd(both: tuple[Daemon, Dockerd]) -> None:
    ours, real = both
    answers: dict[Engine, list[Any]] = {}
    events: dict[Engine, list[tuple[str, str, dict[str, str]]]] = {}
    for e in (ours, real):
        since = str(time.time() - 1)
        e.out("run", "-d", "--name", "r1", "-l", "lab=x", "bb:1", "busybox", "sleep", "300")
        e.out("create", "--name", "s1", "bb:1", "busybox", "true")
        e.out("restart", "-t", "1", "r1")
        out: list[Any] = []
        out.append(_api(e, "POST", "/v1.41/containers/r1/restart?t=abc"))
        out.append(_api(e, "POST", "/v1.41/containers/nope/restart"))
        for q in ("name=s1", "name=/s1", "name=r1", "name=bad%20name", "name=", "name=-x", "name=a"):
            out.append(_api(e, "POST", f"/v1.41/containers/s1/rename?{q}"))
        out.append(_api(e, "POST", "/v1.41/containers/nope/rename?name=zz"))
        out.append(_api(e, "POST", "/v1.41/containers/s1/rename?name=/s2"))
        out.append(_api(e, "GET", "/v1.41/containers/s2/top"))  # not running
        e.out("stop", "-t", "0", "r1")
        e.out("restart", "r1")  # a stopped container: just started
        top = _api(e, "GET", "/v1.41/containers/r1/top")
        out.append((top[0], top[1]["Titles"], [p[-1] for p in top[1]["Processes"]]))
        top = _api(e, "GET", "/v1.41/containers/r1/top?ps_args=-o%20pid,args")
        out.append((top[0], top[1]["Titles"], [p[-1] for p in top[1]["Processes"]]))
        out.append(_api(e, "GET", "/v1.41/containers/r1/top?ps_args=-o%20comm"))
        answers[e] = out
        raw = e.out("events", "--since", since, "--until", str(time.time()), "--format",
                    "{{.Type}} {{.Action}} {{json .Actor.Attributes}}")
        events[e] = [(line.split(" ", 2)[0], line.split(" ", 2)[1], json.loads(line.split(" ", 2)[2]))
                     for line in raw.splitlines()]
    # container IDs in the messages differ: compare with each engine's own IDs replaced
    def norm(e: Engine, value: Any) -> str:
        text = json.dumps(value)
        for cid in e.out("ps", "-aq", "--no-trunc").split():
            text = text.replace(cid, "<id>")
        return text

    assert [norm(ours, a) for a in answers[ours]] == [norm(real, a) for a in answers[real]]
    keep = ("restart", "rename", "top", "start", "stop", "kill", "die")
    seq = {e: [(a, {k: v for k, v in attrs.items() if k != "exitCode"}) for t, a, attrs in ev
               if t == "container" and a in keep and attrs.get("name") in ("r1", "s1", "s2")]
           for e, ev in events.items()}
    assert seq[ours] == seq[real]
    # from API 1.42 restart (and stop) take a signal, which dockerd 20.10 (1.41) ignores
    since = str(time.time())
    ours.out("run", "-d", "--name", "sig", "bb:1", "busybox", "sleep", "300")
    assert _api(ours, "POST", "/v1.51/containers/sig/restart?signal=SIGKILL&t=30")[0] == 204
    kills = ours.out("events", "--since", since, "--until", str(time.time()), "--filter", "event=kill", "--format",
                     "{{.Actor.Attributes.signal}}").split()
    assert kills == ["9"]
    # an auto-removed container survives its restart (dockerd turns AutoRemove off for the stop)
    for e in (ours, real):
        e.out("run", "-d", "--rm", "--name", "autorm", "bb:1", "busybox", "sleep", "300")
        e.out("restart", "-t", "0", "autorm")
        assert e.out("inspect", "--format", "{{.State.Running}} {{.HostConfig.AutoRemove}}", "autorm") == \
            "true true"


def test_prune_like_dockerd(both: tuple[Daemon, Dockerd]) -> None:
    ours, real = both
    answers: dict[Engine, list[Any]] = {}
    for e in (ours, real):
        e.out("create", "--name", "pr1", "-l", "keep=1", "bb:1", "busybox", "true")
        e.out("create", "--name", "pr2", "bb:1", "busybox", "true")
        e.out("run", "--name", "pr3", "bb:1", "busybox", "sh", "-c", "echo hi > /f")
        e.out("run", "-d", "--name", "pr4", "bb:1", "busybox", "sleep", "300")
        out: list[Any] = []
        for f in ({"bogus": {"x": True}}, {"until": {"1h": True}}, {"label!": {"keep": True}},
                  {"label": {"keep=2": True}}, None, None):
            q = "" if f is None else "?filters=" + quote(json.dumps(f))
            status, body = _api(e, "POST", f"/v1.41/containers/prune{q}")
            if status == 200:
                body = {"n": len(body["ContainersDeleted"] or []), "null": body["ContainersDeleted"] is None,
                        "SpaceReclaimed": body["SpaceReclaimed"]}
            else:
                body = body["message"].lower()  # dockerd 20.10 capitalises "Invalid filter"; 28 does not
            out.append((status, body))
        out.append(sorted(e.out("ps", "-a", "--format", "{{.Names}}").split()))
        answers[e] = out
    assert answers[ours] == answers[real]


def test_volume_api_like_dockerd(both: tuple[Daemon, Dockerd]) -> None:
    ours, real = both
    answers: dict[Engine, list[Any]] = {}

    def shape(status: int, body: Any) -> Any:
        if isinstance(body, dict) and "Mountpoint" in body:
            return status, sorted(body), body["Driver"], body["Options"], body["Scope"], len(body["Name"])
        return status, body

    for e in (ours, real):
        out: list[Any] = []
        for body in ({"Name": "v1", "Labels": {"a": "b"}}, {"Name": "v1", "Labels": {"c": "d"}},
                     {"Name": "v2", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}},
                     {"Name": "v3", "Driver": "nosuch"}, {"Name": "bad name"}, {"Name": "a"},
                     {"Name": "v4", "DriverOpts": {"bogus": "1"}}, {"Name": "v4", "DriverOpts": {"type": "tmpfs"}},
                     {"Name": "v4", "DriverOpts": {"device": "tmpfs"}}, {"Name": "v6", "Labels": {"x": ""}}):
            out.append(shape(*_api(e, "POST", "/v1.41/volumes/create", body)))
        out.append(_api(e, "GET", "/v1.41/volumes/v1")[1]["Labels"])
        out.append(_api(e, "GET", "/v1.41/volumes/nope"))
        out.append(_api(e, "DELETE", "/v1.41/volumes/nope"))
        out.append(_api(e, "DELETE", "/v1.41/volumes/nope?force=1"))
        cid = e.out("run", "-d", "-v", "v1:/data", "bb:1", "busybox", "sleep", "300")
        status, body = _api(e, "DELETE", "/v1.41/volumes/v1")
        out.append((status, body["message"].replace(cid, "<id>")))
        for f in ({"dangling": {"true": True}}, {"dangling": {"false": True}}, {"name": {"v": True}},
                  {"label": {"a=b": True}}, {"driver": {"local": True}}, {"dangling": {"maybe": True}}):
            status, body = _api(e, "GET", "/v1.41/volumes?filters=" + quote(json.dumps(f)))
            out.append((status, sorted(v["Name"] for v in body["Volumes"]) if status == 200
                        else body["message"].lower()))
        e.out("run", "--rm", "-v", "dfv:/d", "bb:1", "busybox", "sh", "-c", "echo 12345 > /d/a; echo 1 > /d/b")
        status, df = _api(e, "GET", "/v1.41/system/df")
        out.append(sorted((v["Name"], v["UsageData"], sorted(v)) for v in df["Volumes"]))
        out.append(e.out("volume", "ls"))
        out.append(e.out("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}}")
                   .splitlines()[2])
        e.out("stop", "-t", "0", cid)
        e.out("rm", cid)
        status, body = _api(e, "POST", "/v1.41/volumes/prune?filters=" + quote(json.dumps({"label": {"a": True}})))
        out.append((status, body))
        status, body = _api(e, "POST", "/v1.41/volumes/prune")  # 1.41: every unused one (not those with options)
        out.append((status, sorted(body["VolumesDeleted"]), body["SpaceReclaimed"]))
        out.append(e.out("volume", "ls", "-q"))
        answers[e] = out
    for i, (a, b) in enumerate(zip(answers[ours], answers[real], strict=True)):
        assert a == b, i


def test_anonymous_volumes_and_copy_like_dockerd(both: tuple[Daemon, Dockerd]) -> None:
    ours, real = both
    answers: dict[Engine, list[Any]] = {}
    for e in (ours, real):
        out: list[Any] = []
        cid = e.out("create", "volimg:1", "busybox", "sleep", "300")
        mounts = {m["Destination"]: m for m in _inspect(e, cid)["Mounts"]}
        data = Path(mounts["/data"]["Source"])
        st = data.stat()  # copied at create, the directory's owner and mode with the files
        out.append((sorted(os.listdir(data)), st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)))
        out.append(sorted(os.listdir(mounts["/empty"]["Source"])))
        e.out("start", cid)
        e.out("run", "--rm", "-v", "cp1:/data", "volimg:1", "busybox", "cat", "/data/sub/f")
        out.append(e.out("run", "--rm", "-v", "cp1:/data:nocopy", "volimg:1", "busybox", "ls", "/data"))
        out.append(e.out("run", "--rm", "-v", "cp2:/data:nocopy", "volimg:1", "busybox", "ls", "/data"))
        out.append(len(e.out("volume", "ls", "-q").split()))  # --rm removed the anonymous ones
        e.out("rm", "-f", "-v", cid)
        out.append(sorted(e.out("volume", "ls", "-q").split()))  # -v: the anonymous ones went
        bad = _api(e, "POST", "/v1.41/containers/create",
                   {"Image": "bb:1", "Cmd": ["true"], "HostConfig": {"Binds": ["v1:/b", "v3:/b"]}})
        out.append(bad)
        for b in ("foo", ":/b", "/a:/b:xyz", "/a:/", "v1:/b:rw,ro", "a:/x", "/a:/b:c:d", "/a:/b:nocopy", "a:b"):
            out.append(_api(e, "POST", "/v1.41/containers/create",
                            {"Image": "bb:1", "Cmd": ["true"], "HostConfig": {"Binds": [b]}}))
        for m in ({"Type": "bind", "Source": "/nonexist/x", "Target": "/b"},
                  {"Type": "volume", "Target": "/b", "ReadOnly": True}, {"Type": "volume", "Source": "vx"},
                  {"Type": "foo", "Target": "/b"}, {"Type": "bind", "Source": "/srv", "Target": "/b",
                                                     "BindOptions": {"Propagation": "bogus"}}):
            out.append(_api(e, "POST", "/v1.41/containers/create",
                            {"Image": "bb:1", "Cmd": ["true"], "HostConfig": {"Mounts": [m]}}))
        answers[e] = out
    assert answers[ours][:6] == answers[real][:6]
    # the errors: dockerd's messages; dockwright answers an invalid Binds entry with dockerd 20.10's status too
    assert answers[ours][6:] == answers[real][6:]


def test_tmpfs_mounts_like_dockerd(both: tuple[Daemon, Dockerd]) -> None:
    """``--mount type=tmpfs`` and ``--tmpfs``: the same mounts (options as the kernel shows them) and errors."""
    ours, real = both
    answers: dict[Engine, list[Any]] = {}
    for e in (ours, real):
        out: list[Any] = []
        out.append(e.out("run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=1770",
                         "--mount", "type=tmpfs,dst=/t2,readonly", "--tmpfs", "/run:size=2m,exec", "--tmpfs", "/r2",
                         "--tmpfs", "/dev/shm:size=1m", "bb:1", "busybox", "grep", "-E",
                         " /(t|t2|run|r2|dev/shm) ", "/proc/mounts").splitlines())
        out[-1].sort()  # the order of mounts at the same depth is dockerd's map order
        for hc in ({"Mounts": [{"Type": "tmpfs", "Source": "x", "Target": "/t"}]}, {"Tmpfs": {"t": ""}},
                   {"Tmpfs": {"/t": ""}, "Binds": ["/srv:/t"]}):
            out.append(_api(e, "POST", "/v1.41/containers/create", {"Image": "bb:1", "Cmd": ["true"],
                                                                     "HostConfig": hc}))
        answers[e] = out
    assert answers[ours] == answers[real]


def test_bind_of_the_daemon_root_like_dockerd(both: tuple[Daemon, Dockerd]) -> None:
    """A bind whose source holds the daemon's root is rslave, and refuses a private propagation."""
    ours, real = both
    answers: dict[Engine, list[Any]] = {}
    for e, root in ((ours, str(ours.data_root)), (real, str(real.base / "root"))):
        out: list[Any] = []
        cid = e.out("create", "-v", "/:/host", "--mount", "type=bind,src=/,dst=/h2", "bb:1", "busybox", "true")
        out.append(sorted((m["Destination"], m["Mode"], m["Propagation"]) for m in _inspect(e, cid)["Mounts"]))
        for hc in ({"Binds": ["/:/host:rprivate"]}, {"Binds": ["/:/host:rshared"]},
                   {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h", "BindOptions": {"Propagation":
                                                                                                "private"}}]}):
            status, body = _api(e, "POST", "/v1.41/containers/create", {"Image": "bb:1", "Cmd": ["true"],
                                                                         "HostConfig": hc})
            out.append((status, body["message"].replace(root, "<root>") if status != 201 else ""))
        answers[e] = out
    assert answers[ours] == answers[real]


def test_run_user_groups_and_list_command_quoting(daemon: Daemon) -> None:
    """As dockerd 20.10.24: the primary group is a supplementary group too (`id` shows groups=), and the list's
    Command quotes the arguments that have a space."""
    rootfs = make_rootfs_tar({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
                              "etc/group": b"root:x:0:\nnogroup:x:65534:\n"}, applets=("sh", "id", "true"))
    daemon.out("import", "-c", 'CMD ["sh"]', "-c", "ENV PATH=/bin", "-", "grp:1", input=rootfs)
    assert daemon.out("run", "--rm", "grp:1", "id") == "uid=0(root) gid=0(root) groups=0(root)"
    assert daemon.out("run", "--rm", "-u", "nobody", "grp:1", "id") == \
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    cid = daemon.out("create", "grp:1", "sh", "-c", "exit 3")
    st, rows = daemon.api_json("GET", "/containers/json?all=1")
    assert [r["Command"] for r in rows if r["Id"] == cid] == ["sh -c 'exit 3'"]
    daemon.out("rm", cid)
