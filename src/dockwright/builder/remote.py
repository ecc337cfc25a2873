""":func:`fetch_remote`: the ``remote`` parameter of ``POST /build`` (a tarball URL, a plain-text Dockerfile URL, a
git repository) made into a build context as :func:`~.context.extract_context` makes the request body's."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..distribution.http import client_session
from ..errors import DockwrightError, InvalidArgument
from .context import CHUNK, DEFAULT_DOCKERFILE, ContextInfo, extract_context, finish_context
from .dockerignore import DockerIgnore
from .paths import scoped_resolve as _scoped_resolve

__all__ = ["fetch_remote", "is_git_url"]

# ==================================================================================================
# remote contexts

# dockerd's list, plus zstd (any compression the extractor reads)
_ACCEPTABLE_MIME = re.compile(
    r"(?:application/(?:(?:x\-)?tar|octet\-stream|((?:x\-)?(?:gzip|bzip2?|xz|zstd)))|(?:text/plain))"
)
_MAX_PREAMBLE = 100
_GIT_FRAGMENT = re.compile(r"\.git(?:#.+)?$")


def _detect_content_type(data: bytes) -> str:
    """A reduced ``http.DetectContentType``: enough to tell text, HTML/XML and common binaries apart."""
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for sig in (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
                b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--"):
        if upper.startswith(sig) and len(stripped) > len(sig) and stripped[len(sig)] in b" >":
            return "text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for sig, ct in ((b"%PDF-", "application/pdf"), (b"\x1f\x8b\x08", "application/x-gzip"),
                    (b"PK\x03\x04", "application/zip"), (b"Rar!\x1a\x07", "application/x-rar-compressed"),
                    (b"GIF8", "image/gif"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg")):
        if data.startswith(sig):
            return ct
    if data.startswith((b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")):
        return "text/plain; charset=utf-8"
    if any(b <= 0x08 or b == 0x0B or 0x0E <= b <= 0x1A or 0x1C <= b <= 0x1F for b in data[:512]):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def is_git_url(remote: str) -> bool:
    """moby's ``urlutil.IsGitURL`` (plus ``file://`` URLs, for local repositories)."""
    if remote.startswith(("http://", "https://")) and _GIT_FRAGMENT.search(remote):
        return True
    return remote.startswith(("git://", "github.com/", "git@", "file://"))


