"""Unit tests of api/exec.py's ``exec_inspect_json`` (dockerd's ``ExecInspect``). (Named ``_json`` because
tests/e2e/test_exec.py holds the basename.)"""

from __future__ import annotations

import base64

from dockwright.api.exec import exec_inspect_json
from dockwright.engine.exec import Exec


def rec(**kw: object) -> Exec:
    fields: dict[str, object] = dict(id="x" * 64, container_id="c" * 64, entrypoint="sh", args=["-c", "echo hi"],
                                     env=["A=1"], user="", working_dir="", tty=False, privileged=False,
                                     open_stdin=False, open_stdout=True, open_stderr=True, detach_keys=b"\x10\x11")
    fields.update(kw)
    return Exec(**fields)  # type: ignore[arg-type]


def test_fields_and_order_are_moby_execinspect() -> None:
    out = exec_inspect_json(rec())
    assert list(out) == ["ID", "Running", "ExitCode", "ProcessConfig", "OpenStdin", "OpenStderr", "OpenStdout",
                         "CanRemove", "ContainerID", "DetachKeys", "Pid"]
    assert out["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "arguments": ["-c", "echo hi"],
                                    "privileged": False}
    assert (out["ID"], out["ContainerID"], out["Running"], out["ExitCode"], out["Pid"], out["CanRemove"]) == (
        "x" * 64, "c" * 64, False, None, 0, False)
    assert (out["OpenStdin"], out["OpenStdout"], out["OpenStderr"]) == (False, True, True)


def test_detach_keys_are_base64_of_the_bytes() -> None:
    assert exec_inspect_json(rec())["DetachKeys"] == base64.b64encode(b"\x10\x11").decode() == "EBE="
    assert exec_inspect_json(rec(detach_keys=b""))["DetachKeys"] == ""


def test_user_only_when_set_and_state_after_running() -> None:
    out = exec_inspect_json(rec(user="1000:1000", tty=True, privileged=True, running=False, exit_code=3, pid=42))
    assert out["ProcessConfig"] == {"tty": True, "entrypoint": "sh", "arguments": ["-c", "echo hi"],
                                    "privileged": True, "user": "1000:1000"}
    assert (out["ExitCode"], out["Pid"]) == (3, 42)
    args = ["a"]
    out = exec_inspect_json(rec(args=args))
    args.append("b")
    assert out["ProcessConfig"]["arguments"] == ["a"]  # a copy
