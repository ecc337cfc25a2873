"""runtime.relay: what the shim and the exec helper share (runc's arguments and errors, exit statuses, log times)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from dockwright.runtime.relay import (
    bind_unix,
    connect_unix,
    format_log_time,
    read_now,
    runc_command,
    runc_error,
    wait_status,
)


def test_format_log_time_is_rfc3339nano_without_trailing_zeros() -> None:
    assert format_log_time(1_700_000_000_123_400_000) == "2023-11-14T22:13:20.1234Z"
    assert format_log_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_runc_command() -> None:
    log = Path("/s/runc.log")
    assert runc_command("runc", "/r", log, False) == ["runc", "--root", "/r", "--log", "/s/runc.log",
                                                      "--log-format", "json"]
    assert runc_command("runc", "/r", log, True)[-1] == "--systemd-cgroup"


def test_runc_error_prefers_the_last_logged_error(tmp_path: Path) -> None:
    log = tmp_path / "runc.log"
    records = [{"level": "error", "msg": "first"}, {"level": "fatal", "msg": "last"}, {"level": "info", "msg": "x"}]
    log.write_text("\n".join([json.dumps(records[0]), "not json", *(json.dumps(r) for r in records[1:])]))
    assert runc_error(log, "printed") == "last"
    assert runc_error(tmp_path / "missing.log", " printed\n") == "printed"
    assert runc_error(tmp_path / "missing.log", "") == "runc create failed"


def test_wait_status() -> None:
    assert wait_status(None) == (255, None)
    assert wait_status(3 << 8) == (3, None)
    assert wait_status(signal.SIGKILL) == (128 + signal.SIGKILL, signal.SIGKILL)


def test_read_now_does_not_wait(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        assert read_now(r) == ""
        os.write(w, b"boom\n")
        assert read_now(r) == "boom\n"
    finally:
        os.close(r)
        os.close(w)


def test_unix_sockets_with_a_long_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    listener = bind_unix(deep / "s.sock")
    try:
        client = connect_unix(deep / "s.sock")
        conn, _ = listener.accept()
        client.sendall(b"hi")
        assert conn.recv(2) == b"hi"
        conn.close()
        client.close()
    finally:
        listener.close()
