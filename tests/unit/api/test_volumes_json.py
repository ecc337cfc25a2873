"""Unit tests of api/volumes.py's ``volume_json`` (dockerd's ``Volume``), against the specs at 1.41, 1.44, 1.51.
(Named ``_json`` because tests/e2e/test_volumes.py holds the basename.)"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from dockwright.api.volumes import volume_json
from dockwright.engine.volumes import Volume, created_at

from specdefs import properties


def vol(**kw: object) -> Volume:
    fields: dict[str, object] = dict(name="data", driver="local", labels={"z": "1", "a": "2"},
                                     options={"type": "tmpfs", "device": "tmpfs"}, created=1_500_000_000.7,
                                     anonymous=False, mountpoint=Path("/var/lib/dockwright/volumes/data/_data"))
    fields.update(kw)
    return Volume(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["1.41", "1.44", "1.51"])
def test_fields_are_the_specs(spec: str) -> None:
    keys = set(properties(spec, "Volume"))
    plain = volume_json(vol())
    assert set(plain) <= keys
    assert keys - set(plain) <= {"Status", "ClusterVolume", "UsageData"}  # omitempty
    assert set(volume_json(vol(), {"RefCount": 1, "Size": 2})) <= keys


def test_values_and_go_map_order() -> None:
    out = volume_json(vol())
    assert list(out) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
    assert list(out["Labels"]) == ["a", "z"] and list(out["Options"]) == ["device", "type"]
    assert (out["Name"], out["Driver"], out["Scope"]) == ("data", "local", "local")
    assert out["Mountpoint"] == "/var/lib/dockwright/volumes/data/_data"
    assert out["CreatedAt"] == created_at(1_500_000_000.7)
    assert "UsageData" not in out


def test_empty_labels_and_options_are_null() -> None:
    out = volume_json(vol(labels={}, options=None))
    assert out["Labels"] is None and out["Options"] is None


def test_usage_data_only_when_given() -> None:
    out = volume_json(vol(), {"RefCount": 3, "Size": -1})
    assert out["UsageData"] == {"RefCount": 3, "Size": -1}
    assert list(out)[-1] == "UsageData"


def test_created_at_is_rfc3339_to_the_second_in_local_time() -> None:
    text = created_at(1_500_000_000.9)
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.timestamp() == 1_500_000_000
    assert "." not in text
