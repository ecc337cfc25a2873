"""Who can reach the daemon and its data: the unix socket's mode and group (dockerd's ``-G``/``group``), and the
modes of the data root that keep unprivileged users away from running containers' rootfs (CVE-2021-41091).

Every check of what another user can do runs that user for real (``setpriv``), from a base directory that
everyone can traverse, so that a refusal comes from dockwright's modes and not from pytest's private tmp dirs.
"""

from __future__ import annotations

import grp
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DOCKER, Daemon, busybox_path, make_rootfs_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv (util-linux) to act as other users")

SETPRIV = shutil.which("setpriv") or "setpriv"
NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def as_user(ids: list[str], *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with the given setpriv identity (e.g. :data:`NOBODY`), capturing text output."""
    # setpriv keeps its capabilities until its own execve, so that exec would find a path no unprivileged user can
    # reach: an unprivileged shell does the exec instead
    cmd = ("sh", "-c", 'exec "$0" "$@"', *cmd)
    return subprocess.run([SETPRIV, *ids, *cmd], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", **(env or {})})


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A base directory every user can traverse (``/tmp/dw-access-…``, 0755), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="dw-access-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def test_group() -> Iterator[str]:
    name = f"dwt{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture
def member(test_group: str) -> Iterator[str]:
    """A user whose only supplementary group is ``test_group``."""
    name = f"dwu{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--no-user-group", "--gid", "nogroup", "--groups", test_group,
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _docker_version(d: Daemon, ids: list[str]) -> subprocess.CompletedProcess[str]:
    if DOCKER is None:
        pytest.skip("no docker CLI")
    return as_user(ids, DOCKER, "version", "--format", "{{.Server.Version}}",
                   env={"DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.docker_config)})


# ---- the unix socket ------------------------------------------------------------------------------------------

def test_socket_group_members_connect_others_do_not(open_base: Path, test_group: str, member: str) -> None:
    d = Daemon(open_base / "d", "-G", test_group).start()
    try:
        st = os.stat(d.sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam(test_group).gr_gid)
        ok = _docker_version(d, [f"--reuid={member}", "--regid=nogroup", "--init-groups"])
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == d.out("version", "--format", "{{.Server.Version}}")
        refused = _docker_version(d, NOBODY)
        assert refused.returncode != 0
        assert "permission denied while trying to connect to the Docker daemon socket" in refused.stderr
        assert "could not change group" not in d.log()
    finally:
        d.stop()


def test_socket_default_group_docker_missing_is_a_warning(tmp_path: Path) -> None:
    try:
        docker_gid: int | None = grp.getgrnam("docker").gr_gid
    except KeyError:
        docker_gid = None
    d = Daemon(tmp_path / "d").start()
    try:
        st = os.stat(d.sock)
        assert stat.S_IMODE(st.st_mode) == 0o660
        if docker_gid is None:
            assert st.st_gid == os.getgid()
            assert f"could not change group {d.sock} to docker: group docker not found" in d.log()
        else:
            assert st.st_gid == docker_gid
    finally:
        d.stop()


def test_socket_numeric_group_and_daemon_json_group(tmp_path: Path, test_group: str) -> None:
    d = Daemon(tmp_path / "n", "-G", "4242").start()  # a number needs no group entry (dockerd's lookupGID)
    try:
        assert os.stat(d.sock).st_gid == 4242
    finally:
        d.stop()
    d = Daemon(tmp_path / "j")
    d.base.mkdir(parents=True, exist_ok=True)
    (d.base / "daemon.json").write_text(json.dumps({"group": test_group}))
    d.start()
    try:
        assert os.stat(d.sock).st_gid == grp.getgrnam(test_group).gr_gid
    finally:
        d.stop()


def _serve_fails(tmp_path: Path, *args: str, daemon_json: dict[str, object] | None = None) -> str:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps(daemon_json or {}))
    p = subprocess.run([sys.executable, "-m", "dockwright.cli.main", "serve", "-H", f"unix://{tmp_path}/s.sock",
                        "--data-root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "exec"),
                        "--config-file", str(cfg), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert not (tmp_path / "s.sock").exists()
    return p.stderr


def test_socket_group_that_does_not_exist_stops_the_daemon(tmp_path: Path, test_group: str) -> None:
    err = _serve_fails(tmp_path, "-G", "no-such-group-dw")
    assert "failed to load listeners: group no-such-group-dw not found" in err
    err = _serve_fails(tmp_path, "-G", test_group, daemon_json={"group": test_group})
    assert (f"the following directives are specified both as a flag and in the configuration file: group: "
            f"(from flag: {test_group}, from file: {test_group})") in err


# ---- the data root --------------------------------------------------------------------------------------------

def _setuid_image(d: Daemon) -> None:
    """busybox with ``sleep``, plus ``bin/id``: the host's ``id``, set-user-ID root (what CVE-2021-41091 ran)."""
    base = make_rootfs_tar(applets=("sh", "sleep", "true"))
    idbin = Path(shutil.which("id") or "/usr/bin/id").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base)) as src, tarfile.open(fileobj=buf, mode="w") as tf:
        for m in src.getmembers():
            tf.addfile(m, src.extractfile(m) if m.isfile() else None)
        ti = tarfile.TarInfo("bin/id")
        ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(idbin), 0o4755, 0, 0, 1700000000
        tf.addfile(ti, io.BytesIO(idbin))
    d.docker("import", "-", "suid:1", input=buf.getvalue())


