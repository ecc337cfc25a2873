"""Table tests for dockwright.reference, drawn from distribution/reference's normalize_test.go and
reference_test.go, go-digest's validation, and the moby API routes that combine them."""

from __future__ import annotations

import pytest

from dockwright.errors import InvalidArgument, InvalidReference
from dockwright.reference import (
    DEFAULT_DOMAIN,
    LEGACY_DEFAULT_DOMAIN,
    OFFICIAL_REPO_PREFIX,
    DigestReference,
    Reference,
    familiarize,
    is_full_id,
    is_id_prefix,
    parse,
    parse_any_reference,
    parse_docker_ref,
    parse_named,
    parse_normalized_named,
    parse_pull_reference,
    split_docker_domain,
    split_repo_tag,
    tag_name_only,
    validate_digest,
    validate_tag,
    with_name,
)

HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
F64 = "f" * 64
DGST = "sha256:" + F64
REDIS_DGST = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
BUSYBOX_DGST = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"

INVALID_FORMAT = "invalid reference format"
TOO_LONG = "repository name must not be more than 255 characters"


def _err(fn, *args) -> str:
    with pytest.raises(InvalidReference) as exc:
        fn(*args)
    return str(exc.value)


def test_constants():
    assert (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX) == ("docker.io", "index.docker.io", "library/")


def test_invalid_reference_is_invalid_argument():
    with pytest.raises(InvalidArgument):
        parse_normalized_named("-foo")


# ---- normalize_test.go: TestValidateReferenceName / TestValidateRemoteName ------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "docker/docker",
        "library/debian",
        "debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "192.168.0.1",
        "192.168.0.1:80",
        "192.168.0.1:8/debian",
        "192.168.0.2:25000/debian",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "[fc00::1]:5000/docker",
        "[fc00::1]:5000/docker/docker",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        # valid with a hostname: no ambiguity with an identifier
        "docker.io/" + HEX64,
        "Docker/docker",
        "DOCKER/docker",
        # TestValidateRemoteName
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ],
)
def test_valid_names(name):
    parse_normalized_named(name)