async def fetch_remote(remote: str, dest: Path, *, dockerfile_name: str = DEFAULT_DOCKERFILE) -> ContextInfo:
    """Materialise the ``remote`` build context of ``POST /build`` into ``dest``.

    * a git URL (``https://…/x.git#ref:subdir``, ``git://``, ``git@…``, ``github.com/…``, ``file://``)
      is fetched with the git CLI as moby's ``gitutils`` does (shallow unless a dumb HTTP server);
    * another http(s) URL is downloaded: ``text/plain`` content becomes ``dest/Dockerfile``, anything
      else is extracted as a tarball (see :func:`extract_context`).

    Errors raise :class:`InvalidArgument` with dockerd's words.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if is_git_url(remote):
        await _git_context(remote, dest)
        return await asyncio.to_thread(finish_context, dest, dockerfile_name, [])
    if remote.startswith(("http://", "https://")):
        return await _url_context(remote, dest, dockerfile_name)
    raise InvalidArgument(f"remoteURL ({remote}) could not be recognized as URL")


async def _url_context(remote: str, dest: Path, dockerfile_name: str) -> ContextInfo:
    prefix = f"error downloading remote context {remote}"
    try:
        async with client_session(timeout=aiohttp.ClientTimeout(total=None, sock_connect=60),
                                  trust_env=False) as session:
            async with session.get(remote) as resp:
                if resp.status >= 400:
                    body = await resp.content.read(4096)
                    text = body.decode("utf-8", "replace").strip()
                    raise InvalidArgument(
                        f"{prefix}: failed to GET {remote} with status {resp.status} {resp.reason or ''}".rstrip()
                        + f": {text}"
                    )
                ct = resp.headers.get("Content-Type", "")
                clen = resp.content_length
                plen = clen if clen and 0 < clen <= _MAX_PREAMBLE else _MAX_PREAMBLE
                preamble = b""
                while len(preamble) < plen:
                    piece = await resp.content.read(plen - len(preamble))
                    if not piece:
                        break
                    preamble += piece
                if not preamble:
                    raise InvalidArgument(f"error detecting content type for remote {remote}: empty response")
                content_type = ct
                if not ct or ct == "application/octet-stream":
                    content_type = _detect_content_type(preamble)
                found = _ACCEPTABLE_MIME.search(content_type)
                if not found:
                    raise InvalidArgument(
                        f'error detecting content type for remote {remote}: unsupported Content-Type "{ct}"'
                    )

                async def body_chunks() -> AsyncIterator[bytes]:
                    yield preamble
                    async for piece in resp.content.iter_chunked(CHUNK):
                        yield piece

                if found.group(0) == "text/plain":
                    path = dest / DEFAULT_DOCKERFILE
                    data = bytearray()
                    async for piece in body_chunks():
                        data += piece
                    await asyncio.to_thread(path.write_bytes, bytes(data))
                    return ContextInfo(
                        root=dest, dockerfile=bytes(data), dockerfile_path=DEFAULT_DOCKERFILE, ignore=DockerIgnore([])
                    )
                return await extract_context(body_chunks(), dest, dockerfile_name=dockerfile_name)
    except DockwrightError:
        raise
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        raise InvalidArgument(f"{prefix}: {exc}") from exc


# -- git -------------------------------------------------------------------------------------------


def _parse_git_url(remote: str) -> tuple[str, str, str]:
    """moby's ``parseRemoteURL``: (remote, ref, subdir); an empty ref means the remote's HEAD."""
    if not (remote.startswith("git@") or urlsplit(remote).scheme in ("git", "http", "https", "ssh", "file")):
        remote = "https://" + remote
    if remote.startswith("git@"):
        url, _, fragment = remote.partition("#")
    else:
        parts = urlsplit(remote)
        fragment = parts.fragment
        url = urlunsplit(parts._replace(fragment=""))
    ref, _, subdir = fragment.partition(":")
    if ref.startswith("-"):
        raise InvalidArgument(f"invalid refspec: {ref}")
    return url, ref, subdir


async def _supports_shallow(url: str) -> bool:
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        return True
    service = url + "/info/refs?service=git-upload-pack"
    try:
        async with client_session(timeout=aiohttp.ClientTimeout(total=60), trust_env=False) as session:
            for method in ("HEAD", "GET"):
                try:
                    async with session.request(method, service) as resp:
                        if resp.status == 200:
                            return resp.headers.get("Content-Type") == "application/x-git-upload-pack-advertisement"
                except aiohttp.ClientError:
                    continue
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False
    return False


async def _git(cwd: Path, *args: str, allow_file: bool = False) -> tuple[int, str]:
    env = dict(os.environ)
    env.update(
        GIT_PROTOCOL_FROM_USER="0",
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        HOME="/dev/null",
        LC_ALL="C",
    )
    cmd = ["git", "-c", f"protocol.file.allow={'always' if allow_file else 'never'}", *args]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError as exc:
        raise InvalidArgument("unable to prepare context: git is not installed") from exc
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8", "replace").strip()


async def _git_context(remote: str, dest: Path) -> None:
    url, ref, subdir = _parse_git_url(remote)
    is_file = url.startswith("file://")
    work = Path(tempfile.mkdtemp(prefix=".git-context-", dir=dest.parent))
    try:
        rc, out = await _git(work, "init", "-q")
        if rc:
            raise InvalidArgument(f"failed to init repo at {work}: {out}")
        rc, out = await _git(work, "remote", "add", "origin", url)
        if rc:
            raise InvalidArgument(f"failed add origin repo at {url}: {out}")
        fetch = ["fetch"]
        if await _supports_shallow(url):
            fetch += ["--depth", "1"]
        fetch += ["origin", "--", ref or "HEAD"]
        rc, out = await _git(work, *fetch, allow_file=is_file)
        if rc:
            raise InvalidArgument(f"error fetching: {out}")
        rc, out = (1, "") if not ref else await _git(work, "checkout", "-q", ref)
        if rc:
            rc2, out2 = await _git(work, "checkout", "-q", "FETCH_HEAD")
            if rc2:
                raise InvalidArgument(f"error checking out {ref or 'HEAD'}: {out or out2}")
        rc, out = await _git(work, "submodule", "update", "--init", "--recursive", "--depth=1")
        if rc:
            raise InvalidArgument(f"error initializing submodules: {out}")
        src = work
        if subdir:
            try:
                src = _scoped_resolve(work, subdir)
            except ValueError:
                raise InvalidArgument(f'error setting git context, "{subdir}" not within git root') from None
            if not src.exists():
                raise InvalidArgument(f"error setting git context: stat {src}: no such file or directory")
            if not src.is_dir():
                raise InvalidArgument(f"error setting git context, not a directory: {src}")

        def move() -> None:
            for entry in os.listdir(src):
                target = dest / entry
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                shutil.move(str(src / entry), str(target))

        await asyncio.to_thread(move)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
