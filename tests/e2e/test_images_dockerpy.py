"""The same image operations through docker-py, with negotiated and pinned API versions."""

from __future__ import annotations

import io

import docker
import docker.errors
import pytest

from conftest import Daemon, small_tar


@pytest.mark.parametrize("version", ["auto", "1.41", "1.44", "1.51"])
def test_docker_py_image_lifecycle(shared_daemon: Daemon, version: str) -> None:
    c = shared_daemon.client(version)
    api = c.api
    repo = f"py/v{version.replace('.', '')}"
    out = api.import_image(src=io.BytesIO(small_tar({"f": version.encode()})), repository=repo, tag="1",
                           changes=["CMD [\"/bin/true\"]", "ENV X=1"])
    lines = [line for line in out.splitlines() if line.strip()] if isinstance(out, str) else out
    assert "sha256:" in str(lines)
    img = c.images.get(f"{repo}:1")
    assert img.tags == [f"{repo}:1"]
    assert img.attrs["Config"]["Cmd"] == ["/bin/true"]
    assert img.attrs["Config"]["Env"] == ["X=1"]
    assert api.inspect_image(img.id)["Id"] == img.id
    hist = api.history(f"{repo}:1")
    assert hist[0]["Id"] == img.id and hist[0]["Tags"] == [f"{repo}:1"]
    assert api.tag(img.id, repo, "2") is True
    ids = api.images(quiet=True)
    assert img.id in ids
    listed = {i.id for i in c.images.list(name=repo)}
    assert listed == {img.id}
    with pytest.raises(docker.errors.ImageNotFound):
        c.images.get(f"{repo}:missing")
    with pytest.raises(docker.errors.APIError) as exc:
        api.remove_image(img.id)
    assert exc.value.status_code == 409
    c.images.remove(f"{repo}:2")
    res = api.remove_image(f"{repo}:1")
    assert {"Deleted": img.id} in res
    with pytest.raises(docker.errors.ImageNotFound):
        api.inspect_image(img.id)
    df = api.df()
    assert isinstance(df["LayersSize"], int)


def test_docker_py_prune_and_events(daemon: Daemon) -> None:
    c = daemon.client()
    import time
    start = time.time()
    dangling = c.api.import_image(src=io.BytesIO(small_tar({"d": b"d"})))
    res = c.images.prune()
    assert res["SpaceReclaimed"] == 1
    assert any("Deleted" in d for d in res["ImagesDeleted"])
    assert c.images.list(all=True) == []
    evs = list(c.api.events(since=int(start) - 1, until=int(time.time()) + 1, decode=True))
    actions = [e["Action"] for e in evs]
    assert actions == ["import", "delete", "prune"]
    assert evs[-1]["Actor"]["Attributes"]["reclaimed"] == "1"
    assert dangling