@pytest.mark.parametrize(
    "name, message",
    [
        ("https://github.com/docker/docker", INVALID_FORMAT),
        ("docker/Docker", "invalid reference format: repository name (docker/Docker) must be lowercase"),
        ("-docker", INVALID_FORMAT),
        ("-docker/docker", INVALID_FORMAT),
        ("-docker.io/docker/docker", INVALID_FORMAT),
        ("docker///docker", INVALID_FORMAT),
        ("docker.io/docker/Docker", "invalid reference format: repository name (docker/Docker) must be lowercase"),
        ("docker.io/docker///docker", INVALID_FORMAT),
        ("[fc00::1]", INVALID_FORMAT),
        ("[fc00::1]:5000", INVALID_FORMAT),
        ("fc00::1:5000/debian", INVALID_FORMAT),
        ("[fe80::1%eth0]:5000/debian", INVALID_FORMAT),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", INVALID_FORMAT),
        (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
        # TestValidateRemoteName
        ("docker-/docker", INVALID_FORMAT),
        ("-docker-/docker", INVALID_FORMAT),
        ("____/____", INVALID_FORMAT),
        ("_docker/_docker", INVALID_FORMAT),
        ("dock..er/docker", INVALID_FORMAT),
        ("dock_.er/docker", INVALID_FORMAT),
        ("dock-.er/docker", INVALID_FORMAT),
        ("docker/", INVALID_FORMAT),
        (
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because"
            "_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is"
            "_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
            TOO_LONG,
        ),
        # TestInvalidReferenceComponents
        ("-foo", INVALID_FORMAT),
        # more
        ("", INVALID_FORMAT),
        ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
        ("Uppercase:tag", "invalid reference format: repository name (library/Uppercase) must be lowercase"),
        (
            "test:5000/Uppercase/lowercase:tag",
            "invalid reference format: repository name (Uppercase/lowercase) must be lowercase",
        ),
        ("localhost/Foo", "invalid reference format: repository name (Foo) must be lowercase"),
        # the remote is cut at the first ":", so an uppercase algorithm is blamed on the name
        ("a@SHA256:" + F64, "invalid reference format: repository name (library/a@SHA256) must be lowercase"),
        # first component taken for a domain (uppercase) but not one the grammar accepts
        ("Foo_bar/baz", "repository name must be lowercase"),
        ("busybox\n", INVALID_FORMAT),
        ("busybox:latest\n", INVALID_FORMAT),
        (" busybox", INVALID_FORMAT),
        ("busybox:", INVALID_FORMAT),
        ("busybox@", INVALID_FORMAT),
        ("busybox:-tag", INVALID_FORMAT),
        ("busybox:" + "a" * 129, INVALID_FORMAT),
        ("busybox@sha256:abc", INVALID_FORMAT),
        ("bùsybox", INVALID_FORMAT),
    ],
)
def test_invalid_names(name, message):
    assert _err(parse_normalized_named, name) == message


@pytest.mark.parametrize(
    "name, message",
    [
        ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
        ("validname@invaliddigest:" + F64, "unsupported digest algorithm"),
        ("a@sha256:" + "F" * 64, "invalid checksum digest format"),
        ("a@sha512:" + F64, "invalid checksum digest length"),
        ("a@md5:" + "f" * 32, "unsupported digest algorithm"),
        ("a@sha256+b64:" + F64, "unsupported digest algorithm"),
        ("localhost:5000/a@Sha256:" + F64, "invalid reference format: repository name (a@Sha256) must be lowercase"),
    ],
)
def test_digest_errors(name, message):
    assert _err(parse_normalized_named, name) == message


@pytest.mark.parametrize(
    "name, ok",
    [
        ("a" * 247, True),  # "library/" + 247 = 255
        ("a" * 248, False),
        ("x/" + "a" * 253, True),
        ("x/" + "a" * 254, False),
        ("docker.io/" + "a" * 247, True),
        ("example.com/" + "a" * 255, True),  # the domain is not counted
        ("example.com/" + "a" * 256, False),
        ("a" * 247 + ":" + "t" * 128, True),  # nor is the tag
    ],
)
def test_name_length(name, ok):
    if ok:
        parse_normalized_named(name)
    else:
        assert _err(parse_normalized_named, name) == TOO_LONG


# ---- normalize_test.go: TestParseRepositoryInfo ------------------------------------------------------------

REPOSITORY_INFO = [
    # remote name, familiar name, full name, ambiguous name, domain
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    (
        "private/moonbase",
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase",
        "",
        "example.com:8000",
    ),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
    (
        "library/ubuntu-12.04-base",
        "ubuntu-12.04-base",
        "docker.io/library/ubuntu-12.04-base",
        "index.docker.io/library/ubuntu-12.04-base",
        "docker.io",
    ),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]


@pytest.mark.parametrize(
    "remote, familiar, full, domain, given",
    [
        (remote, familiar, full, domain, given)
        for remote, familiar, full, ambiguous, domain in REPOSITORY_INFO
        for given in filter(None, (familiar, full, ambiguous))
    ],
)
def test_repository_info(remote, familiar, full, domain, given):
    ref = parse_normalized_named(given)
    assert ref.familiar_name == familiar
    assert str(ref) == full
    assert ref.name == full
    assert ref.domain == domain
    assert ref.path == remote
    assert ref.tag is None and ref.digest is None


def test_reference_with_tag_and_digest():
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_normalized_named(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest"
    assert ref.digest == "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    assert ref.familiar() == short


def test_invalid_reference_components():
    ref = parse_normalized_named("busybox")
    assert _err(ref.with_tag, "-foo") == "invalid tag format"
    assert _err(ref.with_digest, "foo") == "invalid digest format"


# ---- normalize_test.go: TestParseAnyReference ----------------------------------------------------------------


@pytest.mark.parametrize(
    "given, equivalent",
    [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
        ("redis@" + REDIS_DGST, "docker.io/library/redis@" + REDIS_DGST),
        ("docker.io/library/redis@" + REDIS_DGST, "docker.io/library/redis@" + REDIS_DGST),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
        ("dmcgowan/myapp@" + REDIS_DGST, "docker.io/dmcgowan/myapp@" + REDIS_DGST),
        ("docker.io/dmcgowan/myapp@" + REDIS_DGST, "docker.io/dmcgowan/myapp@" + REDIS_DGST),
        (REDIS_DGST.removeprefix("sha256:"), REDIS_DGST),
        (REDIS_DGST, REDIS_DGST),
        (REDIS_DGST.removeprefix("sha256:")[:-1], "docker.io/library/" + REDIS_DGST.removeprefix("sha256:")[:-1]),
        ("dbcc1", "docker.io/library/dbcc1"),
    ],
)
def test_parse_any_reference(given, equivalent):
    ref = parse_any_reference(given)
    assert str(ref) == equivalent
    if equivalent.startswith("sha256:"):
        assert ref == DigestReference(equivalent)
        assert ref.familiar() == equivalent
    else:
        assert ref == parse(equivalent)


def test_parse_any_reference_invalid_digest_falls_back_to_name():
    # not a valid digest (too short) and not a valid name either: the name's error is reported
    assert str(parse_any_reference("sha256:abcd")) == "docker.io/library/sha256:abcd"
    assert _err(parse_any_reference, "sha256:ABCD/x") == INVALID_FORMAT
    assert _err(parse_any_reference, "Busybox") == (
        "invalid reference format: repository name (library/Busybox) must be lowercase"
    )


# ---- normalize_test.go: TestNormalizedSplitHostname --------------------------------------------------------


@pytest.mark.parametrize(
    "given, domain, path",
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        # more
        ("localhost/foo", "localhost", "foo"),
        ("localhost:5000/a/b", "localhost:5000", "a/b"),
        ("localhost", "docker.io", "library/localhost"),
        ("example.com", "docker.io", "library/example.com"),
        ("index.docker.io/foo", "docker.io", "library/foo"),
        ("index.docker.io/foo/bar", "docker.io", "foo/bar"),
        ("registry-1.docker.io/foo", "registry-1.docker.io", "foo"),
        ("[::1]:5000/repo", "[::1]:5000", "repo"),
        # splitDockerDomain takes "foo_bar.com" for a domain, the grammar does not: it lands in the path
        ("foo_bar.com/x", "", "foo_bar.com/x"),
    ],
)
def test_normalized_split_hostname(given, domain, path):
    ref = parse_normalized_named(given)
    assert (ref.domain, ref.path) == (domain, path)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("ubuntu", ("docker.io", "library/ubuntu")),
        ("ubuntu:latest", ("docker.io", "library/ubuntu:latest")),
        ("docker.io/ubuntu:18.04", ("docker.io", "library/ubuntu:18.04")),
        ("a/b", ("docker.io", "a/b")),
        ("A/b", ("A", "b")),
        ("localhost/b", ("localhost", "b")),
        ("local:5000/b", ("local:5000", "b")),
        ("index.docker.io/b", ("docker.io", "library/b")),
        ("example.com/b", ("example.com", "b")),
    ],
)
def test_split_docker_domain(given, expected):
    assert split_docker_domain(given) == expected


