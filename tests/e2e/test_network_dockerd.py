"""The bridge network side by side with a real dockerd 20.10 (Debian's docker.io) on a bridge of its own.

Both engines run the same containers from the same dockerd-made busybox image; their ``NetworkSettings`` must have
the same keys (at API 1.41, dockerd 20.10's) and ``docker port`` the same lines (host ports aside). dockerd
installs its iptables rules on the host: the test saves the iptables state before and restores it after.
Skipped, with the reason, only where dockerd cannot run.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, Daemon
from dockerd import Dockerd, dockerd_unavailable
from netenv import Bridge, bridge, make_bridge, net_daemon, remove_bridge  # noqa: F401

pytestmark = pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (``Networks.bridge.IPAddress``); map keys that are data (port keys, network
    names) kept, since they must agree too."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(value, list):
        for v in value:
            out |= _keys(v, prefix + "[].")
    return out


@pytest.fixture
def engines(tmp_path: Path, bridge: Bridge) -> Iterator[tuple[Daemon, Dockerd]]:
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    with contextlib.ExitStack() as undo:  # each step undone, in reverse, whatever fails
        undo.callback(subprocess.run, ["iptables-restore"], input=saved, text=True, check=True)
        theirs_bridge = make_bridge()
        undo.callback(remove_bridge, theirs_bridge)
        ours = net_daemon(tmp_path / "d", bridge)
        undo.callback(ours.stop)
        ours.start()
        real = Dockerd(ours.docker_config, ("--bridge", theirs_bridge.name))
        undo.callback(real.stop)
        why = real.start()
        if why is not None:
            pytest.skip(f"dockerd did not start here: {why}")
        for engine in (ours, real):
            undo.callback(_remove_containers, engine)
            engine.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        yield ours, real


def _remove_containers(engine: Daemon | Dockerd) -> None:
    ids = engine.docker("ps", "-aq", check=False).stdout.decode().split()
    for cid in ids:
        engine.docker("rm", "-f", cid, check=False)


def _port_lines(text: str) -> list[str]:
    return [re.sub(r":\d{4,5}$", ":PORT", line) for line in text.splitlines()]


def test_network_settings_and_docker_port_like_dockerd(engines: tuple[Daemon, Dockerd],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ours, real = engines
    monkeypatch.setenv("DOCKER_API_VERSION", "1.41")  # dockerd 20.10's: the same version against both
    cases = {
        "published": ["-p", "127.0.0.1::80", "-p", "{port}:80/udp", "--expose", "90"],
        "publish-all": ["-P", "--expose", "80"],
        "plain": [],
        "none": ["--network", "none"],
        "host": ["--network", "host"],
    }
    for name, args in cases.items():
        ids = {}
        for engine, port in ((ours, 18080), (real, 18081)):  # both on this host: not the same fixed port
            ids[engine] = engine.out("run", "-d", *(a.format(port=port) for a in args), "bb:1", "busybox", "sleep",
                                     "300")
        ns = {e: json.loads(e.out("inspect", "--format", "{{json .NetworkSettings}}", cid)) for e, cid in ids.items()}
        assert _keys(ns[ours]) == _keys(ns[real]), name
        assert ns[ours]["Networks"].keys() == ns[real]["Networks"].keys(), name
        for e in ids:  # the shapes of the values too: which are empty, which are set
            assert ns[e]["Ports"] is not None
        assert {k: v is None for k, v in ns[ours]["Ports"].items()} == \
            {k: v is None for k, v in ns[real]["Ports"].items()}, name
        port = {e: e.docker("port", cid, check=False) for e, cid in ids.items()}
        assert _port_lines(port[ours].stdout.decode()) == _port_lines(port[real].stdout.decode()), name
        modes = {e: e.out("inspect", "--format", "{{.HostConfig.NetworkMode}}", cid) for e, cid in ids.items()}
        assert modes[ours] == modes[real], name
        for e, cid in ids.items():
            e.out("stop", "-t", "0", cid)
        stopped = {e: json.loads(e.out("inspect", "--format", "{{json .NetworkSettings}}", cid))
                   for e, cid in ids.items()}
        assert _keys(stopped[ours]) == _keys(stopped[real]), name
        assert stopped[ours]["Ports"] == stopped[real]["Ports"], name
    ls = {e: e.out("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}") for e in (ours, real)}
    assert ls[ours] == ls[real]
