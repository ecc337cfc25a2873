"""A container's stored row: round trip, and the repair of records older versions stored."""

from __future__ import annotations

import json

from dockwright.engine.container_record import Container, container_from_row, container_row, new_state
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
