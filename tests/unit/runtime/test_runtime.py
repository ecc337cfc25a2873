"""runtime: bundle generation, user lookup, json-file logs, and real containers through runc and the shim."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dockwright.errors import Conflict, ContainerNotFound, InvalidArgument
from dockwright.runtime import (
    STDERR,
    STDOUT,
    ContainerSpec,
    Runc,
    build_bundle,
    frame,
    merge_env,
    read_json_log,
    resolve_user,
)
from dockwright.runtime.bundle import resolv_content
from dockwright.runtime.runc import _shim_alive
from dockwright.runtime.shim import encode_log_line, read_exit_file
from dockwright.runtime.users import get_exec_user

T = TypeVar("T")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)
RUNC = shutil.which("runc") or next((p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.path.exists(p)), None)
APPLETS = ("sh", "echo", "cat", "sleep", "id", "ls", "hostname", "true", "touch", "head", "tail", "grep", "stty",
           "test")


def _runc_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "runtime tests need root (runc creates namespaces and cgroups)"
    if RUNC is None:
        return "runc is not installed"
    if BUSYBOX is None:
        return "busybox is not installed (it makes the test rootfs)"
    return None


_SKIP = _runc_skip_reason()
if _SKIP:
    print(f"\n[runtime] container tests skipped: {_SKIP}", file=sys.stderr)
needs_runc = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def make_rootfs(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    if BUSYBOX:
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
        for applet in APPLETS:
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n")
    return root


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_rootfs(tmp_path / "rootfs")


class Env:
    """A runc root and a place for bundles and logs; every container is force-deleted at the end."""

    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base = base
        self.rootfs = rootfs
        self.runc = Runc(RUNC or "runc", root=base / "runc-root")
        self.ids: list[str] = []

    def spec(self, *args: str, **kw: Any) -> ContainerSpec:
        cid = "dwtest-" + uuid.uuid4().hex[:12]
        self.ids.append(cid)
        kw.setdefault("hostname", cid[:12])
        return ContainerSpec(id=cid, rootfs=self.rootfs, args=list(args), **kw)

    def bundle(self, spec: ContainerSpec) -> Path:
        return build_bundle(spec, self.base / "bundles" / spec.id)

    def log(self, spec: ContainerSpec) -> Path:
        return self.base / "containers" / spec.id / f"{spec.id}-json.log"

    async def start(self, spec: ContainerSpec, stdin: bool = False) -> int:
        return await self.runc.create_and_start(spec.id, self.bundle(spec), log_path=self.log(spec), stdin=stdin)

    async def run(self, spec: ContainerSpec) -> tuple[int, bytes, bytes]:
        """Start, wait, read the log back: (exit code, stdout, stderr)."""
        await self.start(spec)
        code = await asyncio.wait_for(self.runc.wait(spec.id), 20)
        out, err = b"", b""
        async for stream, line, _ in read_json_log(self.log(spec)):
            if stream == STDOUT:
                out += line
            else:
                err += line
        return code, out, err

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([RUNC or "runc", "--root", str(self.base / "runc-root"), "delete", "--force", cid],
                           capture_output=True)


@pytest.fixture
def env(tmp_path: Path, rootfs: Path) -> Iterator[Env]:
    e = Env(tmp_path, rootfs)
    try:
        yield e
    finally:
        e.cleanup()


def config_of(bundle: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    return data


# ------------------------------------------------------------------------------------------------------
# bundle, users, env (no runc needed)


def test_bundle_has_dockerd_defaults(tmp_path: Path, rootfs: Path) -> None:
    spec = ContainerSpec(id="c1", rootfs=rootfs, args=["sh"], env=["FOO=bar", "PATH=/custom"], hostname="box",
                         cwd="/work/dir", binds=[(str(tmp_path / "src"), "/data", True)], memory=64 << 20,
                         cpu_shares=512, extra_hosts=["db:10.0.0.5", "v6:::1"])
    bundle = build_bundle(spec, tmp_path / "bundle")
    cfg = config_of(bundle)
    assert cfg["ociVersion"] == "1.0.2"
    proc = cfg["process"]
    assert proc["args"] == ["sh"] and proc["cwd"] == "/work/dir" and proc["terminal"] is False
    assert proc["env"] == ["PATH=/custom", "HOSTNAME=box", "FOO=bar"]
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}  # the primary group too (CVE-2023-25173)
    caps = proc["capabilities"]
    expected = {f"CAP_{c}" for c in "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP "
                                    "SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE".split()}
    assert set(caps["bounding"]) == set(caps["effective"]) == set(caps["permitted"]) == expected
    assert [r["type"] for r in proc["rlimits"]] == ["RLIMIT_NOFILE"]
    mounts = {m["destination"]: m for m in cfg["mounts"]}
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
                 "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/data"):
        assert dest in mounts, dest
    assert "size=67108864" in mounts["/dev/shm"]["options"]
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert mounts["/etc/hostname"]["source"] == str(bundle / "hostname")
    assert mounts["/data"]["type"] == "bind" and "ro" in mounts["/data"]["options"]
    assert (tmp_path / "src").is_dir()  # a missing -v source is created, as dockerd does
    linux = cfg["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["mount", "network", "uts", "pid", "ipc"]
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert linux["resources"]["memory"]["limit"] == 64 << 20
    assert linux["resources"]["cpu"] == {"shares": 512}
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "seccomp" not in linux
    assert cfg["root"] == {"path": str(rootfs), "readonly": False}
    assert (rootfs / "work" / "dir").is_dir()  # the working directory is made, as dockerd does
    assert (bundle / "hostname").read_text() == "box\n"
    hosts = (bundle / "hosts").read_text()
    assert hosts.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert "10.0.0.5\tdb\n" in hosts and "::1\tv6\n" in hosts and "127.0.0.1\tbox\n" in hosts


def test_bundle_tty_host_network_and_readonly(tmp_path: Path, rootfs: Path) -> None:
    spec = ContainerSpec(id="c2", rootfs=rootfs, args=["sh"], hostname="h", tty=True, network_mode="host",
                         readonly_rootfs=True, env=["PATH"])
    cfg = config_of(build_bundle(spec, tmp_path / "b"))
    assert cfg["process"]["terminal"] is True
    assert cfg["process"]["env"] == ["HOSTNAME=h", "TERM=xterm"]  # a bare name unsets
    assert "network" not in [n["type"] for n in cfg["linux"]["namespaces"]]
    assert cfg["root"]["readonly"] is True
    assert (tmp_path / "b" / "hosts").read_text() == Path("/etc/hosts").read_text().rstrip("\n") + "\n"
    with pytest.raises(InvalidArgument, match="No command specified"):
        build_bundle(ContainerSpec(id="c3", rootfs=rootfs, args=[]), tmp_path / "c")
    with pytest.raises(InvalidArgument):
        build_bundle(ContainerSpec(id="c4", rootfs=rootfs, args=["sh"], extra_hosts=["bad"]), tmp_path / "d")


def test_resolv_conf_filtering(tmp_path: Path, rootfs: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("search example.com\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\n"
                    "nameserver 2001:db8::1\noptions ndots:2\n")
    default = ContainerSpec(id="x", rootfs=rootfs, args=["sh"])
    assert resolv_content(default, host) == "search example.com\nnameserver 10.1.2.3\noptions ndots:2\n"
    hostmode = ContainerSpec(id="x", rootfs=rootfs, args=["sh"], network_mode="host")
    assert resolv_content(hostmode, host) == host.read_text()
    host.write_text("nameserver 127.0.0.1\n")
    assert resolv_content(default, host).endswith("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    custom = ContainerSpec(id="x", rootfs=rootfs, args=["sh"], dns=["1.1.1.1"], dns_search=["corp"])
    assert resolv_content(custom, host) == "search corp\nnameserver 1.1.1.1\n"


def test_user_resolution(rootfs: Path) -> None:
    nobody = resolve_user(rootfs, "nobody")
    assert (nobody.uid, nobody.gid, nobody.sgids, nobody.home) == (65534, 65534, (50,), "/nonexistent")
    numeric = resolve_user(rootfs, "1234:5678")
    assert (numeric.uid, numeric.gid, numeric.sgids) == (1234, 5678, ())
    assert resolve_user(rootfs, "65534").gid == 65534  # a uid found in passwd takes its group
    assert resolve_user(rootfs, "nobody:staff").gid == 50
    assert resolve_user(rootfs, "root:65534").gid == 65534
    assert resolve_user(rootfs, "").uid == 0
    with pytest.raises(InvalidArgument, match="^unable to find user xyz: no matching entries in passwd file$"):
        resolve_user(rootfs, "xyz")
    with pytest.raises(InvalidArgument, match="^unable to find group nope: no matching entries in group file$"):
        resolve_user(rootfs, "root:nope")
    with pytest.raises(InvalidArgument, match="uids and gids must be in range"):
        resolve_user(rootfs, "4294967296")
    # without passwd and group files numeric ids still work, names do not
    assert get_exec_user("7:8", None, None).uid == 7
    with pytest.raises(InvalidArgument):
        get_exec_user("someone", None, None)
    # /etc/passwd through an absolute symlink stays inside the rootfs
    os.rename(rootfs / "etc" / "passwd", rootfs / "etc" / "passwd.real")
    os.symlink("/etc/passwd.real", rootfs / "etc" / "passwd")
    assert resolve_user(rootfs, "nobody").uid == 65534


def test_user_in_config(tmp_path: Path, rootfs: Path) -> None:
    cfg = config_of(build_bundle(ContainerSpec(id="u", rootfs=rootfs, args=["id"], user="nobody"), tmp_path / "b"))
    assert cfg["process"]["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [65534, 50]}
    with pytest.raises(InvalidArgument, match="unable to find user xyz"):
        build_bundle(ContainerSpec(id="u", rootfs=rootfs, args=["id"], user="xyz"), tmp_path / "c")


def test_merge_env() -> None:
    assert merge_env(["PATH=/bin", "HOSTNAME=h"], ["A=1", "PATH=/x", "HOSTNAME", "B=2"]) == ["PATH=/x", "A=1", "B=2"]


# ------------------------------------------------------------------------------------------------------
# json-file log and framing


def _write_log(path: Path, lines: list[tuple[int, bytes, float]]) -> None:
    with open(path, "wb") as f:
        for stream, data, ts in lines:
            f.write(encode_log_line(stream, data, int(ts * 1e9)))


async def _collect(path: Path, **kw: Any) -> list[tuple[int, bytes, float]]:
    return [tuple(e) async for e in read_json_log(path, **kw)]  # type: ignore[misc]


def test_read_json_log_filters(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    base = 1_700_000_000.0
    _write_log(log, [(STDOUT, b"a\n", base), (STDERR, b"b\n", base + 1), (STDOUT, b"c\n", base + 2),
                     (STDOUT, b"d", base + 3)])
    first = log.read_text().splitlines()[0]
    assert json.loads(first) == {"log": "a\n", "stream": "stdout", "time": "2023-11-14T22:13:20Z"}
    assert [e[1] for e in run(_collect(log))] == [b"a\n", b"b\n", b"c\n", b"d"]
    assert [e[1] for e in run(_collect(log, stderr=False))] == [b"a\n", b"c\n", b"d"]
    assert [e[1] for e in run(_collect(log, stdout=False))] == [b"b\n"]
    assert [e[1] for e in run(_collect(log, tail=2))] == [b"c\n", b"d"]
    assert [e[1] for e in run(_collect(log, tail=2, stderr=False))] == [b"c\n", b"d"]
    assert [e[1] for e in run(_collect(log, tail=3, stdout=False))] == [b"b\n"]  # tail counts both streams
    assert run(_collect(log, tail=0)) == []
    assert [e[1] for e in run(_collect(log, tail=100))] == [b"a\n", b"b\n", b"c\n", b"d"]
    assert [e[1] for e in run(_collect(log, since=base + 1))] == [b"b\n", b"c\n", b"d"]
    assert [e[1] for e in run(_collect(log, until=base + 1.5))] == [b"a\n", b"b\n"]
    stamped = run(_collect(log, timestamps=True, tail=1))
    assert stamped[0][1] == b"2023-11-14T22:13:23.000000000Z d" and stamped[0][2] == base + 3
    assert run(_collect(tmp_path / "missing.log")) == []


def test_read_json_log_follow(tmp_path: Path) -> None:
    log = tmp_path / "f-json.log"
    _write_log(log, [(STDOUT, b"one\n", time.time())])

    async def scenario() -> list[bytes]:
        stop = asyncio.Event()
        got: list[bytes] = []

        async def reader() -> None:
            async for _, line, _ in read_json_log(log, follow=True, stop=stop):
                got.append(line)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.2)
        with open(log, "ab") as f:
            f.write(encode_log_line(STDERR, b"two\n", time.time_ns()))
        await asyncio.sleep(0.2)
        with open(log, "ab") as f:
            f.write(encode_log_line(STDOUT, b"three\n", time.time_ns()))
        stop.set()  # lines written before the stop are still read
        await asyncio.wait_for(task, 5)
        return got

    assert run(scenario()) == [b"one\n", b"two\n", b"three\n"]


def test_frame() -> None:
    assert frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(2, b"x" * 300)[:8] == bytes([2, 0, 0, 0, 0, 0, 1, 44])


# ------------------------------------------------------------------------------------------------------
# containers


@needs_runc
def test_exit_code_and_both_streams(env: Env) -> None:
    spec = env.spec("sh", "-c", "echo out; echo err >&2; exit 3")
    code, out, err = run(env.run(spec))
    assert code == 3 and out == b"out\n" and err == b"err\n"
    exit_rec = json.loads((env.base / "bundles" / spec.id / "exit.json").read_text())
    assert exit_rec["exit_code"] == 3 and exit_rec["signal"] is None
    st = run(env.runc.state(spec.id))
    assert st is not None and st["status"] == "stopped"
    run(env.runc.delete(spec.id))
    assert run(env.runc.state(spec.id)) is None
    with pytest.raises(ContainerNotFound):
        run(env.runc.delete(spec.id))


@needs_runc
def test_kill_pause_resume(env: Env) -> None:
    spec = env.spec("sh", "-c", "while true; do echo tick; sleep 0.1; done")

    async def scenario() -> None:
        pid = await env.start(spec)
        st = await env.runc.state(spec.id)
        assert st is not None and st["status"] == "running" and st["pid"] == pid
        await env.runc.pause(spec.id)
        assert (await env.runc.state(spec.id) or {})["status"] == "paused"
        with pytest.raises(Conflict, match="already paused"):
            await env.runc.pause(spec.id)
        size = env.log(spec).stat().st_size
        await asyncio.sleep(0.4)
        assert env.log(spec).stat().st_size == size  # frozen: no output
        await env.runc.resume(spec.id)
        assert (await env.runc.state(spec.id) or {})["status"] == "running"
        with pytest.raises(Conflict, match="not paused"):
            await env.runc.resume(spec.id)
        await asyncio.sleep(0.3)
        assert env.log(spec).stat().st_size > size
        with pytest.raises(Conflict):
            await env.runc.delete(spec.id)  # running, no force
        await env.runc.kill(spec.id, signal.SIGKILL)
        assert await asyncio.wait_for(env.runc.wait(spec.id), 10) == 128 + signal.SIGKILL
        assert (await env.runc.state(spec.id) or {})["status"] == "stopped"
        with pytest.raises(Conflict, match="not running"):
            await env.runc.kill(spec.id, signal.SIGTERM)
        await env.runc.delete(spec.id)

    run(scenario())


@needs_runc
def test_sigterm_handled_by_the_command(env: Env) -> None:
    # pid 1 of a pid namespace ignores signals it has no handler for, so this one installs one
    spec = env.spec("sh", "-c", "trap 'echo term; exit 143' TERM; echo ready; while true; do sleep 0.05; done")

    async def scenario() -> tuple[int, bytes]:
        await env.start(spec)
        for _ in range(100):
            if env.log(spec).exists() and b"ready" in env.log(spec).read_bytes():
                break
            await asyncio.sleep(0.05)
        await env.runc.kill(spec.id, signal.SIGTERM)
        code = await asyncio.wait_for(env.runc.wait(spec.id), 10)
        out = b"".join([e.line async for e in read_json_log(env.log(spec))])
        return code, out

    code, out = run(scenario())
    assert code == 143 and out == b"ready\nterm\n"


@needs_runc
def test_user_in_container(env: Env) -> None:
    code, out, _ = run(env.run(env.spec("sh", "-c", "id -u; id -g; id -G", user="nobody")))
    assert code == 0 and out.split() == [b"65534", b"65534", b"65534", b"50"]
    code, out, _ = run(env.run(env.spec("sh", "-c", "id -u; id -g", user="1234:5678")))
    assert code == 0 and out.split() == [b"1234", b"5678"]
    with pytest.raises(InvalidArgument, match="unable to find user xyz: no matching entries in passwd file"):
        env.bundle(env.spec("true", user="xyz"))


@needs_runc
def test_network_modes(env: Env) -> None:
    def interfaces(out: bytes) -> set[str]:
        return {line.split(b":")[0].strip().decode() for line in out.splitlines()[2:]}

    code, out, _ = run(env.run(env.spec("cat", "/proc/net/dev", network_mode="none")))
    assert code == 0 and interfaces(out) == {"lo"}
    code, out, _ = run(env.run(env.spec("cat", "/proc/net/dev")))
    assert code == 0 and interfaces(out) == {"lo"}  # "default": private, loopback only
    before = interfaces(Path("/proc/net/dev").read_bytes())
    code, out, _ = run(env.run(env.spec("cat", "/proc/net/dev", network_mode="host")))
    after = interfaces(Path("/proc/net/dev").read_bytes())
    # the host's own interfaces; another process may add or remove one (a bridge) meanwhile
    assert code == 0 and before & after <= interfaces(out) <= before | after and len(before & after) > 1


@needs_runc
def test_bind_mount_readonly_and_etc_files(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "shared"
    src.mkdir()
    (src / "f.txt").write_text("from the host\n")
    spec = env.spec("sh", "-c", "cat /data/f.txt; touch /data/new || echo ro; cat /etc/hostname; hostname; "
                                "grep -c localhost /etc/hosts; ls /etc/resolv.conf",
                    hostname="myhost", binds=[(str(src), "/data", True)])
    code, out, err = run(env.run(spec))
    assert code == 0, err
    assert out.splitlines() == [b"from the host", b"ro", b"myhost", b"myhost", b"2", b"/etc/resolv.conf"]
    assert b"Read-only file system" in err
    assert not (src / "new").exists()


@needs_runc
@pytest.mark.skipif(not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
                    reason="needs the cgroup v1 memory controller")
def test_resources_readonly_rootfs_and_oom(env: Env) -> None:
    spec = env.spec("sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares; "
                                "touch /x || echo rofs; head -c 200000000 /dev/zero | tail > /dev/null",
                    memory=32 << 20, cpu_shares=512, readonly_rootfs=True)

    async def scenario() -> tuple[Any, bytes]:
        await env.start(spec)
        status = await asyncio.wait_for(env.runc.wait_exit(spec.id), 20)
        return status, b"".join([e.line async for e in read_json_log(env.log(spec), stderr=False)])

    status, out = run(scenario())
    assert out == b"33554432\n512\nrofs\n"
    assert status.exit_code == 137 and status.oom_killed  # tail was OOM-killed, sh reports it


@needs_runc
def test_create_twice_conflicts(env: Env) -> None:
    spec = env.spec("sleep", "10")

    async def scenario() -> None:
        await env.start(spec)
        with pytest.raises(Conflict, match="already exists"):
            await env.start(spec)
        assert (await env.runc.state(spec.id) or {})["status"] == "running"  # the first one is untouched
        await env.runc.kill(spec.id, "KILL")
        assert await asyncio.wait_for(env.runc.wait(spec.id), 10) == 137

    run(scenario())


@needs_runc
def test_create_failure_is_reported(env: Env) -> None:
    spec = env.spec("/no/such/binary")
    with pytest.raises(InvalidArgument, match="OCI runtime create failed"):
        run(env.start(spec))
    assert run(env.runc.state(spec.id)) is None


@needs_runc
def test_attach_with_stdin(env: Env) -> None:
    spec = env.spec("sh", "-c", "read line; echo got:$line; echo bye >&2", open_stdin=True)

    async def scenario() -> tuple[list[tuple[int, bytes]], int]:
        bundle = env.bundle(spec)
        await env.runc.create(spec.id, bundle, log_path=env.log(spec), stdin=True)
        att = await env.runc.attach(spec.id, stdin=True, stdin_once=True)  # before start: nothing is missed
        await env.runc.start(spec.id)
        await att.write(b"hello\n")
        await att.close_stdin()
        got = [item async for item in att]
        await att.close()
        return got, await env.runc.wait(spec.id)

    got, code = run(scenario())
    assert code == 0 and not any(s not in (STDOUT, STDERR) for s, _ in got)
    assert b"".join(d for s, d in got if s == STDOUT) == b"got:hello\n"
    assert b"".join(d for s, d in got if s == STDERR) == b"bye\n"
    with pytest.raises(Conflict, match="You cannot attach to a stopped container"):
        run(env.runc.attach(spec.id))


@needs_runc
def test_tty(env: Env) -> None:
    spec = env.spec("sh", "-c", "read line; stty size; echo got:$line; test -t 1 && echo isatty",
                    tty=True, open_stdin=True)

    async def scenario() -> tuple[bytes, int]:
        await env.runc.create(spec.id, env.bundle(spec), log_path=env.log(spec), stdin=True)
        att = await env.runc.attach(spec.id, stdin=True)
        assert att.tty
        await env.runc.resize(spec.id, 33, 111)
        await env.runc.start(spec.id)
        await att.write(b"hi\r")
        data = b"".join([d async for _, d in att])
        return data, await env.runc.wait(spec.id)

    data, code = run(scenario())
    assert code == 0
    assert b"33 111" in data and b"got:hi" in data and b"isatty" in data and b"\r\n" in data
    logged = run(_collect(env.log(spec)))
    assert all(s == STDOUT for s, _, _ in logged) and b"isatty" in b"".join(line for _, line, _ in logged)


@needs_runc
def test_detached_container_outlives_its_daemon(env: Env, tmp_path: Path) -> None:
    spec = env.spec("sh", "-c", "echo started; sleep 1.5; echo done; exit 7")
    # a long state path: the shim socket must still work
    bundle_dir = tmp_path / ("d" * 80) / spec.id
    build_bundle(spec, bundle_dir)
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        from pathlib import Path
        from dockwright.runtime import Runc
        async def main():
            r = Runc({RUNC!r}, root=Path({str(env.base / 'runc-root')!r}))
            pid = await r.create_and_start({spec.id!r}, Path({str(bundle_dir)!r}),
                                           log_path=Path({str(env.log(spec))!r}))
            print(pid, flush=True)
            os.kill(os.getpid(), 9)  # the daemon dies hard
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    pid = int(proc.stdout.split()[0])

    fresh = Runc(RUNC or "runc", root=env.base / "runc-root")
    st = run(fresh.state(spec.id))
    assert st is not None and st["status"] == "running" and st["pid"] == pid
    assert Path(st["bundle"]) == bundle_dir
    status = run(asyncio.wait_for(fresh.wait_exit(spec.id), 20))
    assert status.exit_code == 7 and status.pid == pid and status.exited_at
    assert [e.line for e in run(_collect_entries(env.log(spec)))] == [b"started\n", b"done\n"]
    # another fresh instance after the shim is gone reads the exit file
    assert run(Runc(RUNC or "runc", root=env.base / "runc-root").wait(spec.id)) == 7


async def _collect_entries(path: Path) -> list[Any]:
    return [e async for e in read_json_log(path)]


@needs_runc
def test_delete_force_and_wait_record_signal(env: Env) -> None:
    spec = env.spec("sleep", "100")

    async def scenario() -> None:
        await env.start(spec)
        await env.runc.delete(spec.id, force=True)
        assert await env.runc.state(spec.id) is None
        status = await asyncio.wait_for(env.runc.wait_exit(spec.id, bundle=env.base / "bundles" / spec.id), 10)
        assert status.exit_code == 137 and status.signal == signal.SIGKILL

    run(scenario())


# ------------------------------------------------------------------------------------------------------
# shim liveness: a shim started ahead of time (`shim.py -`) is recognised, and a stale pid file is not


@needs_runc
def test_spare_shim_is_recognised_and_create_twice_leaves_it_alone(env: Env) -> None:
    first, second = env.spec("true"), env.spec("sleep", "100")

    async def scenario() -> None:
        await env.start(first)  # a shim with its config in argv; it starts the spare that `second` takes
        await env.runc._spare_task
        assert await env.runc.wait(first.id) == 0
        bundle = env.bundle(second)
        await env.runc.create_and_start(second.id, bundle, log_path=env.log(second))
        shim_pid = int((bundle / "shim.pid").read_text())
        assert Path(f"/proc/{shim_pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")[-1] == b"-"
        assert _shim_alive(bundle, second.id)
        # another daemon (a restarted one: another process) recognises it too, from the state directory alone
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from pathlib import Path; from dockwright.runtime.runc import "
            "_shim_alive; print(_shim_alive(Path(sys.argv[1]), sys.argv[2]))", str(bundle), second.id,
            stdout=asyncio.subprocess.PIPE)
        assert (await probe.communicate())[0].strip() == b"True"
        # a second create is refused before a new shim takes over the bundle's socket and pid file
        with pytest.raises(Conflict, match="already exists"):
            await env.runc.create(second.id, bundle, log_path=env.log(second))
        assert (bundle / "shim.sock").exists() and int((bundle / "shim.pid").read_text()) == shim_pid
        att = await env.runc.attach(second.id)  # the first shim still serves
        await att.close()
        # delete --force waits for the shim's exit record
        await env.runc.delete(second.id, force=True)
        rec = read_exit_file(bundle)
        assert rec is not None and rec["exit_code"] == 137
        for _ in range(100):  # the shim exits once it has recorded the exit
            if not _shim_alive(bundle, second.id):
                break
            await asyncio.sleep(0.05)
        assert not _shim_alive(bundle, second.id)
        await env.runc.close()

    run(scenario())


def test_stale_shim_pid_is_not_taken_for_a_live_shim(tmp_path: Path) -> None:
    """A pid file naming a live process that is not this bundle's shim (pid reuse), even one whose command
    line looks like a shim's, is not a live shim: only the shim's lock in the state directory counts."""
    cid = "dwtest-" + uuid.uuid4().hex[:12]
    bundle = tmp_path / cid
    bundle.mkdir()
    (bundle / "shim.lock").touch()  # left by a shim that has exited
    impostor = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(60)", "shim.py",
                                 json.dumps({"id": cid})])
    try:
        (bundle / "shim.pid").write_text(f"{impostor.pid}\n")
        assert not _shim_alive(bundle, cid)
    finally:
        impostor.kill()
        impostor.wait()


def test_shim_started_before_the_lock_is_still_recognised(tmp_path: Path) -> None:
    """A shim of an earlier dockwright (no ``shim.lock``), still running after the upgrade: its pid file and
    command line (the id in its config argument, or, for a spare shim, its stderr on ``shim.log``) count."""
    cid = "dwtest-" + uuid.uuid4().hex[:12]
    bundle = tmp_path / cid
    bundle.mkdir()
    sleeper = "import time; time.sleep(60)"
    with open(bundle / "shim.log", "ab") as shim_log:
        procs = {
            "argv": subprocess.Popen([sys.executable, "-c", sleeper, "shim.py", json.dumps({"id": cid})]),
            "spare": subprocess.Popen([sys.executable, "-c", sleeper, "shim.py", "-"], stderr=shim_log),
            "other": subprocess.Popen([sys.executable, "-c", sleeper, "shim.py", "-"]),
        }
    try:
        # a shim left running across an upgrade has long been started: wait until each stand-in's command line
        # and stderr are its own (read at once after Popen, /proc showed the parent's now and then on a loaded run)
        for proc in procs.values():
            deadline = time.monotonic() + 10
            while b"shim.py" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.01)
        for name, expected in (("argv", True), ("spare", True), ("other", False)):
            (bundle / "shim.pid").write_text(f"{procs[name].pid}\n")
            assert _shim_alive(bundle, cid) is expected, name
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert not _shim_alive(bundle, cid)  # its pid is gone


def _gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


@needs_runc
def test_create_again_after_exit_waits_for_the_finishing_shim(env: Env) -> None:
    """After exit, wait and delete, a create on the same bundle is no conflict while the old shim (its exit
    recorded) still finishes with a client; the new shim takes the bundle only once the old one is gone."""
    first, spec = env.spec("true"), env.spec("sh", "-c", "sleep 0.3; echo run")

    async def attempt(spec: ContainerSpec) -> bool:
        """One run of the scenario; False when the old shim had already finished before the re-create (its
        lingering is bounded in time, and a loaded machine can spend that in wait and delete)."""
        bundle = env.bundle(spec)
        await env.runc.create_and_start(spec.id, bundle, log_path=env.log(spec))
        try:  # a client that says nothing: the shim lingers for it
            reader, writer = await asyncio.open_unix_connection(str(bundle / "shim.sock"))
        except (FileNotFoundError, ConnectionRefusedError):  # `echo` ran and its shim finished first
            assert await asyncio.wait_for(env.runc.wait(spec.id), 10) == 0
            await env.runc.delete(spec.id)
            return False
        try:
            assert await asyncio.wait_for(env.runc.wait(spec.id), 10) == 0
            await env.runc.delete(spec.id)
            old_shim = int((bundle / "shim.pid").read_text())
            assert read_exit_file(bundle) is not None
            if not _shim_alive(bundle, spec.id):
                return False
            await env.runc.create_and_start(spec.id, bundle, log_path=env.log(spec))
            assert int((bundle / "shim.pid").read_text()) != old_shim and _gone_or_zombie(old_shim)
            assert await asyncio.wait_for(env.runc.wait(spec.id), 10) == 0
        finally:
            writer.close()
        assert [e.line for e in await _collect_entries(env.log(spec))] == [b"run\n", b"run\n"]
        return True

    async def scenario() -> None:
        await env.start(first)  # so that `spec` gets the spare shim
        await env.runc._spare_task
        await env.runc.wait(first.id)
        tried = [spec]
        while not await attempt(tried[-1]):
            assert len(tried) < 5, "the old shim never outlived wait and delete: the scenario was not exercised"
            await env.runc._spare_task
            tried.append(env.spec("sh", "-c", "sleep 0.3; echo run"))
        await env.runc.close()

    run(scenario())
