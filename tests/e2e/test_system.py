"""System endpoints and API conventions, through raw HTTP, the docker CLI and docker-py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Daemon


def test_ping_headers(shared_daemon: Daemon) -> None:
    status, headers, body = shared_daemon.api("GET", "/_ping")
    assert status == 200 and body == b"OK"
    assert headers["api-version"] == "1.51"
    assert headers["builder-version"] == "2"  # BuildKit, as dockerd 23+ (clients choose by it)
    assert headers["ostype"] == "linux"
    assert headers["server"].startswith("Docker/")
    assert headers["docker-experimental"] == "false"
    status, headers, body = shared_daemon.api("HEAD", "/v1.41/_ping")
    assert status == 200 and body == b""
    assert headers["api-version"] == "1.51"


def test_version_bounds_and_prefixes(shared_daemon: Daemon) -> None:
    status, body = shared_daemon.api_json("GET", "/v1.99/version")
    assert status == 400
    assert body == {"message": "client version 1.99 is too new. Maximum supported API version is 1.51"}
    status, body = shared_daemon.api_json("GET", "/v1.12/version")
    assert status == 400
    assert body == {"message": "client version 1.12 is too old. Minimum supported API version is 1.24, "
                               "please upgrade your client to a newer version"}
    status, body = shared_daemon.api_json("GET", "/version")
    assert status == 200 and body["ApiVersion"] == "1.51" and body["MinAPIVersion"] == "1.24"
    assert body["Components"][0]["Name"] == "Engine" and "ApiVersion" in body["Components"][0]["Details"]
    status, body = shared_daemon.api_json("GET", "/v1.24/version")
    assert status == 200
    status, body = shared_daemon.api_json("GET", "/v1.51/nothing/here")
    assert status == 404 and body == {"message": "page not found"}


def test_docker_version_and_info(shared_daemon: Daemon) -> None:
    out = shared_daemon.out("version", "--format", "{{json .Server}}")
    server = json.loads(out)
    assert server["ApiVersion"] == "1.51"
    info = json.loads(shared_daemon.out("info", "--format", "{{json .}}"))
    assert info["DockerRootDir"] == str(shared_daemon.data_root)
    assert info["NCPU"] == os.cpu_count()
    assert info["MemTotal"] > 0
    assert info["Driver"] == "overlay2"
    assert info["OSType"] == "linux"
    assert "IndexConfigs" in info["RegistryConfig"]
    assert isinstance(info["Images"], int)


@pytest.mark.parametrize("version", ["auto", "1.41", "1.44", "1.51"])
def test_docker_py_system(shared_daemon: Daemon, version: str) -> None:
    c = shared_daemon.client(version)
    assert c.ping() is True
    assert c.api.version()["ApiVersion"] == "1.51"
    info = c.api.info()
    assert info["DockerRootDir"] == str(shared_daemon.data_root)
    df = c.api.df()
    assert "LayersSize" in df and isinstance(df["Images"], list)
    if version == "1.41":
        assert "BuilderSize" in df


def test_second_daemon_on_same_root_refuses(daemon: Daemon, tmp_path: Path) -> None:
    other = Daemon(tmp_path / "other")
    other.data_root = daemon.data_root
    with pytest.raises(RuntimeError) as exc:
        other.start(timeout=10)
    assert "in use by another dockwright process" in str(exc.value)


def test_bad_daemon_json(tmp_path: Path) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text("{not json")
    p = subprocess.run([sys.executable, "-m", "dockwright.cli.main", "serve", "-H", f"unix://{tmp_path}/s.sock",
                        "--data-root", str(tmp_path / "root"), "--config-file", str(cfg)],
                       capture_output=True, timeout=30)
    assert p.returncode == 1
    assert b"unable to configure the Docker daemon with file" in p.stderr


def test_daemon_json_keys_and_unknown_warning(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d")
    d.base.mkdir(parents=True, exist_ok=True)
    (d.base / "daemon.json").write_text(json.dumps({"registry-mirrors": ["http://127.0.0.1:5999"],
                                                    "insecure-registries": ["myreg.example:5000"],
                                                    "no-such-key": 1}))
    d.start()
    try:
        status, info = d.api_json("GET", "/info")
        assert info["RegistryConfig"]["Mirrors"] == ["http://127.0.0.1:5999/"]
        assert "myreg.example:5000" in info["RegistryConfig"]["IndexConfigs"]
        assert "no-such-key" in d.log()
    finally:
        assert d.stop() == 0


def test_sigterm_clean_shutdown_removes_socket(daemon: Daemon) -> None:
    assert daemon.sock.exists()
    assert daemon.stop() == 0
    assert not daemon.sock.exists()


def test_events_since_until(shared_daemon: Daemon) -> None:
    from conftest import small_tar
    start = time.time()
    shared_daemon.docker("import", "-", "evtest:1", input=small_tar({"e.txt": b"x"}))
    shared_daemon.docker("tag", "evtest:1", "evtest:2")
    shared_daemon.docker("rmi", "evtest:2")
    end = time.time() + 1
    out = shared_daemon.out("events", "--since", str(int(start) - 1), "--until", str(int(end) + 1),
                            "--filter", "type=image", "--format", "{{json .}}")
    evs = [json.loads(line) for line in out.splitlines()]
    actions = [e["Action"] for e in evs]
    assert actions[:2] == ["tag", "import"] and "untag" in actions
    tag_ev = evs[0]
    assert tag_ev["Type"] == "image" and tag_ev["Actor"]["Attributes"]["name"] == "evtest:1"
    assert tag_ev["Actor"]["ID"].startswith("sha256:")
    out = shared_daemon.out("events", "--since", str(int(start) - 1), "--until", str(int(end) + 1),
                            "--filter", "event=untag", "--format", "{{.Action}}")
    assert out.splitlines() == ["untag"]
    c = shared_daemon.client()
    evs = list(c.api.events(since=int(start) - 1, until=int(end) + 1, decode=True,
                            filters={"image": "evtest:1"}))
    assert [e["Action"] for e in evs] == ["tag"]
    status, body = shared_daemon.api_json("GET", f"/events?since={int(end) + 100}&until={int(start)}")
    assert status == 400


def test_error_shape_as_the_cli_reads_it(shared_daemon: Daemon) -> None:
    status, headers, body = shared_daemon.api("DELETE", "/v1.51/images/nope")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "No such image: nope:latest"}
    p = shared_daemon.docker("rmi", "nope", check=False)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == "Error response from daemon: No such image: nope:latest"