# ---- normalize_test.go: TestParseDockerRef -------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        ("busybox@" + BUSYBOX_DGST, "docker.io/library/busybox@" + BUSYBOX_DGST),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
        ("gcr.io/library/busybox:latest@" + BUSYBOX_DGST, "gcr.io/library/busybox@" + BUSYBOX_DGST),
    ],
)
def test_parse_docker_ref(given, expected):
    ref = parse_docker_ref(given)
    assert str(ref) == expected
    assert parse(expected) == ref


def test_tag_name_only():
    assert tag_name_only(parse_normalized_named("busybox")) == Reference("docker.io", "library/busybox", "latest")
    tagged = parse_normalized_named("busybox:1")
    assert tag_name_only(tagged) is tagged
    digested = parse_normalized_named("busybox@" + DGST)
    assert tag_name_only(digested) is digested


# ---- reference_test.go: TestReferenceParse (Parse, without normalisation) -----------------------------------

PARSE_OK = [
    # input, name, domain, tag, digest
    ("test_com", "test_com", "", None, None),
    ("test.com:tag", "test.com", "", "tag", None),
    ("test.com:5000", "test.com", "", "5000", None),
    ("test.com/repo:tag", "test.com/repo", "test.com", "tag", None),
    ("test:5000/repo", "test:5000/repo", "test:5000", None, None),
    ("test:5000/repo:tag", "test:5000/repo", "test:5000", "tag", None),
    ("test:5000/repo@" + DGST, "test:5000/repo", "test:5000", None, DGST),
    ("test:5000/repo:tag@" + DGST, "test:5000/repo", "test:5000", "tag", DGST),
    ("lowercase:Uppercase", "lowercase", "", "Uppercase", None),
    ("a/" * 127 + "a:tag-puts-this-over-max", "a/" * 127 + "a", "a", "tag-puts-this-over-max", None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", None, None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com/bar/baz/quux",
        "sub-dom1.foo.com",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io/test.example.com/my-app",
        "b.gcr.io",
        "test.example.com",
        None,
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", None),
    (
        "xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128,
        "xn--7o8h.com/myimage",
        "xn--7o8h.com",
        "xn--7o8h.com",
        "sha512:" + "f" * 128,
    ),
    ("foo_bar.com:8080", "foo_bar.com", "", "8080", None),
    ("foo/foo_bar.com:8080", "foo/foo_bar.com", "foo", "8080", None),
    ("192.168.1.1", "192.168.1.1", "", None, None),
    ("192.168.1.1:tag", "192.168.1.1", "", "tag", None),
    ("192.168.1.1:5000", "192.168.1.1", "", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1/repo", "192.168.1.1", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000/repo", "192.168.1.1:5000", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo", "[2001:db8::1]", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", None),
    ("[2001:db8::1]:5000/repo@" + DGST, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, DGST),
    ("[2001:db8::1]:5000/repo:tag@" + DGST, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", DGST),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo", "[2001:db8::]:5000", None, None),
    ("[::1]:5000/repo", "[::1]:5000/repo", "[::1]:5000", None, None),
    ("example.com/" + "a" * 255 + ":tag", "example.com/" + "a" * 255, "example.com", "tag", None),
]


@pytest.mark.parametrize("given, name, domain, tag, digest", PARSE_OK)
def test_parse(given, name, domain, tag, digest):
    ref = parse(given)
    assert str(ref) == given
    assert ref.name == name
    assert ref.domain == domain
    assert ref.tag == tag
    assert ref.digest == digest


@pytest.mark.parametrize(
    "given, message",
    [
        ("", "repository name must have at least one component"),
        (":justtag", INVALID_FORMAT),
        ("@" + DGST, INVALID_FORMAT),
        ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
        ("validname@invaliddigest:" + F64, "unsupported digest algorithm"),
        ("Uppercase:tag", "repository name must be lowercase"),
        ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
        ("domain/" + "a" * 256 + ":tag", TOO_LONG),
        ("aa/asdf$$^/aa", INVALID_FORMAT),
        ("[2001:db8::1]", INVALID_FORMAT),
        ("[2001:db8::1]:5000", INVALID_FORMAT),
        ("[2001:db8::1]:tag", INVALID_FORMAT),
        ("[fe80::1%eth0]:5000/repo", INVALID_FORMAT),
        ("[fe80::1%@invalidzone]:5000/repo", INVALID_FORMAT),
        ("repo\n", INVALID_FORMAT),
    ],
)
def test_parse_errors(given, message):
    assert _err(parse, given) == message


# ---- reference_test.go: TestWithNameFailure / TestDomainAndPath / TestWithTag / TestWithDigest / TestParseNamed ----


@pytest.mark.parametrize(
    "given, message",
    [
        ("", INVALID_FORMAT),
        (":justtag", INVALID_FORMAT),
        ("@" + DGST, INVALID_FORMAT),
        ("validname@invaliddigest:" + F64, INVALID_FORMAT),
        ("example.com/repo:tag", INVALID_FORMAT),
        ("example.com/" + "a" * 256, TOO_LONG),
        ("aa/asdf$$^/aa", INVALID_FORMAT),
    ],
)
def test_with_name_failure(given, message):
    assert _err(with_name, given) == message


@pytest.mark.parametrize(
    "given, domain, path",
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "", "test_com/foo"),
        ("test:8080/foo", "test:8080", "foo"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ],
)
def test_with_name(given, domain, path):
    assert with_name(given) == Reference(domain, path)