needs_containers = pytest.mark.skipif(shutil.which("runc") is None or busybox_path() is None,
                                      reason="containers need runc and busybox-static")


@needs_containers
def test_running_container_rootfs_is_out_of_reach_of_other_users(open_base: Path) -> None:
    from conftest import overlay_or_skip
    overlay_or_skip(open_base)
    d = Daemon(open_base / "d").start()
    try:
        _setuid_image(d)
        cid = d.out("run", "-d", "suid:1", "sleep", "300")
        root = d.data_root
        rootfs = root / "containers" / cid / "rootfs"
        suid = rootfs / "bin" / "id"
        st = os.stat(suid)
        assert st.st_uid == 0 and st.st_mode & stat.S_ISUID  # the container sees a set-user-ID root binary

        # dockerd's modes
        assert _mode(root) == 0o710
        assert _mode(root / "containers") == 0o710 and _mode(root / "containers" / cid) == 0o710
        assert _mode(root / "containers" / cid / "bundle") == 0o700
        assert _mode(root / "snapshots") == 0o710
        for private in ("content", "content/blobs", "content/blobs/sha256", "content/ingest", "tmp"):
            assert _mode(root / private) == 0o700, private
        for db in [root / "metadata.db", root / "snapshots" / "metadata.db",
                   *root.glob("metadata.db-*"), *root.glob("snapshots/metadata.db-*")]:
            assert _mode(db) == 0o600, db
        assert _mode(root / "dockwright.lock") == 0o600
        assert _mode(d.exec_root) == 0o700

        # as nobody: the base is reachable (so what follows is the data root's doing) ...
        assert as_user(NOBODY, "stat", str(open_base / "d")).returncode == 0
        # ... the container's rootfs, its set-user-ID binary, the database and the blobs are not
        for target in (rootfs, suid, root / "containers", root / "metadata.db", root / "content/blobs/sha256"):
            p = as_user(NOBODY, "stat", str(target))
            assert p.returncode != 0 and "Permission denied" in p.stderr, (target, p.stderr)
        p = as_user(NOBODY, str(suid), "-u")
        assert p.returncode != 0 and "Permission denied" in p.stderr, p
        p = as_user(NOBODY, "cat", str(root / "metadata.db"))
        assert p.returncode != 0 and "Permission denied" in p.stderr

        # control: with the pre-fix 0755 directories the same call runs as root on the host (the CVE pattern)
        loose = [root, root / "containers", root / "containers" / cid]
        try:
            for p_ in loose:
                os.chmod(p_, 0o755)
            p = as_user(NOBODY, str(suid), "-u")
            assert p.returncode == 0 and p.stdout.strip() == "0", p
        finally:
            for p_ in loose:
                os.chmod(p_, 0o710)
        assert as_user(NOBODY, str(suid), "-u").returncode != 0
        d.docker("rm", "-f", cid)
    finally:
        d.stop()


@needs_containers
def test_existing_data_root_with_loose_modes_is_tightened_at_start(tmp_path: Path) -> None:
    from conftest import overlay_or_skip
    overlay_or_skip(tmp_path)
    d = Daemon(tmp_path / "d").start()
    try:
        _setuid_image(d)
        d.docker("run", "--name", "done", "suid:1", "true")
        cid = d.out("inspect", "--format", "{{.Id}}", "done")
    finally:
        d.stop(clean=False)
    root = d.data_root
    # what an older dockwright left: 0755 directories, 0644 database and lock files
    loose_dirs = [root, root / "containers", root / "containers" / cid, root / "containers" / cid / "bundle",
                  root / "content", root / "content/blobs", root / "content/blobs/sha256", root / "content/ingest",
                  root / "tmp", root / "snapshots", d.exec_root]
    loose_files = [root / "metadata.db", root / "snapshots/metadata.db", root / "dockwright.lock"]
    for p in loose_dirs:
        os.chmod(p, 0o755)
    for p in loose_files:
        os.chmod(p, 0o644)
    d.start()
    try:
        assert {str(p.relative_to(tmp_path)): _mode(p) for p in loose_dirs} == {
            str(p.relative_to(tmp_path)): m for p, m in [
                (root, 0o710), (root / "containers", 0o710), (root / "containers" / cid, 0o710),
                (root / "containers" / cid / "bundle", 0o700), (root / "content", 0o700),
                (root / "content/blobs", 0o700), (root / "content/blobs/sha256", 0o700),
                (root / "content/ingest", 0o700), (root / "tmp", 0o700), (root / "snapshots", 0o710),
                (d.exec_root, 0o700)]}
        assert [_mode(p) for p in loose_files] == [0o600] * 3
        assert all(_mode(p) == 0o600 for p in root.glob("metadata.db-*"))
        assert d.out("inspect", "--format", "{{.State.Status}}", "done") == "exited"
        assert d.out("start", "-a", "done") == ""  # the container still works after the change
    finally:
        d.stop()
