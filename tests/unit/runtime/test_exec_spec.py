"""runtime.exec and engine.exec: the exec's process spec and environment, detach keys, as dockerd makes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockwright.engine.exec import _EscapeProxy, detach_key_bytes
from dockwright.runtime.exec import bounding_capabilities, exec_env, exec_process
from dockwright.runtime.users import ExecUser

BASE = {
    "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sleep", "1000"], "env": ["PATH=/bin", "HOSTNAME=h"],
    "cwd": "/", "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": False,
}


def test_exec_env_is_dockerds() -> None:
    # CreateDaemonEnvironment(tty), the container's variables over it, then the exec's (a bare name removes)
    assert exec_env("abc", ["PATH=/bin", "A=1", "B=2"], ["B=3", "C=4", "A"], False) == \
        ["PATH=/bin", "HOSTNAME=abc", "B=3", "C=4"]
    assert exec_env("abc", [], [], True) == \
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=abc", "TERM=xterm"]
    assert exec_env("abc", ["TERM=dumb"], [], True)[2] == "TERM=dumb"


def test_exec_process_from_the_containers() -> None:
    p = exec_process(BASE, args=["sh", "-c", "id"], env=["X=1"], cwd="", tty=False)
    assert p["args"] == ["sh", "-c", "id"] and p["env"] == ["X=1"] and p["cwd"] == "/" and p["terminal"] is False
    assert p["rlimits"] == BASE["rlimits"] and p["capabilities"] == BASE["capabilities"]
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}  # the primary group too (CVE-2023-25173)
    assert BASE["args"] == ["sleep", "1000"] and "additionalGids" not in BASE["user"]  # the base is not changed
    p = exec_process(BASE, args=["id"], env=[], cwd="/etc", tty=True, user=ExecUser(65534, 100, (5, 100, 7)),
                     console_size=(30, 90))
    assert p["user"] == {"uid": 65534, "gid": 100, "additionalGids": [100, 5, 7]}
    assert p["terminal"] is True and p["consoleSize"] == {"height": 30, "width": 90} and p["cwd"] == "/etc"
    assert "consoleSize" not in exec_process(BASE, args=["id"], env=[], cwd="/", tty=False, console_size=(30, 90))
    p = exec_process(BASE, args=["id"], env=[], cwd="/", tty=False, privileged=True)
    caps = p["capabilities"]
    assert set(caps) == {"bounding", "effective", "inheritable", "permitted"}
    assert caps["bounding"] == bounding_capabilities() and "CAP_KILL" in caps["effective"]


def test_bounding_capabilities_read_capbnd(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t0000000000000021\n")
    assert bounding_capabilities(status) == ["CAP_CHOWN", "CAP_KILL"]
    status.write_text("CapBnd:\t000001fffeffffff\n")
    caps = bounding_capabilities(status)
    assert "CAP_SYS_RESOURCE" not in caps and caps[-1] == "CAP_CHECKPOINT_RESTORE" and len(caps) == 40


def test_detach_keys_as_moby_term() -> None:
    assert detach_key_bytes("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_key_bytes("a,ctrl-@,ctrl-_,DEL") == b"a\x00\x1f\x7f"
    for bad in ("ctrl-", "ctrl-pp", "", "ab", "CTRL-P", "\u00e9"):
        with pytest.raises(ValueError):
            detach_key_bytes(bad)


def test_escape_proxy_reads_of_one_byte() -> None:
    proxy = _EscapeProxy(b"\x10\x11")
    assert proxy.feed(b"abc") == (b"abc", False)
    assert proxy.feed(b"\x10") == (b"", False)  # held
    assert proxy.feed(b"x") == (b"\x10x", False)  # not the sequence: the held key goes through
    assert proxy.feed(b"\x10") == (b"", False)
    assert proxy.feed(b"\x11") == (b"", True)  # detach
    proxy = _EscapeProxy(b"\x10\x11")
    assert proxy.feed(b"\x10\x11") == (b"\x10\x11", False)  # a read of two bytes is data
    assert proxy.feed(b"\x10") == (b"", False)
    assert proxy.feed(b"yz") == (b"\x10yz", False)
    assert proxy.feed(b"\x10") == (b"", False) and proxy.flush() == b"\x10"