@pytest.mark.parametrize(
    "name, digest, tag, combined",
    [
        ("test.com/foo", None, "tag", "test.com/foo:tag"),
        ("foo", None, "tag2", "foo:tag2"),
        ("test.com:8000/foo", None, "tag4", "test.com:8000/foo:tag4"),
        ("test.com:8000/foo", None, "TAG5", "test.com:8000/foo:TAG5"),
        (
            "test.com:8000/foo",
            "sha256:1234567890098765432112345667890098765",
            "TAG5",
            "test.com:8000/foo:TAG5@sha256:1234567890098765432112345667890098765",
        ),
    ],
)
def test_with_tag(name, digest, tag, combined):
    ref = with_name(name)
    if digest:
        ref = ref.with_digest(digest)
    assert str(ref.with_tag(tag)) == combined


@pytest.mark.parametrize(
    "name, digest, tag, combined",
    [
        (
            "test.com/foo",
            "sha256:1234567890098765432112345667890098765",
            None,
            "test.com/foo@sha256:1234567890098765432112345667890098765",
        ),
        (
            "foo",
            "sha256:1234567890098765432112345667890098765",
            None,
            "foo@sha256:1234567890098765432112345667890098765",
        ),
        (
            "test.com:8000/foo",
            "sha256:1234567890098765432112345667890098765",
            None,
            "test.com:8000/foo@sha256:1234567890098765432112345667890098765",
        ),
        (
            "test.com:8000/foo",
            "sha256:1234567890098765432112345667890098765",
            "latest",
            "test.com:8000/foo:latest@sha256:1234567890098765432112345667890098765",
        ),
    ],
)
def test_with_digest(name, digest, tag, combined):
    ref = with_name(name)
    if tag:
        ref = ref.with_tag(tag)
    assert str(ref.with_digest(digest)) == combined


