"""Docker image references: parsing, normalisation and the familiar form, as dockerd does them.

This module owns the grammar of image names (``[domain/]path[:tag][@digest]``) and every rule
dockerd applies to them. It is a port of github.com/distribution/reference (``Parse``,
``ParseNormalizedNamed``, ``ParseNamed``, ``ParseAnyReference``, ``ParseDockerRef``,
``TagNameOnly``, ``WithTag``, ``WithDigest``, ``TrimNamed``, ``FamiliarName``,
``FamiliarString``), of the digest validation of github.com/opencontainers/go-digest that
``Parse`` relies on, and of the few places where moby's API routes combine them (the ``repo`` and
``tag`` form values of tag, commit and import; the ``fromImage`` and ``tag`` values of pull; the
short-ID test of image lookup).

Error messages are dockerd's, word for word; every error is an :class:`InvalidReference`.

Notes on fidelity to Go:

* Go's ``$`` matches only at the very end of the text, Python's also before a final newline,
  so every pattern here is applied with ``fullmatch``.
* ``\\w`` is ASCII in Go; the patterns are compiled with ``re.ASCII``.
* ``strings.ToLower`` uses simple (one rune to one rune) case mapping; :func:`_go_lower` does too.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .errors import InvalidReference

__all__ = [
    "DEFAULT_DOMAIN",
    "LEGACY_DEFAULT_DOMAIN",
    "OFFICIAL_REPO_PREFIX",
    "DEFAULT_TAG",
    "NAME_TOTAL_LENGTH_MAX",
    "Reference",
    "DigestReference",
    "parse",
    "parse_normalized_named",
    "parse_named",
    "parse_any_reference",
    "parse_docker_ref",
    "parse_pull_reference",
    "with_name",
    "tag_name_only",
    "split_docker_domain",
    "split_repo_tag",
    "familiarize",
    "familiar_match",
    "validate_tag",
    "validate_digest",
    "is_full_id",
    "is_id_prefix",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
LOCALHOST = "localhost"
NAME_TOTAL_LENGTH_MAX = 255  # of the path (remote name), the domain not counted

# ---- error messages (distribution/reference, go-digest, moby) -----------------------------------------------

ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_DIGEST_INVALID_FORMAT = "invalid digest format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_NAME_NOT_CANONICAL = "repository name must be canonical"
# go-digest
ERR_CHECKSUM_INVALID_FORMAT = "invalid checksum digest format"
ERR_CHECKSUM_INVALID_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"
# moby
ERR_DIGEST_REPO = "cannot import digest reference"
ERR_AMBIGUOUS_SHA256 = "refusing to create an ambiguous tag using digest algorithm as name"

# ---- grammar (distribution/reference regexp.go) ---------------------------------------------------------

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
_IPV6ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII)
_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(_IDENTIFIER, re.ASCII)

# go-digest: the algorithms dockerd has registered, and the pattern of a well-formed digest
_ALGORITHM_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)

# moby daemon/containerd/image.go: what image lookup tries as a truncated image ID
_FULL_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{64}", re.ASCII)
_ID_PREFIX_RE = re.compile(r"(?:sha256:)?[a-f0-9]{4,64}", re.ASCII)


def _go_lower(s: str) -> str:
    """Go's ``strings.ToLower``: one rune to one rune (U+0130 becomes a plain ``i``)."""
    if s.isascii():
        return s.lower()
    return "".join("i" if c == "\u0130" else c.lower() for c in s)


def _parse_go_digest(s: str) -> str:
    """go-digest's ``Parse``: return ``s`` if it is a valid digest of a registered algorithm."""
    i = s.find(":")
    if i <= 0 or i + 1 == len(s):
        raise InvalidReference(ERR_CHECKSUM_INVALID_FORMAT)
    algorithm, encoded = s[:i], s[i + 1 :]
    length = _ALGORITHM_HEX_LENGTH.get(algorithm)
    if length is None:
        if not _GO_DIGEST_RE.fullmatch(s):
            raise InvalidReference(ERR_CHECKSUM_INVALID_FORMAT)
        raise InvalidReference(ERR_DIGEST_UNSUPPORTED)
    if len(encoded) != length:
        raise InvalidReference(ERR_CHECKSUM_INVALID_LENGTH)
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidReference(ERR_CHECKSUM_INVALID_FORMAT)
    return s


def _familiar_name(domain: str, path: str) -> str:
    if domain == DEFAULT_DOMAIN:
        if path.startswith(OFFICIAL_REPO_PREFIX):
            remainder = path[len(OFFICIAL_REPO_PREFIX) :]
            if "/" not in remainder:
                return remainder
        return path
    return f"{domain}/{path}" if domain else path


