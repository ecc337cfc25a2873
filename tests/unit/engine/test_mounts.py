"""moby's mount parser: Binds, Mounts and image volumes."""

from __future__ import annotations

import pytest

from dockwright.engine.mounts import bind_daemon_root, image_volume, parse_bind, parse_mount, tmpfs_data
from dockwright.errors import InvalidArgument, SystemError_


def test_parse_bind() -> None:
    mp = parse_bind("/src:/dst:ro,rshared")
    assert (mp["Type"], mp["Source"], mp["Destination"], mp["RW"], mp["Propagation"]) == \
        ("bind", "/src", "/dst", False, "rshared")
    vol = parse_bind("name:/v")
    assert (vol["Type"], vol["Name"], vol["Mode"]) == ("volume", "name", "z")
    with pytest.raises(SystemError_, match="invalid volume specification"):
        parse_bind(":/x")


def test_parse_mount_and_tmpfs() -> None:
    with pytest.raises(InvalidArgument, match="field Target must not be empty"):
        parse_mount({"Type": "volume"})
    mp = parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}})
    assert mp["TmpfsData"] == "size=1m,mode=1777"
    assert tmpfs_data({}, True) == "ro"


def test_daemon_root_and_image_volume() -> None:
    mp = parse_bind("/var/lib:/x")
    bind_daemon_root(mp, "/var/lib/dockwright")
    assert mp["Propagation"] == "rslave"
    assert image_volume("/data")["Anonymous"] is True