@pytest.mark.parametrize("digest", ["foo", "sha256:abc", "sha256:" + "a" * 31, DGST + "\n", ":" + F64, "1sha:" + F64])
def test_with_digest_invalid(digest):
    assert _err(parse_normalized_named("busybox").with_digest, digest) == "invalid digest format"


@pytest.mark.parametrize(
    "given, domain, path, message",
    [
        ("test.com/foo", "test.com", "foo", None),
        ("test:8080/foo", "test:8080", "foo", None),
        ("test_com/foo", None, None, "repository name must be canonical"),
        ("test.com", None, None, "repository name must be canonical"),
        ("foo", None, None, "repository name must be canonical"),
        ("library/foo", None, None, "repository name must be canonical"),
        ("docker.io/library/foo", "docker.io", "library/foo", None),
        ("docker.io/foo", None, None, "repository name must be canonical"),
    ],
)
def test_parse_named(given, domain, path, message):
    if message:
        assert _err(parse_named, given) == message
    else:
        ref = parse_named(given)
        assert (ref.domain, ref.path) == (domain, path)


# ---- Reference ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, full, familiar, familiar_name",
    [
        ("busybox", "docker.io/library/busybox", "busybox", "busybox"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "busybox"),
        ("busybox@" + DGST, "docker.io/library/busybox@" + DGST, "busybox@" + DGST, "busybox"),
        ("busybox:1@" + DGST, "docker.io/library/busybox:1@" + DGST, "busybox:1@" + DGST, "busybox"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1", "user/app"),
        ("library/a/b", "docker.io/library/a/b", "library/a/b", "library/a/b"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b"),
        ("quay.io/library/x", "quay.io/library/x", "quay.io/library/x", "quay.io/library/x"),
        ("index.docker.io/library/x:1", "docker.io/library/x:1", "x:1", "x"),
    ],
)
def test_reference_forms(given, full, familiar, familiar_name):
    ref = parse_normalized_named(given)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.familiar_name == familiar_name
    assert familiarize(full) == familiar
    assert familiarize(given) == familiar


def test_reference_helpers():
    ref = parse_normalized_named("busybox:1@" + DGST)
    assert ref.name == "docker.io/library/busybox"
    assert ref.name_only() == Reference("docker.io", "library/busybox")
    assert ref.with_tag("2") == Reference("docker.io", "library/busybox", "2", DGST)
    assert ref.with_digest("sha512:" + "a" * 128).digest == "sha512:" + "a" * 128
    assert ref.with_digest("sha512:" + "a" * 128).tag == "1"
    assert not ref.is_name_only and ref.name_only().is_name_only
    assert hash(ref) == hash(parse_normalized_named("docker.io/library/busybox:1@" + DGST))
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


def test_familiarize_invalid():
    assert _err(familiarize, "docker.io/library/Busybox") == (
        "invalid reference format: repository name (library/Busybox) must be lowercase"
    )


# ---- tags, digests, IDs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag", ["latest", "1", "_", "v1.2.3", "1.0-rc.1", "A", "x" * 128, "a__b", "a..b", "a--b", "Z_.-9"]
)
def test_valid_tags(tag):
    validate_tag(tag)


