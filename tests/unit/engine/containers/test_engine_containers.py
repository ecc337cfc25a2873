"""The library's typed containers calls without running anything: ``create_container`` → ``Container``,
``inspect``, ``list`` → ``ContainerSummary``, ``remove`` (``run`` is docs/library.md's example)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dockwright import ContainerNotFound, Engine, EngineConfig, ImageNotFound

from conftest import files_tar


def test_create_inspect_list_remove(tmp_path: Path) -> None:
    (tmp_path / "rootfs.tar").write_bytes(files_tar({"bin/tool": b"x"}))

    async def main() -> None:
        with Engine(EngineConfig(data_root=tmp_path / "data", exec_root=tmp_path / "run", fsync=False)) as eng:
            image = await eng.images.import_image(tmp_path / "rootfs.tar", repo="lib/img", tag="1",
                                                  changes=['CMD ["/bin/tool"]', "LABEL from=image"])
            c = await eng.containers.create_container("lib/img:1", name="first", env={"A": "1"},
                                                      labels={"own": "yes"}, workdir="/w", network_mode="none")
            assert (c.name, c.image, c.image_id, c.command) == ("first", "lib/img:1", image.id, ["/bin/tool"])
            assert c.labels == {"from": "image", "own": "yes"} and "A=1" in c.config["Env"]
            assert c.config["WorkingDir"] == "/w" and c.host_config["NetworkMode"] == "none"
            assert c.state.status == "created" and not c.state.running and c.state.exit_code == 0
            assert eng.containers.inspect("first") == c == eng.containers.inspect(c.id[:12])
            second = await eng.containers.create_container(image.id, "/bin/tool arg", network_mode="none")
            assert second.command == ["/bin/tool", "arg"] and second.name != "first"
            assert eng.containers.list() == []  # not running
            listed = eng.containers.list(all=True)
            assert [s.id for s in listed] == [second.id, c.id]
            assert listed[1].command == "/bin/tool" and listed[1].status == "created"
            assert listed[1].labels == c.labels and listed[1].image_id == image.id and listed[1].created > 0
            await eng.containers.remove("first")
            await eng.containers.remove(second.id)
            with pytest.raises(ContainerNotFound):
                eng.containers.inspect("first")
            with pytest.raises(ImageNotFound, match="No such image: no/such:image"):
                await eng.containers.create_container("no/such:image", "x")
    asyncio.run(main())
