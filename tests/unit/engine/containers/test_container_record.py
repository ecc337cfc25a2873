"""A container's stored row: round trip, and the repair of records older versions stored."""

from __future__ import annotations

import json

from dockwright.engine.containers.record import (
    Container,
    container_from_row,
    container_info,
    container_row,
    container_summary,
    list_command,
    new_state,
)
from dockwright.metadata.containers import ContainerRow


def test_round_trip() -> None:
    c = Container("a" * 64, "n", "sha256:i", "i:1", "2024-01-01T00:00:00Z", {"Cmd": ["sh"]}, {"Binds": []},
                  new_state(), mounts=[{"Type": "volume", "Name": "v", "Destination": "/v"}])
    back, problems = container_from_row(container_row(c))
    assert back == c and problems == []


def test_repair() -> None:
    row = ContainerRow("a", "n", "sha256:i", "i", "t", json.dumps({"Cmd": "sh", "Env": "A=1"}), "[]",
                       json.dumps({"Status": 5}), "{not json", "")
    c, problems = container_from_row(row)
    assert c.config == {"Cmd": ["sh"]}
    assert c.host_config == {} and c.network is None
    assert c.state["Status"] == "exited" and c.state["ExitCode"] == 255
    assert "its host config is not a JSON object" in problems
    assert "its network attachment is unreadable" in problems


def test_legacy_binds_become_mount_points() -> None:
    row = ContainerRow("a", "n", "sha256:i", "i", "t", "{}", json.dumps({"Binds": ["/src:/dst:ro", "vol:/v"]}),
                       "{}", "", "")
    c, problems = container_from_row(row)
    assert [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in c.mounts] == [("bind", "/src", "/dst", False)]
    assert "its mount points derived from its Binds and Mounts" in problems


def test_typed_view_and_summary() -> None:
    c = Container("ab" * 32, "web", "sha256:i", "busybox:1", "2024-01-01T00:00:01.5Z",
                  {"Entrypoint": ["sh", "-c"], "Cmd": ["echo a b"], "Labels": {"k": "v"}}, {"NetworkMode": "none"},
                  {**new_state(), "Status": "exited", "ExitCode": 3, "FinishedAt": "2024-01-01T00:00:02Z"})
    info = container_info(c)
    assert (info.id, info.short_id, info.name, info.image, info.image_id) == (c.id, "ab" * 6, "web", "busybox:1",
                                                                              "sha256:i")
    assert info.command == ["sh", "-c", "echo a b"] and info.labels == {"k": "v"}
    assert info.state.status == "exited" and info.state.exit_code == 3 and not info.state.running
    assert info.state.finished_at == "2024-01-01T00:00:02Z" and info.host_config == {"NetworkMode": "none"}
    c.config["Labels"]["k"] = "changed"  # a copy: the record's later changes do not show in it
    assert info.labels == {"k": "v"} and info.config["Labels"] == {"k": "v"}
    summary = container_summary(c)
    assert summary.command == "sh -c 'echo a b'" == list_command(c)
    assert (summary.created, summary.status, summary.name) == (1704067201, "exited", "web")


def test_list_command_of_no_command() -> None:
    assert list_command(Container("a", "n", "i", "i", "t", {}, {})) == ""
