"""The typed results of the library API (engine/types.py) and their rendering into the Engine API's JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockwright import DeleteItem, Engine, Image, ImageSummary, InvalidArgument, Progress, PruneReport, Status
from dockwright.api.image_json import delete_json, inspect_json, prune_json, summary_json
from dockwright.api.streams import render
from dockwright.api.versions import Version
from dockwright.progress import begin

from conftest import files_tar


def test_import_returns_an_image_and_the_api_renders_it(tmp_path: Path) -> None:
    async def main() -> None:
        with Engine.open(tmp_path / "data", exec_root=tmp_path / "run", fsync=False) as eng:
            path = tmp_path / "rootfs.tar"
            path.write_bytes(files_tar({"a.txt": b"hello"}))
            image = await eng.images.import_image(path, repo="lib/img", tag="1",
                                                  changes=["LABEL a=b", "CMD [\"sh\"]"], message="m")
            assert isinstance(image, Image)
            assert image.repo_tags == ["lib/img:1"] and image.repo_digests == [] and image.comment == "m"
            assert image.labels == {"a": "b"} and image.config is not None and image.config["Cmd"] == ["sh"]
            assert image.size == 5 and len(image.layers) == 1 and image.raw["rootfs"]["diff_ids"] == image.layers
            assert image.short_id == image.id[7:19] and image.graph_driver is None
            assert image.descriptor.digest.startswith("sha256:") and image.descriptor.size > 0
            new = inspect_json(image, Version((1, 51)))
            assert list(new)[:5] == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment"]
            assert new["GraphDriver"] == {"Data": None, "Name": "overlay2"}
            assert new["RootFS"] == {"Type": "layers", "Layers": image.layers}
            assert new["Descriptor"] == {"mediaType": image.descriptor.media_type,
                                         "digest": image.descriptor.digest, "size": image.descriptor.size}
            assert "Hostname" not in new["Config"] and "VirtualSize" not in new and "Container" not in new
            old = inspect_json(image, Version((1, 43)))
            assert old["VirtualSize"] == 5 and old["Config"]["Hostname"] == "" and "Descriptor" not in old
            with open(path, "rb") as f:
                same = await eng.images.import_image(f)
            assert same.repo_tags == [] and same.comment == "Imported from -"
            listed = eng.images.list(filters={"reference": ["lib/*"]})
            assert [s.id for s in listed] == [image.id] and isinstance(listed[0], ImageSummary)
            assert summary_json(listed[0], Version((1, 51)))["RepoTags"] == ["lib/img:1"]
            assert [s.id for s in eng.images.list(filters={"dangling": ["true"]})] == [same.id]
            report = await eng.images.prune()
            assert isinstance(report, PruneReport) and report.deleted == [DeleteItem(deleted=same.id)]
            assert prune_json(report)["ImagesDeleted"] == [{"Deleted": same.id}]
            assert prune_json(PruneReport()) == {"ImagesDeleted": None, "SpaceReclaimed": 0}
            assert delete_json(DeleteItem(untagged="a:b")) == {"Untagged": "a:b"}
            await eng.images.tag(image.id, "lib/other")
            assert eng.images.get("lib/other:latest").id == image.id
            assert [h.comment for h in eng.images.history("lib/other")] == ["m"]
    asyncio.run(main())


def test_an_import_progress_line_has_no_bar() -> None:
    assert render(Progress("Importing", None, 10, 20, bar=False)) == {
        "status": "Importing", "progressDetail": {"current": 10, "total": 20}}
    assert "progress" in render(Progress("Downloading", "abc", 10, 20))


def test_begin_raises_before_the_first_event() -> None:
    async def failing() -> AsyncIterator[Status]:
        raise InvalidArgument("bad")
        yield Status("never")

    async def two() -> AsyncIterator[Status]:
        yield Status("a")
        yield Status("b")

    async def main() -> None:
        with pytest.raises(InvalidArgument):
            await begin(failing())
        assert [e async for e in await begin(two())] == [Status("a"), Status("b")]
    asyncio.run(main())
