"""Containers in runc on overlayfs and docker commit, through the docker CLI and docker-py."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from conftest import FIXTURES, Daemon, busybox_path, make_rootfs_tar

APPLETS = ("sh", "ls", "cat", "echo", "true", "false", "sleep", "rm", "mkdir", "id", "env", "pwd", "hostname",
           "touch", "test", "[")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
    reason="containers need root, runc and busybox-static (apt-get install runc busybox-static)")


def _bb(d: Daemon, name: str = "bb:1") -> str:
    rootfs = make_rootfs_tar({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
                              "etc/group": b"root:x:0:\nnogroup:x:65534:\n"}, applets=APPLETS)
    return d.out("import", "-c", "CMD [\"sh\"]", "-c", "ENV PATH=/bin", "-", name, input=rootfs)


def test_run_streams_and_exit_code(shared_daemon: Daemon) -> None:
    _bb(shared_daemon)
    p = shared_daemon.docker("run", "--rm", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout == b"out\n" and p.stderr == b"err\n"
    assert shared_daemon.out("ps", "-a", "-q") == ""  # --rm removed it
    p = shared_daemon.docker("run", "-i", "--rm", "bb:1", "cat", input=b"from stdin\n")
    assert p.stdout == b"from stdin\n"
    out = shared_daemon.out("run", "--rm", "--user", "nobody", "-w", "/etc", "-e", "X=1", "--hostname", "h1",
                            "bb:1", "sh", "-c", "id -u; pwd; echo $X; hostname")
    assert out.splitlines() == ["65534", "/etc", "1", "h1"]


def test_detached_logs_stop_rm_ps(shared_daemon: Daemon) -> None:
    d = shared_daemon
    _bb(d)
    cid = d.out("run", "-d", "--name", "sleeper", "--label", "role=test", "bb:1", "sh", "-c",
                "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done")
    time.sleep(0.5)
    assert d.out("logs", "sleeper") == "started"
    assert d.out("ps", "-q", "--no-trunc") .splitlines() == [cid]
    assert d.out("ps", "-q", "--no-trunc", "--filter", "label=role=test").splitlines() == [cid]
    assert d.out("ps", "-q", "--no-trunc", "--filter", "status=exited") == ""
    logs = subprocess.Popen(["docker", "-H", d.host, "logs", "-f", "sleeper"], stdout=subprocess.PIPE,
                            env={**os.environ, "DOCKER_CONFIG": str(d.docker_config)})
    d.docker("stop", "sleeper")
    out, _ = logs.communicate(timeout=30)
    assert out.decode().splitlines() == ["started", "bye"]
    insp = json.loads(d.out("inspect", "sleeper"))[0]
    assert insp["State"]["Status"] == "exited" and insp["State"]["ExitCode"] == 0
    assert d.out("ps", "-a", "-q", "--no-trunc", "--filter", "status=exited", "--filter", "name=sleeper") == cid
    p = d.docker("rmi", "bb:1", check=False)
    assert p.returncode != 0 and b"is using its referenced image" in p.stderr
    d.docker("rm", "sleeper")
    assert d.out("ps", "-a", "-q") == ""
    p = d.docker("rm", "sleeper", check=False)
    assert p.returncode != 0 and b"No such container: sleeper" in p.stderr


def test_create_start_attach_kill_pause(shared_daemon: Daemon) -> None:
    d = shared_daemon
    _bb(d)
    d.docker("create", "--name", "c1", "bb:1", "sh", "-c", "echo hello from c1")
    p = d.docker("start", "-a", "c1")
    assert p.stdout == b"hello from c1\n"
    p = d.docker("create", "--name", "c1", "bb:1", check=False)
    assert p.returncode != 0 and b'The container name "/c1" is already in use' in p.stderr
    p = d.docker("create", "nosuch/image:1", check=False)
    assert p.returncode != 0
    d.docker("run", "-d", "--name", "c2", "bb:1", "sleep", "60")
    d.docker("pause", "c2")
    assert json.loads(d.out("inspect", "c2"))[0]["State"]["Paused"] is True
    d.docker("unpause", "c2")
    d.docker("kill", "c2")
    assert d.out("wait", "c2") == "137"
    p = d.docker("rm", "-f", "c1", "c2")
    assert p.returncode == 0


def test_diff_export_commit(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    _bb(d)
    d.docker("run", "--name", "work", "bb:1", "sh", "-c",
             "mkdir -p /data && echo hi > /data/new.txt && rm /bin/ls && echo changed > /etc/group")
    changes = d.out("diff", "work").splitlines()
    assert "A /data/new.txt" in changes and "D /bin/ls" in changes and "C /etc/group" in changes
    exported = d.docker("export", "work").stdout
    names = tarfile.open(fileobj=io.BytesIO(exported)).getnames()
    assert any(n.endswith("data/new.txt") for n in names) and not any(n.endswith("bin/ls") for n in names)
    image_id = d.out("commit", "-m", "my commit", "-a", "Tester <t@example.com>", "--change", "ENV COMMITTED=yes",
                     "--change", "CMD [\"cat\", \"/data/new.txt\"]", "work", "committed/img:1")
    insp = json.loads(d.out("image", "inspect", "committed/img:1"))[0]
    assert insp["Id"] == image_id and insp["Comment"] == "my commit" and insp["Author"] == "Tester <t@example.com>"
    assert "COMMITTED=yes" in insp["Config"]["Env"] and insp["Config"]["Cmd"] == ["cat", "/data/new.txt"]
    assert len(insp["RootFS"]["Layers"]) == 2
    assert d.out("run", "--rm", "committed/img:1") == "hi"
    p = d.docker("run", "--rm", "committed/img:1", "ls", "/", check=False)
    assert p.returncode != 0  # /bin/ls stays deleted (a whiteout in the committed layer)
    assert d.out("run", "--rm", "committed/img:1", "cat", "/etc/group") == "changed"
    hist = json.loads(d.out("history", "--format", "{{json .}}", "--no-trunc", "committed/img:1").splitlines()[0])
    assert hist["Comment"] == "my commit"
    # a running container, untagged, via docker-py
    c = d.client()
    ctr = c.containers.run("bb:1", ["sh", "-c", "echo running > /r.txt; sleep 30"], detach=True)
    time.sleep(0.3)
    img = ctr.commit(changes=["LABEL a=b"])
    assert img.tags == [] and img.labels == {"a": "b"}
    assert ctr.status in ("created", "running") and c.containers.get(ctr.id).attrs["State"]["Running"]
    res = c.api.commit(ctr.id, repository="py/commit", tag="2", message="py", changes=["ENV Z=1"])
    assert c.images.get("py/commit:2").id == res["Id"]
    assert c.containers.run("py/commit:2", ["cat", "/r.txt"], remove=True) == b"running\n"
    bb_id = c.images.get("bb:1").id
    with pytest.raises(docker.errors.APIError) as exc:
        c.api.remove_image("bb:1")
    assert exc.value.status_code == 409 and "is using its referenced image" in str(exc.value)
    with pytest.raises(docker.errors.APIError) as exc:
        c.api.remove_image(bb_id, force=True)
    # dependent child images (the commits) are checked first, then the running container: both hard conflicts
    assert exc.value.status_code == 409 and "(cannot be forced)" in str(exc.value)
    ctr.remove(force=True)
    c.api.remove_image(img.id)
    d.docker("rm", "-f", "work")


def test_docker_py_containers(shared_daemon: Daemon) -> None:
    d = shared_daemon
    _bb(d)
    c = d.client()
    assert c.containers.run("bb:1", ["echo", "hi from py"], remove=True) == b"hi from py\n"
    api = c.api
    cont = api.create_container("bb:1", ["sh", "-c", "echo a; echo b >&2; exit 2"])
    api.start(cont)
    assert api.wait(cont)["StatusCode"] == 2
    assert api.logs(cont, stdout=True, stderr=False) == b"a\n"
    assert api.logs(cont, stdout=False, stderr=True) == b"b\n"
    assert api.containers(all=True, filters={"id": cont["Id"]})[0]["State"] == "exited"
    api.remove_container(cont)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cont["Id"])
    info = api.info()
    assert info["Containers"] == len(api.containers(all=True))
    df = api.df()
    assert isinstance(df["Containers"], list)


def test_short_lived_runs_never_hang_and_always_die(shared_daemon: Daemon) -> None:
    """Regression: docker-py's ``containers.run(..., remove=True)`` (create, start, ``logs(follow)``, ``wait``,
    ``DELETE``, then read the logs) hung when the DELETE came while the daemon was still handling the exit: the
    removal cancelled the exit handling after the state said "exited" but before the exit event was set, so the
    log follow never ended (and no ``die`` event was sent). Short-lived containers, with and without output,
    from docker-py and ``docker run --rm`` at once, for a few seconds."""
    import threading

    d = shared_daemon
    image = "stress/bb:1"
    _bb(d, image)
    since = time.time() - 1
    runs = [(["echo", "hi"], b"hi\n"), (["true"], b""), (["sh", "-c", "echo out; echo err >&2"], b"out\n"),
            (["sh", "-c", "exit 0"], b"")]
    deadline = time.monotonic() + 4.0
    errors: list[str] = []
    done = {"py": 0, "cli": 0}

    def py_worker(k: int) -> None:
        c = d.client()
        i = k
        while time.monotonic() < deadline:
            cmd, expected = runs[i % len(runs)]
            i += 1
            try:
                out = c.containers.run(image, cmd, remove=True)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"docker-py run {cmd}: {exc!r}")
                return
            if out != expected:
                errors.append(f"docker-py run {cmd}: {out!r} != {expected!r}")
            done["py"] += 1

    def cli_worker() -> None:
        while time.monotonic() < deadline:
            p = d.docker("run", "--rm", image, "sh", "-c", "echo cli", check=False, timeout=30)
            if p.returncode != 0 or p.stdout != b"cli\n":
                errors.append(f"docker run --rm: {p.returncode} {p.stdout!r} {p.stderr!r}")
            done["cli"] += 1

    workers = [threading.Thread(target=py_worker, args=(k,), daemon=True) for k in range(3)]
    workers.append(threading.Thread(target=cli_worker, daemon=True))
    for t in workers:
        t.start()
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()) + 30)  # a run takes well under a second
    assert not any(t.is_alive() for t in workers), f"a run hung (log follow or wait never ended); done: {done}"
    assert not errors, errors
    assert done["py"] >= 3 and done["cli"] >= 1, done
    events = d.client().events(since=since, until=time.time(), decode=True,
                               filters={"type": "container", "image": image})
    actions: dict[str, list[str]] = {}
    for e in events:
        actions.setdefault(e["id"], []).append(e["Action"])
    assert len(actions) == done["py"] + done["cli"]
    wrong = {cid[:12]: acts for cid, acts in actions.items() if acts[-2:] != ["die", "destroy"]}
    assert not wrong, f"containers not ending with die, destroy: {wrong}"
    assert d.out("ps", "-aq", "--filter", f"ancestor={image}") == ""


def test_output_of_a_short_run_survives_a_slow_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (one CI run: docker-py's ``containers.run(["echo", "hi"], remove=True)`` returned ``b""``): the
    shim made the container's log only after reporting the pid, so on a loaded host the start could answer, and
    the container run and exit, before the log existed. docker-py's ``logs(follow)``, sent right after the start,
    then read the log by name, polling for it, and when its ``wait`` and ``DELETE`` came first the removal took
    the directory and the follow ended with nothing. As dockerd (its logger is started before the task), the log
    exists before the container can run and a logs request after the start holds it. Here every shim sleeps 1 s
    after its pid report (``DOCKWRIGHT_TEST_SHIM_STALL``), as a loaded host can make it wait."""
    monkeypatch.setenv("DOCKWRIGHT_TEST_SHIM_STALL", "1")  # the daemon passes its environment to the shims
    d = Daemon(tmp_path / "d").start()
    try:
        _bb(d)
        c = d.client()
        api = c.api
        for _ in range(3):
            cont = api.create_container("bb:1", ["echo", "hi"])
            api.start(cont)
            # the shim has not run since its report: the log exists all the same
            assert Path(api.inspect_container(cont)["LogPath"]).is_file()
            # docker-py's run: logs(follow) right after the start, wait, remove, and only then read the follow
            stream = api.logs(cont, stdout=True, stderr=False, stream=True, follow=True)
            assert api.wait(cont)["StatusCode"] == 0
            api.remove_container(cont)
            assert b"".join(stream) == b"hi\n"
        assert c.containers.run("bb:1", ["sh", "-c", "echo out; echo err >&2"], remove=True) == b"out\n"
    finally:
        d.stop()


