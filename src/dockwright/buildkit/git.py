"""``ADD <git URL>``: BuildKit's git sources (``https://host/repo.git#ref:subdir``, ``git@host:repo.git``,
``git://``, ``ssh://``): the ref resolved to a commit (the step's cache key), the tree at that commit checked out
with ``git`` into a directory (without ``.git`` unless ``--keep-git-dir``), its ``subdir`` as the source."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

from ..errors import InvalidArgument

__all__ = ["is_git_url", "GitSource", "parse_git_url", "fetch_git"]

_SCHEMES = ("git://", "git@", "ssh://")


def is_git_url(s: str) -> bool:
    """Whether an ADD source names a git repository (BuildKit's ``isGitTransport`` / ``.git`` URLs)."""
    base = s.split("#", 1)[0]
    if s.startswith(_SCHEMES):
        return True
    return bool(re.match(r"^https?://", s)) and base.endswith(".git")


class GitSource:
    """A parsed git URL: the remote, the ref (``""``: the default branch) and the subdirectory."""

    def __init__(self, remote: str, ref: str, subdir: str) -> None:
        self.remote, self.ref, self.subdir = remote, ref, subdir


def parse_git_url(s: str) -> GitSource:
    """``<remote>#<ref>:<subdir>`` split into its parts."""
    remote, _, frag = s.partition("#")
    ref, _, subdir = frag.partition(":")
    if ".." in Path(subdir).parts:
        raise InvalidArgument(f"invalid git subdirectory {subdir!r}")
    return GitSource(remote, ref, subdir.strip("/"))


async def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    try:
        proc = await asyncio.create_subprocess_exec("git", *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise InvalidArgument(f"git is needed for ADD of a git repository: {exc}") from exc
    try:
        out, err = await proc.communicate()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise InvalidArgument(f"failed to fetch remote {args[-1] if args else ''}: "
                              f"{err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def resolve_commit(src: GitSource) -> str:
    """The commit the URL's ref names now (``git ls-remote``)."""
    if re.fullmatch(r"[0-9a-f]{40}", src.ref):
        return src.ref
    out = await _git("ls-remote", src.remote, *( [src.ref] if src.ref else ["HEAD"]))
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if not src.ref or name in (src.ref, f"refs/heads/{src.ref}", f"refs/tags/{src.ref}",
                                   f"refs/tags/{src.ref}^{{}}"):
            return sha
    raise InvalidArgument(f"repository does not contain ref {src.ref}")


async def fetch_git(src: GitSource, commit: str, dest: Path, *, keep_git_dir: bool = False) -> Path:
    """Check the repository out at ``commit`` into ``dest``; returns the directory to copy (``subdir``)."""
    dest.mkdir(parents=True, exist_ok=True)
    await _git("init", "-q", str(dest))
    await _git("-C", str(dest), "remote", "add", "origin", src.remote)
    try:
        await _git("-C", str(dest), "fetch", "-q", "--depth=1", "origin", commit)
    except InvalidArgument:  # a server that cannot fetch one commit (dumb HTTP): everything, then the commit
        await _git("-C", str(dest), "fetch", "-q", "origin")
    await _git("-C", str(dest), "checkout", "-q", commit)
    if not keep_git_dir:
        shutil.rmtree(dest / ".git", ignore_errors=True)
    out = dest / src.subdir if src.subdir else dest
    if not out.is_dir():
        raise InvalidArgument(f"git subdirectory {src.subdir} not found in {src.remote}")
    return out