def _suffix(tag: str | None, digest: str | None) -> str:
    return (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


@dataclass(frozen=True, slots=True)
class Reference:
    """A named reference: ``domain/path``, optionally with a tag, a digest, or both.

    References from :func:`parse_normalized_named` always have a domain, with one exception
    inherited from Go: a first component that splitDockerDomain takes for a domain but the
    grammar does not (``foo_bar.com/x``) ends up in the path, and the domain is ``""``.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        """The full reference: ``docker.io/library/busybox:latest``, ``…/busybox@sha256:…``, ``name:tag@digest``."""
        return self.name + _suffix(self.tag, self.digest)

    @property
    def familiar_name(self) -> str:
        """FamiliarName: ``busybox``, ``user/app``, ``localhost:5000/a/b``."""
        return _familiar_name(self.domain, self.path)

    def familiar(self) -> str:
        """FamiliarString: the familiar name with ``:tag`` and/or ``@digest``."""
        return self.familiar_name + _suffix(self.tag, self.digest)

    def with_tag(self, tag: str) -> Reference:
        """WithTag: this reference with ``tag`` in place of its tag; a digest is kept."""
        validate_tag(tag)
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        """WithDigest: this reference with ``digest`` in place of its digest; a tag is kept."""
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidReference(ERR_DIGEST_INVALID_FORMAT)
        return Reference(self.domain, self.path, self.tag, digest)

    def name_only(self) -> Reference:
        """TrimNamed: the repository, without tag or digest."""
        return Reference(self.domain, self.path)

    @property
    def is_name_only(self) -> bool:
        """IsNameOnly: neither tag nor digest."""
        return not self.tag and not self.digest


@dataclass(frozen=True, slots=True)
class DigestReference:
    """A reference that is only a digest (``sha256:…``), as ParseAnyReference returns for IDs."""

    digest: str

    def __str__(self) -> str:
        return self.digest

    def familiar(self) -> str:
        """FamiliarString of a digest-only reference: the digest itself."""
        return self.digest


def split_docker_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain: ``(domain, remainder)``, the remainder still carrying any tag or digest.

    The first component is a domain when it is ``localhost``, contains ``.`` or ``:``, or has an
    uppercase letter; ``index.docker.io`` becomes ``docker.io``; a one-component path on
    ``docker.io`` gets ``library/``. A name without ``/`` is always on docker.io.
    """
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == LOCALHOST:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    elif _go_lower(maybe_domain) != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse(s: str) -> Reference:
    """Parse: the reference grammar, without normalisation (``busybox`` has no domain)."""
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        if s == "":
            raise InvalidReference(ERR_NAME_EMPTY)
        if _REFERENCE_RE.fullmatch(_go_lower(s)) is not None:
            raise InvalidReference(ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidReference(ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _NAME_RE.fullmatch(name)
    if nm is not None:
        domain, path = nm.group(1) or "", nm.group(2)
    else:  # pragma: no cover - name matched the same grammar above
        domain, path = "", name
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(ERR_NAME_TOO_LONG)
    if digest:
        _parse_go_digest(digest)
    return Reference(domain, path, tag or None, digest or None)


def with_name(name: str) -> Reference:
    """WithName: a bare repository name (no tag, no digest, no normalisation)."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        raise InvalidReference(ERR_REFERENCE_INVALID_FORMAT)
    if len(m.group(2)) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(ERR_NAME_TOO_LONG)
    return Reference(m.group(1) or "", m.group(2))


def parse_normalized_named(s: str) -> Reference:
    """ParseNormalizedNamed: ``busybox`` → ``docker.io/library/busybox`` (no tag is added)."""
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = split_docker_domain(s)
    sep = remainder.find(":")
    remote = remainder[:sep] if sep > -1 else remainder
    if _go_lower(remote) != remote:
        raise InvalidReference(f"invalid reference format: repository name ({remote}) must be lowercase")
    return parse(f"{domain}/{remainder}")


def parse_named(s: str) -> Reference:
    """ParseNamed: like :func:`parse_normalized_named`, but ``s`` must already be the full form."""
    ref = parse_normalized_named(s)
    if str(ref) != s:
        raise InvalidReference(ERR_NAME_NOT_CANONICAL)
    return ref


def parse_any_reference(s: str) -> Reference | DigestReference:
    """ParseAnyReference: a 64-hex ID or a digest gives a :class:`DigestReference`, else a named one."""
    if _IDENTIFIER_RE.fullmatch(s):
        return DigestReference("sha256:" + s)
    try:
        return DigestReference(_parse_go_digest(s))
    except InvalidReference:
        pass
    return parse_normalized_named(s)


def tag_name_only(ref: Reference) -> Reference:
    """TagNameOnly: add ``:latest`` when the reference has neither tag nor digest."""
    if ref.is_name_only:
        return ref.with_tag(DEFAULT_TAG)
    return ref


def parse_docker_ref(s: str) -> Reference:
    """ParseDockerRef: normalised, ``:latest`` added when bare; tag dropped when a digest is there too."""
    ref = parse_normalized_named(s)
    if ref.tag and ref.digest:
        return with_name(ref.name).with_digest(ref.digest)
    return tag_name_only(ref)


def parse_pull_reference(image: str, tag: str = "") -> Reference:
    """The reference ``POST /images/create`` pulls for ``fromImage`` and ``tag``.

    One trailing ``:`` is dropped (``pull -a`` sends one). A ``tag`` that is a valid digest
    replaces tag and digest; any other ``tag`` replaces the tag (a digest is kept). No
    ``:latest`` is added: a bare name with no ``tag`` is what asks for every tag. The check that
    refuses ``scratch`` (403) is the caller's.
    """
    ref = parse_normalized_named(image.removesuffix(":"))
    if tag:
        try:
            dgst = _parse_go_digest(tag)
        except InvalidReference:
            return ref.with_tag(tag)
        return ref.name_only().with_digest(dgst)
    return ref


def split_repo_tag(repo: str, tag: str | None) -> Reference:
    """The tagged reference dockerd makes of the ``repo`` and ``tag`` form values (tag, commit, import).

    moby's ``httputils.RepoTagReference`` followed by the check of ``postImagesTag``: ``repo`` is
    normalised and may carry its own tag, which a non-empty ``tag`` replaces; without either, the
    tag is ``latest``. A ``repo`` with a digest is refused ("cannot import digest reference"), a
    ``tag`` that is not a tag (a digest, say) is refused ("invalid tag format"), and so is a
    repository whose familiar name is ``sha256``.

    dockerd treats an empty ``repo`` as "no reference" (commit and import make an untagged image;
    the tag route answers 200 and does nothing); callers must handle that before calling this,
    which would raise "invalid reference format".
    """
    ref = parse_normalized_named(repo)
    if ref.digest:
        raise InvalidReference(ERR_DIGEST_REPO)
    ref = ref.with_tag(tag) if tag else tag_name_only(ref)
    if ref.familiar_name == "sha256":
        raise InvalidReference(ERR_AMBIGUOUS_SHA256)
    return ref


@functools.lru_cache(maxsize=1 << 16)
def familiarize(full: str) -> str:
    """FamiliarString of a (full or familiar) reference: ``docker.io/library/busybox:latest`` → ``busybox:latest``."""
    return parse_normalized_named(full).familiar()


def validate_tag(tag: str) -> None:
    """Raise "invalid tag format" unless ``tag`` matches ``[\\w][\\w.-]{0,127}``."""
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(ERR_TAG_INVALID_FORMAT)


def validate_digest(digest: str) -> str:
    """go-digest's Parse: return ``digest`` if valid for sha256/sha384/sha512, else raise with go-digest's words."""
    return _parse_go_digest(digest)


def is_full_id(s: str) -> bool:
    """A full image ID: 64 lowercase hex digits, optionally prefixed ``sha256:``."""
    return _FULL_ID_RE.fullmatch(s) is not None


def is_id_prefix(s: str) -> bool:
    """What dockerd (containerd image store) tries as a truncated image ID: ``(sha256:)?[a-f0-9]{4,64}``."""
    return _ID_PREFIX_RE.fullmatch(s) is not None


def _go_glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Go's path.Match syntax as a regex: ``*`` and ``?`` never match ``/``; ``[^…]`` classes; ``\\`` escapes."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i >= n:
                raise InvalidReference("syntax error in pattern")
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            j = i + 1
            neg = j < n and pattern[j] == "^"
            if neg:
                j += 1
            cls = []
            first = True
            while j < n and (pattern[j] != "]" or first):
                first = False
                c = pattern[j]
                if c == "\\":
                    j += 1
                    if j >= n:
                        raise InvalidReference("syntax error in pattern")
                    c = pattern[j]
                if j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    hi = pattern[j + 2]
                    if hi == "\\" and j + 3 < n:
                        hi = pattern[j + 3]
                        j += 1
                    cls.append(re.escape(c) + "-" + re.escape(hi))
                    j += 3
                    continue
                cls.append(re.escape(c))
                j += 1
            if j >= n or not cls:
                raise InvalidReference("syntax error in pattern")
            out.append("[" + ("^/" if neg else "") + "".join(cls) + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.ASCII | re.DOTALL)


def familiar_match(pattern: str, familiar: str) -> bool:
    """distribution/reference FamiliarMatch on a familiar string: the whole string, then its name alone."""
    rx = _go_glob_to_regex(pattern)
    if rx.fullmatch(familiar):
        return True
    name = familiar.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return rx.fullmatch(name) is not None