def test_waits_and_log_follows_end_with_the_container(shared_daemon: Daemon) -> None:
    """dockerd's semantics: ``wait?condition=removed`` of an AutoRemove container gives its exit code,
    ``next-exit`` and ``logs --follow`` end when the container is removed; bad waits are HTTP errors."""
    d = shared_daemon
    _bb(d)
    c = d.client()
    api = c.api
    # AutoRemove: `wait?condition=removed` registered before start returns the exit code once it is gone
    cont = api.create_container("bb:1", ["sh", "-c", "exit 4"], host_config=api.create_host_config(auto_remove=True))
    cid = cont["Id"]
    import threading

    def wait_while(ref: object, condition: str, action: Any) -> dict[str, object]:
        result: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: result.update(api.wait(ref, condition=condition)), daemon=True)
        waiter.start()
        time.sleep(0.2)
        action(ref)
        waiter.join(30)
        return result

    result = wait_while(cid, "removed", api.start)
    assert result.get("StatusCode") == 4, result
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)
    # next-exit on a created container ends when it is removed (as dockerd's waiters do)
    result = wait_while(api.create_container("bb:1", ["true"]), "next-exit", api.remove_container)
    assert result.get("StatusCode") == 0, result
    # a log follower of a running container ends when it is force-removed
    cont = api.create_container("bb:1", ["sh", "-c", "echo up; while true; do sleep 0.1; done"])
    api.start(cont)
    stream = api.logs(cont, stream=True, follow=True)
    assert next(stream) == b"up\n"
    api.remove_container(cont, force=True)
    assert list(stream) == []
    status, _ = d.api_json("POST", "/containers/nonexistent/wait")
    assert status == 404
    status, _ = d.api_json("POST", f"/containers/{cont['Id']}/wait?condition=bogus")
    assert status == 400


