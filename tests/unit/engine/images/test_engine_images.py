"""The engine used in-process as a library: import, resolve, tag, delete and GC without any HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dockwright import Engine, EngineConfig
from dockwright.errors import Conflict, DataCorrupted, ImageNotFound, InvalidArgument, Unavailable

from conftest import files_tar


async def _chunks(data: bytes, size: int = 7):  # type: ignore[no-untyped-def]
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_library_import_tag_remove_gc(tmp_path: Path) -> None:
    async def main() -> None:
        with Engine(EngineConfig(data_root=tmp_path, fsync=False)) as eng:
            image = await eng.images.import_image(_chunks(files_tar({"a.txt": b"hello"})), repo="lib/img",
                                                  tag="1", changes=["ENV K=V"])
            image_id = image.id
            assert eng.images.resolve("lib/img:1").id == image_id
            assert eng.images.resolve(image_id[7:19]).id == image_id
            d = eng.images.get("lib/img:1")
            assert d.config is not None and d.config["Env"] == ["K=V"] and d.size == 5
            assert d.repo_tags == ["lib/img:1"] and d.comment == "Imported from -"
            await eng.images.tag(image_id, eng.images.tag_target("lib/other", "x"))  # type: ignore[arg-type]
            with pytest.raises(Conflict):
                await eng.images.remove(image_id)
            items = await eng.images.remove(image_id, force=True)
            assert [i.untagged for i in items if i.untagged] == ["lib/img:1", "lib/other:x"]
            assert items[2].deleted == image_id
            with pytest.raises(ImageNotFound):
                eng.images.resolve("lib/img:1")
            assert list(eng.content.walk()) == []  # config, manifest and layer blobs collected
    asyncio.run(main())


def test_library_bad_input_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        with Engine(EngineConfig(data_root=tmp_path, fsync=False)) as eng:
            with pytest.raises(DataCorrupted):
                await eng.images.import_image(_chunks(b"\x1f\x8b\x08\x00garbage-gzip" * 10), repo="x/y")
            with pytest.raises(InvalidArgument):
                await eng.images.import_image(_chunks(files_tar({"a": b"a"})), repo="x/y", changes=["RUN true"])
            assert list(eng.content.walk()) == [] and list(eng.content.ingests()) == []
            assert eng.images.list(all=True) == []
    asyncio.run(main())


def test_data_root_lock(tmp_path: Path) -> None:
    with Engine(EngineConfig(data_root=tmp_path, fsync=False)):
        with pytest.raises(Unavailable):
            Engine(EngineConfig(data_root=tmp_path, fsync=False))
    Engine(EngineConfig(data_root=tmp_path, fsync=False)).close()  # released on close