@pytest.mark.parametrize(
    "tag",
    ["", ".a", "-a", "x" * 129, "a:b", "a/b", "a@b", "a b", "a\n", "tàg", "a+b", "sha256:" + F64, "Foo@3cc", ".."],
)
def test_invalid_tags(tag):
    assert _err(validate_tag, tag) == "invalid tag format"


@pytest.mark.parametrize(
    "digest, message",
    [
        (DGST, None),
        ("sha384:" + "a" * 96, None),
        ("sha512:" + "a" * 128, None),
        ("sha256:" + "A" * 64, "invalid checksum digest format"),
        ("sha256:" + "a" * 63, "invalid checksum digest length"),
        ("sha256:" + "g" * 64, "invalid checksum digest format"),
        ("sha256:", "invalid checksum digest format"),
        (":abc", "invalid checksum digest format"),
        ("abc", "invalid checksum digest format"),
        ("md5:" + "a" * 32, "unsupported digest algorithm"),
        ("SHA256:" + "a" * 64, "invalid checksum digest format"),
        ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported digest algorithm"),
    ],
)
def test_validate_digest(digest, message):
    if message is None:
        assert validate_digest(digest) == digest
    else:
        assert _err(validate_digest, digest) == message


@pytest.mark.parametrize(
    "s, full, prefix",
    [
        (F64, True, True),
        ("sha256:" + F64, True, True),
        ("sha256:" + "F" * 64, False, False),
        ("F" * 64, False, False),
        ("f" * 65, False, False),
        ("sha512:" + F64, False, False),
        ("abcd", False, True),
        ("abc", False, False),
        ("sha256:abcd", False, True),
        ("sha256:abc", False, False),
        ("0123456789ab", False, True),
        ("busybox", False, False),
        ("abcd\n", False, False),
        (F64 + "\n", False, False),
        ("", False, False),
    ],
)
def test_ids(s, full, prefix):
    assert is_full_id(s) is full
    assert is_id_prefix(s) is prefix