def test_fixture_whiteouts_in_a_container(shared_daemon: Daemon) -> None:
    d = shared_daemon
    d.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-whiteouts.tar"))
    assert d.out("run", "--rm", "fixture/whiteouts:1") == "changed"
    out = d.out("run", "--rm", "fixture/whiteouts:1", "sh", "-c", "ls /data; ls /data/sub")
    assert out.split() == ["a", "sub", "n"]


def test_restart_keeps_ps_truthful(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d").start()
    try:
        _bb(d)
        cid = d.out("run", "-d", "bb:1", "sleep", "300")
        short = d.out("run", "-d", "bb:1", "sh", "-c", "sleep 1; exit 4")
        d.stop(clean=False)  # the containers outlive the daemon
        time.sleep(1.5)
        d.start()
        assert d.out("ps", "-q", "--no-trunc") == cid
        st = json.loads(d.out("inspect", short))[0]["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 4
        d.docker("rm", "-f", cid, short)
    finally:
        d.stop()


def test_kill9_during_commit_leaves_no_half_image(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d").start()
    try:
        _bb(d)
        d.docker("run", "--name", "big", "bb:1", "sh", "-c",
                 "mkdir /big && i=0; while [ $i -lt 40 ]; do head -c 4000000 /dev/urandom > /big/f$i; i=$((i+1)); done")
        before = sorted(d.out("images", "-a", "-q", "--no-trunc").splitlines())
        import threading
        t = threading.Thread(target=lambda: d.docker("commit", "big", "half/commit:1", check=False))
        t.start()
        ingest = d.data_root / "content" / "ingest"
        deadline = time.time() + 20
        while time.time() < deadline and not any(ingest.iterdir()):
            time.sleep(0.01)
        d.kill9()
        t.join(30)
        d.start()
        assert sorted(d.out("images", "-a", "-q", "--no-trunc").splitlines()) == before
        assert not any(ingest.iterdir())
        # the container is still there and can be committed now
        assert d.out("commit", "big", "whole/commit:1").startswith("sha256:")
    finally:
        d.stop()
