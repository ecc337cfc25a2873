"""Import the layer tars of real dockerd archives and compare what we report with what dockerd reported."""

from __future__ import annotations

import json
import tarfile

import pytest

from conftest import FIXTURES, Daemon

INSPECT = FIXTURES / "dockerd-20.10-inspect-whiteouts.json"
SAVE = FIXTURES / "dockerd-20.10-save-whiteouts.tar"


def _layers(path) -> list[bytes]:  # type: ignore[no-untyped-def]
    with tarfile.open(path) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        return [tf.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]


@pytest.mark.skipif(not SAVE.exists(), reason=f"fixture missing: {SAVE}")
def test_imported_fixture_layers_match_dockerd(shared_daemon: Daemon) -> None:
    want = json.loads(INSPECT.read_text())[0]
    layers = _layers(SAVE)
    total = 0
    for i, data in enumerate(layers):
        image_id = shared_daemon.out("import", "-", f"fx/layer:{i}", input=data)
        s, insp = shared_daemon.api_json("GET", f"/v1.41/images/{image_id}/json")
        assert insp["RootFS"]["Layers"] == [want["RootFS"]["Layers"][i]]
        total += insp["Size"]
    assert total == want["Size"]  # dockerd's per-layer diff sizes add up to its image size
    s, insp = shared_daemon.api_json("GET", "/v1.41/images/fx/layer:0/json")
    # the keys that do not depend on paths or on how the image was made have dockerd's shape
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container", "ContainerConfig",
                "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver",
                "RootFS", "Metadata"):
        assert key in insp, key
        assert type(insp[key]) is type(want[key]) or want[key] is None or key == "Created", key
    assert set(insp["Config"]) == set(want["Config"])
    assert set(insp["ContainerConfig"]) == set(want["ContainerConfig"])
    assert insp["RootFS"]["Type"] == "layers"
    assert insp["GraphDriver"]["Name"] == want["GraphDriver"]["Name"]
    hist = shared_daemon.out("history", "--no-trunc", "--format", "{{json .}}", "fx/layer:0").splitlines()
    h = json.loads(hist[0])
    assert h["Size"] == "1.98MB"  # dockerd printed 1.98MB for this layer