# ---- moby: repo/tag of tag, commit, import; fromImage/tag of pull ---------------------------------------------


@pytest.mark.parametrize(
    "repo, tag, expected",
    [
        ("busybox", None, "docker.io/library/busybox:latest"),
        ("busybox", "", "docker.io/library/busybox:latest"),
        ("busybox", "1.36", "docker.io/library/busybox:1.36"),
        ("a/b:t", None, "docker.io/a/b:t"),
        ("a/b:t", "x", "docker.io/a/b:x"),
        ("localhost:5000/a", None, "localhost:5000/a:latest"),
        ("HOSTNAME.DOMAIN.COM:443/foo/bar", None, "HOSTNAME.DOMAIN.COM:443/foo/bar:latest"),
        ("foooo:t", None, "docker.io/library/foooo:t"),
        ("index.docker.io/busybox", "latest", "docker.io/library/busybox:latest"),
        ("sha256x", None, "docker.io/library/sha256x:latest"),
        ("quay.io/sha256", None, "quay.io/sha256:latest"),
    ],
)
def test_split_repo_tag(repo, tag, expected):
    ref = split_repo_tag(repo, tag)
    assert str(ref) == expected
    assert ref.tag and not ref.digest


@pytest.mark.parametrize(
    "repo, tag, message",
    [
        ("busybox@" + DGST, None, "cannot import digest reference"),
        ("busybox:1@" + DGST, "2", "cannot import digest reference"),
        ("busybox", DGST, "invalid tag format"),
        ("busybox", "-x", "invalid tag format"),
        ("sha256:sometag", None, "refusing to create an ambiguous tag using digest algorithm as name"),
        ("sha256", "t", "refusing to create an ambiguous tag using digest algorithm as name"),
        ("docker.io/library/sha256", None, "refusing to create an ambiguous tag using digest algorithm as name"),
        ("Busybox", None, "invalid reference format: repository name (library/Busybox) must be lowercase"),
        ("-busybox", "test", INVALID_FORMAT),
        ("-test/busybox", "test", INVALID_FORMAT),
        ("-index:5000/busybox", "test", INVALID_FORMAT),
        ("", None, INVALID_FORMAT),
        (HEX64, None, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
    ],
)
def test_split_repo_tag_errors(repo, tag, message):
    assert _err(split_repo_tag, repo, tag) == message


@pytest.mark.parametrize(
    "image, tag, expected",
    [
        ("busybox", "", "docker.io/library/busybox"),
        ("busybox:", "", "docker.io/library/busybox"),
        ("busybox", "1.36", "docker.io/library/busybox:1.36"),
        ("busybox:1", "2", "docker.io/library/busybox:2"),
        ("busybox:1", "", "docker.io/library/busybox:1"),
        ("busybox", DGST, "docker.io/library/busybox@" + DGST),
        ("busybox:1@" + DGST, BUSYBOX_DGST, "docker.io/library/busybox@" + BUSYBOX_DGST),
        ("busybox@" + DGST, "1", "docker.io/library/busybox:1@" + DGST),
        ("localhost:5000/app", "", "localhost:5000/app"),
    ],
)
def test_parse_pull_reference(image, tag, expected):
    assert str(parse_pull_reference(image, tag)) == expected


@pytest.mark.parametrize(
    "image, tag, message",
    [
        ("busybox", "sha256:abc", "invalid tag format"),
        ("busybox", "-x", "invalid tag format"),
        ("busybox::", "", INVALID_FORMAT),
        ("Busybox", "", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ],
)
def test_parse_pull_reference_errors(image, tag, message):
    assert _err(parse_pull_reference, image, tag) == message
