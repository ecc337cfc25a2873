"""COPY and ADD (``performCopy``): context files (or an image's, ``--from``), heredocs and ADD's URLs copied into
a snapshot of the stage's image and committed, named in the history (and keyed in the cache) by dockerd's
checksums."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ..dockerfile import Env, Heredoc, Lex, Node, parse_heredoc
from ..errors import DockwrightError, InvalidArgument, NotSupported
from ..progress import Emit, Progress, ProgressEvent, StreamText, run_with_events
from . import srchash
from .cache import BuildCache
from .commit import StepCommitter
from .copy import copy_sources, is_archive
from .dockerignore import IgnoreRules
from .options import BuildOptions
from .remote_add import RemoteFile, download, is_url
from .rootfs import RootfsLayers
from .sources import resolve_sources_named
from .stages import Stage, in_thread, stage_env
from .stages import cache_parent as _cache_parent

__all__ = ["AddCopySteps", "NoIgnore"]

#: ``resolve(name, opts)``: the ID of an image by name, pulled if it is not stored (``COPY --from=<image>``).
ResolveImage = Callable[[str, BuildOptions], Awaitable[str]]


class NoIgnore:
    """The ignore rules of a source without a ``.dockerignore`` (an image's files): nothing is ignored."""

    def matches(self, path: str) -> bool:
        """Never."""
        return False


class AddCopySteps:
    """The COPY/ADD steps of a build: sources copied into snapshots under ``<root>/tmp``."""

    def __init__(self, root: Path, cache: BuildCache, committer: StepCommitter, rootfs: RootfsLayers,
                 resolve_image: ResolveImage) -> None:
        self.root = root
        self.cache = cache
        self.committer = committer
        self.rootfs = rootfs
        self.resolve_image = resolve_image

    async def copy_step(self, stage: Stage, n: Node, lex: Lex, opts: BuildOptions, root: Path,
                        ignore: IgnoreRules | None, built: dict[str, str | None]) -> AsyncIterator[ProgressEvent]:
        """COPY/ADD (``performCopy``): the sources are context files (or an image's files with ``--from``),
        heredocs and, for ADD, URLs; the history names them by dockerd's checksums
        (``COPY [--chown=u:g]<file:…|dir:…|multi:…> in <dest> ``), which is also the cache key."""
        instr = n.value.upper()
        flags = dict(_flag(f) for f in n.flags)
        env = Env(stage_env(stage, opts))
        raw = [a.value for a in n.args]

        def expand() -> tuple[list[bool], list[str], str]:
            is_doc = [bool(n.heredocs) and parse_heredoc(r) is not None for r in raw]
            words = [r if doc else lex.process_word(r, env) for r, doc in zip(raw, is_doc, strict=True)]
            return is_doc, words, lex.process_word(flags["chown"], env) if flags.get("chown") else ""

        is_doc, words, chown_word = await in_thread(expand)
        if flags.get("chown"):
            flags["chown"] = chown_word
        if len(words) < 2:
            raise InvalidArgument(f"{instr} requires at least two arguments, but only one was provided. "
                                  f"Destination could not be determined")
        if is_doc[-1]:
            raise InvalidArgument(f"{instr} cannot accept a heredoc as a destination")
        srcs, dest_word = words[:-1], words[-1]
        dest = dest_word
        workdir = stage.config.get("WorkingDir") or "/"
        if not dest.startswith("/"):
            dest = os.path.join(workdir, dest) + ("/" if dest.endswith("/") or dest == "." else "")
        src_root = root
        src_ignore = ignore
        view_key = None
        view_dir = None
        if "from" in flags:
            name = flags["from"].lower()
            other = built[name] if name in built else await self.resolve_image(flags["from"], opts)
            if other is None:
                raise InvalidArgument(f"invalid from flag value {flags['from']}")
            view_key, view_dir = await self.rootfs.mount_image(other)
            src_root = view_dir
            src_ignore = None
        extra = self.root / "tmp" / f"build-src-{os.urandom(8).hex()}"  # heredocs and downloads
        try:
            files: list[Path] = []
            names: list[str] = []  # the name each gets in a directory destination
            ids: list[str] = []
            local = False
            downloaded: list[RemoteFile] = []
            docs = iter(n.heredocs)
            for s, doc in zip(srcs, is_doc, strict=False):  # is_doc also covers the destination
                if doc:
                    path = await asyncio.to_thread(write_heredoc, extra / str(len(files)), next(docs), env)
                    files.append(path)
                    names.append(path.name)
                    ids.append(await asyncio.to_thread(srchash.source_hash, path.parent, path.name, lazy=True))
                elif instr == "ADD" and is_url(s):
                    got: list[RemoteFile] = []

                    def fetch(emit: Emit, u: str = s, got: list[RemoteFile] = got) -> Awaitable[None]:
                        return self._download(u, extra, emit, got)

                    async for ev in run_with_events(fetch):
                        yield ev
                    yield StreamText("\n")
                    if not got[0].name and dest_word.endswith("/"):
                        raise InvalidArgument(f"ADD failed: cannot determine filename for source {s}")
                    files.append(got[0].path)
                    names.append(got[0].path.name)
                    ids.append(got[0].hash)
                    downloaded.append(got[0])
                else:
                    try:
                        named = resolve_sources_named(src_root, s, src_ignore if src_ignore is not None else NoIgnore())
                        found = [p for p, _ in named]
                    except InvalidArgument as exc:
                        raise InvalidArgument(str(exc).replace("COPY failed:", f"{instr} failed:", 1)) from None
                    local = True
                    files.extend(found)
                    names.extend(nm for _, nm in named)
                    known = opts.context_tarsums if view_dir is None else None

                    def hashes(found: list[Path] = found, src_root: Path = src_root,
                               known: dict[str, str] | None = known) -> list[str]:
                        return [srchash.source_hash(src_root, p, lazy=view_dir is not None, known=known)
                                for p in found]

                    ids.extend(await asyncio.to_thread(hashes))
            if not files:
                raise InvalidArgument(f"{instr} failed: no source files were specified")
            src_hash = srchash.combine(ids)
            kind, _, hexpart = src_hash.rpartition(":")
            checksum = "sha256:" + hexpart
            chmod = f"--chmod={flags['chmod']} " if flags.get("chmod") else ""
            chown = f"--chown={flags['chown']}" if flags.get("chown") else ""  # no space before the hash: dockerd's
            created_by = f"/bin/sh -c #(nop) {instr} {chmod}{chown}{src_hash} in {dest_word} "
            # what ADD unpacks: local archives only, never a download or a heredoc
            cmd = "ADD" if instr == "ADD" and local else "COPY"
            if cmd == "ADD" and downloaded and any(await asyncio.to_thread(
                    lambda: [is_archive(r.path) for r in downloaded])):
                raise NotSupported("ADD of a URL that is an archive together with local sources is not supported "
                                   "by this builder: use two ADD instructions")
            cache_parent = _cache_parent(stage.image_id, stage.config)
            if await self.cache.probe(stage, cache_parent, created_by, stage.config, opts) is not None:
                yield StreamText(" ---> Using cache\n")
                return
            chown_spec, chmod_flag = flags.get("chown", ""), flags.get("chmod", "")

            def copy(target: Path) -> None:
                uid, gid = resolve_chown(chown_spec, target)
                copy_sources(files, target, dest, srcs, uid, gid, chmod_flag, cmd == "ADD", names)

            layer = await self.rootfs.layer_from_rootfs(stage, copy, opts, keep_empty=True)
            assert layer is not None
            cc = dict(stage.config)
            cc["Cmd"] = ["/bin/sh", "-c", f"#(nop) {cmd} {kind}:{checksum.split(':')[-1]} in {dest} "]
            await self.committer.commit(stage, dict(stage.config), cc, layer, created_by, empty=False, opts=opts,
                                        cache_parent=cache_parent)
        finally:
            if view_key is not None:
                await self.rootfs.unmount_image(view_key, view_dir)
            shutil.rmtree(extra, ignore_errors=True)

    async def _download(self, url: str, tmp: Path, emit: Emit, out: list[RemoteFile]) -> None:
        """ADD of a URL: the download, its progress as dockerd's ``Downloading`` bar."""
        def progress(current: int, total: int | None) -> None:
            emit(Progress("Downloading", None, current, total))

        try:
            out.append(await download(url, tmp, progress))
        except DockwrightError as exc:
            raise type(exc)(f"ADD failed: {exc}") from exc


def _flag(word: str) -> tuple[str, str]:
    """A flag word (``--chown=1:1``, ``--from=stage``) as its name and value ("" without ``=``)."""
    name, _, value = word.lstrip("-").partition("=")
    return name, value


def write_heredoc(directory: Path, doc: Heredoc, env: Env) -> Path:
    """A COPY/ADD heredoc as the file BuildKit makes of it: named by its delimiter, mode 0664, tabs stripped
    for ``<<-``, variables expanded (quotes kept) unless the delimiter was quoted."""
    content = doc.content
    if doc.chomp:
        content = re.sub(r"(?m)^\t+", "", content)
    if doc.expand:
        lex = Lex("\\")
        lex.skip_process_quotes = True
        content = lex.process_word(content, env)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / doc.name
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    os.chmod(path, 0o664)
    return path


def resolve_chown(spec: str, rootfs: Path) -> tuple[int, int]:
    """``--chown=user[:group]`` as numeric IDs, names looked up in the destination's ``/etc/passwd`` and
    ``/etc/group``."""
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")

    def lookup(name: str, path: str, default: int | None) -> int:
        if name.isdigit():
            return int(name)
        try:
            for line in (rootfs / path).read_text().splitlines():
                parts = line.split(":")
                if parts and parts[0] == name and len(parts) > 2:
                    return int(parts[2])
        except OSError:
            pass
        if default is not None:
            return default
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find uid for user "
                              f"{name}: no such user: {name}")

    uid = lookup(user, "etc/passwd", None)
    gid = lookup(group, "etc/group", None) if group else uid
    return uid, gid
