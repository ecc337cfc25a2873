"""The create body of the library's typed create (``create_body``)."""

from __future__ import annotations

from dockwright.engine.containers.config import create_body


def test_defaults_leave_everything_to_the_image() -> None:
    assert create_body("busybox") == {"Image": "busybox", "HostConfig": {"NetworkMode": "default"}}


def test_every_keyword() -> None:
    body = create_body("busybox", "sh -c 'echo hi'", env={"A": "1", "B": "x y"}, workdir="/w", user="1:2",
                       entrypoint=["/bin/env"], labels={"l": "v"}, hostname="h", tty=True, network_mode="none",
                       binds=["/src:/dst:ro"], auto_remove=True, privileged=True)
    assert body == {
        "Image": "busybox", "Cmd": ["sh", "-c", "echo hi"], "Entrypoint": ["/bin/env"], "Env": ["A=1", "B=x y"],
        "WorkingDir": "/w", "User": "1:2", "Labels": {"l": "v"}, "Hostname": "h", "Tty": True,
        "HostConfig": {"NetworkMode": "none", "Binds": ["/src:/dst:ro"], "AutoRemove": True, "Privileged": True},
    }


def test_sequences_are_taken_as_they_are() -> None:
    body = create_body("busybox", ["echo", "a b"], env=["A=1"], entrypoint="")
    assert body["Cmd"] == ["echo", "a b"] and body["Env"] == ["A=1"] and body["Entrypoint"] == []
