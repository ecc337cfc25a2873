"""Network namespaces bound to files: made without a process, configured by path, gone with their file."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from dockwright.network import netns
from dockwright.network.bridge import run_ip

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def _links(path: Path) -> list[str]:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def test_create_configure_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "ns" / "abc"
    assert netns.create(path) == path and netns.is_netns(path)
    assert _links(path) == ["lo"]  # a new namespace: only loopback
    host = "dwn" + secrets.token_hex(4)
    run_ip("link", "add", host, "type", "veth", "peer", "name", host + "p")
    try:
        run_ip("link", "set", host + "p", "netns", str(path))
        assert _links(path) == ["lo", host + "p"]
        assert netns.delete(path) and not path.exists()
        # the namespace is gone with its file, and the veth pair with it (the kernel does it asynchronously)
        for _ in range(100):
            if subprocess.run(["ip", "link", "show", host], capture_output=True).returncode != 0:
                break
            subprocess.run(["sleep", "0.02"])
        else:
            pytest.fail("the veth pair outlived its namespace")
    finally:
        run_ip("link", "del", host, check=False)
    assert netns.delete(path) is False  # twice is fine


def test_create_refuses_an_existing_file_and_leaves_other_threads_alone(tmp_path: Path) -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    path = tmp_path / "x"
    netns.create(path)
    try:
        assert os.readlink("/proc/thread-self/ns/net") == before  # the caller's namespace is untouched
        with pytest.raises(FileExistsError):
            netns.create(path)
        assert netns.is_netns(path)
    finally:
        netns.delete(path)


def test_delete_of_a_half_made_file(tmp_path: Path) -> None:
    path = tmp_path / "half"
    path.write_text("")  # what a crash between creating the file and binding leaves
    assert not netns.is_netns(path)
    assert netns.delete(path) and not path.exists()
