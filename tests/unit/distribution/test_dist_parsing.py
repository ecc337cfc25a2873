"""distribution: credentials headers, challenges, registry error bodies, endpoints and certs.d (no network)."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import pytest
from multidict import CIMultiDict

import dockwright.distribution as dist
from dockwright.distribution import (
    AuthConfig,
    Endpoint,
    RegistryHosts,
    auth_key,
    decode_registry_auth,
    decode_registry_config,
    parse_error_body,
    parse_www_authenticate,
    pull_error,
    push_error,
    registry_info,
    resolve_auth_config,
    response_error,
    schema1_error,
)
from dockwright.errors import DataCorrupted, Forbidden, InvalidArgument, NotFound, SystemError_, Unauthorized
from dockwright.reference import parse_normalized_named


def test_exports_are_defined() -> None:
    for name in dist.__all__:
        assert hasattr(dist, name), name
    assert len(set(dist.__all__)) == len(dist.__all__)


# ---- AuthConfig and the X-Registry-* headers -----------------------------------------------------------------

def _b64url(obj: object, *, pad: bool = True) -> str:
    s = base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()
    return s if pad else s.rstrip("=")


def test_decode_registry_auth_variants() -> None:
    assert decode_registry_auth("") is None
    assert decode_registry_auth(None) is None
    assert decode_registry_auth("e30=") == AuthConfig()
    assert decode_registry_auth("e30") == AuthConfig()
    cfg = {"username": "u", "password": "p>?/", "serveraddress": "localhost:5000"}
    want = AuthConfig(username="u", password="p>?/", serveraddress="localhost:5000")
    assert decode_registry_auth(_b64url(cfg)) == want
    assert decode_registry_auth(_b64url(cfg, pad=False)) == want
    std = base64.b64encode(json.dumps(cfg).encode()).decode()
    assert decode_registry_auth(std) == want
    # Go's json matches field names case-insensitively; trailing data after the value is ignored
    assert decode_registry_auth(_b64url({"Username": "a", "IdentityToken": "t"})) == \
        AuthConfig(username="a", identitytoken="t")
    raw = base64.urlsafe_b64encode(b'{"username":"x"} trailing').decode()
    assert decode_registry_auth(raw) == AuthConfig(username="x")


def test_decode_registry_auth_invalid() -> None:
    assert decode_registry_auth("!!!notbase64") == AuthConfig()
    with pytest.raises(InvalidArgument, match="^invalid X-Registry-Auth header: "):
        decode_registry_auth(base64.b64encode(b"not json").decode(), strict=True)


def test_auth_field_fills_username_and_password() -> None:
    a = AuthConfig.from_dict({"auth": base64.b64encode(b"me:se:cret").decode(), "email": "e@x"})
    assert (a.username, a.password, a.email) == ("me", "se:cret", "e@x")
    b = AuthConfig.from_dict({"auth": base64.b64encode(b"me:x").decode(), "username": "other", "password": "y"})
    assert (b.username, b.password) == ("other", "y")


def test_registry_config_and_key_lookup() -> None:
    header = _b64url({"https://index.docker.io/v1/": {"username": "hub"},
                      "http://myreg:5000/v1/": {"username": "mine"}})
    configs = decode_registry_config(header)
    assert configs["https://index.docker.io/v1/"].username == "hub"
    assert decode_registry_config("garbage!") == {}
    assert decode_registry_config("") == {}
    assert auth_key("docker.io") == "https://index.docker.io/v1/"
    assert auth_key("localhost:5000") == "localhost:5000"
    assert resolve_auth_config(configs, "docker.io").username == "hub"
    assert resolve_auth_config(configs, "myreg:5000").username == "mine"  # legacy key form
    assert resolve_auth_config(configs, "other:1") == AuthConfig()


# ---- WWW-Authenticate ------------------------------------------------------------------------------------------

def test_parse_www_authenticate() -> None:
    [c] = parse_www_authenticate(['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                  'scope="repository:library/busybox:pull"'])
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull"}
    [b] = parse_www_authenticate(['Basic realm="Registry Realm"'])
    assert (b.scheme, b.params) == ("basic", {"realm": "Registry Realm"})
    [e] = parse_www_authenticate(['bearer Realm=x, ERROR="insufficient_scope", error_description="a \\"b\\" c"'])
    assert e.params == {"realm": "x", "error": "insufficient_scope", "error_description": 'a "b" c'}
    # parsing stops at the first malformed parameter, keeping what came before (as distribution does)
    [p] = parse_www_authenticate(['Bearer realm="r", broken, service="s"'])
    assert p.params == {"realm": "r"}
    assert parse_www_authenticate(["", "   "]) == []


# ---- registry error bodies -------------------------------------------------------------------------------------

def _headers(**kw: str) -> CIMultiDict[str]:
    h: CIMultiDict[str] = CIMultiDict()
    for k, v in kw.items():
        h.add(k.replace("_", "-"), v)
    return h


def test_error_body_shapes() -> None:
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                   "detail": {"Tag": "nope"}}]}).encode()
    exc = response_error(404, "Not Found", _headers(Content_Type="application/json"), body)
    assert isinstance(exc, NotFound) and str(exc) == "manifest unknown: manifest unknown"
    info = registry_info(exc)
    assert info is not None and info.is_list and info.errors[0].code == "MANIFEST_UNKNOWN" and info.status == 404

    # no detail and the code's own message: Go keeps only the ErrorCode, printed as its words
    bare = json.dumps({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}).encode()
    assert str(response_error(404, "", _headers(Content_Type="application/json"), bare)) == "blob unknown"

    # Docker Hub's token server: {"details": …}
    details = b'{"details":"incorrect username or password"}'
    exc = response_error(401, "", _headers(Content_Type="application/json"), details)
    assert isinstance(exc, Unauthorized) and str(exc) == "unauthorized: incorrect username or password"
    assert not registry_info(exc).is_list  # type: ignore[union-attr]

    # not JSON: the body becomes the message of an error chosen by status
    exc = response_error(403, "", _headers(Content_Type="text/plain"), b"go away")
    assert isinstance(exc, Forbidden) and str(exc) == "denied: go away"
    exc = response_error(404, "", _headers(Content_Type="application/json"), b"")
    assert str(exc) == 'error parsing HTTP 404 response body: unexpected end of JSON input: ""'
    exc = response_error(400, "", _headers(Content_Type="application/json"), b'{"errors":[]}')
    assert str(exc) == ('error parsing HTTP 400 response body: no error details found in HTTP response body: '
                        '"{\\"errors\\":[]}"')
    exc = response_error(401, "", _headers(Content_Type="application/json"), b"")
    assert isinstance(exc, Unauthorized) and str(exc) == "unauthorized: authentication required"
    exc = response_error(502, "Bad Gateway", _headers(), b"oops")
    assert str(exc) == "received unexpected HTTP status: 502 Bad Gateway"
    unknown = json.dumps({"errors": [{"code": "WEIRD", "message": "hm", "detail": 1}]}).encode()
    assert str(response_error(400, "", _headers(Content_Type="application/json"), unknown)) == "unknown: hm"
    assert parse_error_body(400, "application/json", unknown).entries[0].code == "UNKNOWN"


def test_bearer_error_parameters_come_first() -> None:
    h = _headers(Content_Type="application/json",
                 WWW_Authenticate='Bearer realm="r",service="s",error="insufficient_scope"')
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                   "detail": [{"Type": "repository"}]}]}).encode()
    exc = response_error(401, "Unauthorized", h, body)
    assert isinstance(exc, Forbidden)
    assert str(exc) == ("errors:\ndenied: requested access to the resource is denied\n"
                        "unauthorized: authentication required\n")


def test_pull_error_wording() -> None:
    nope = parse_normalized_named("nope")
    h = _headers(Content_Type="application/json",
                 WWW_Authenticate='Bearer realm="r",service="s",error="insufficient_scope"')
    denied = response_error(401, "", h, b'{"errors":[{"code":"UNAUTHORIZED","message":"x","detail":1}]}')
    e = pull_error(nope.with_tag("latest"), denied)
    assert isinstance(e, NotFound)
    assert str(e) == ("pull access denied for nope, repository does not exist or may require 'docker login': "
                      "denied: requested access to the resource is denied")

    unknown = response_error(404, "", _headers(Content_Type="application/json"),
                             b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}')
    e = pull_error(parse_normalized_named("busybox:nope"), unknown)
    assert isinstance(e, NotFound)
    assert str(e) == "manifest for busybox:nope not found: manifest unknown: manifest unknown"

    name = response_error(404, "", _headers(Content_Type="application/json"),
                          b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry",'
                          b'"detail":{"name":"x/y"}}]}')
    e = pull_error(parse_normalized_named("x/y:1"), name)
    assert str(e) == "repository x/y not found: name unknown: repository name not known to registry"

    limited = response_error(429, "", _headers(Content_Type="application/json"),
                             b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate '
                             b'limit.","detail":""}]}')
    e = pull_error(nope, limited)
    assert isinstance(e, SystemError_) and str(e) == "toomanyrequests: You have reached your pull rate limit."

    schema1 = schema1_error(parse_normalized_named("docker.io/library/old:1"))
    assert pull_error(nope, schema1) is schema1
    assert str(schema1) == (
        "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest "
        "the author of docker.io/library/old:1 to upgrade the image to the OCI Format or Docker Image manifest "
        "v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/")
    assert isinstance(pull_error(nope, DataCorrupted("bad digest")), SystemError_)
    assert isinstance(pull_error(nope, OSError("disk")), SystemError_)


def test_push_error_keeps_the_first_registry_error() -> None:
    h = _headers(Content_Type="application/json",
                 WWW_Authenticate='Bearer realm="r",service="s",error="insufficient_scope"')
    denied = response_error(401, "", h, b'{"errors":[{"code":"UNAUTHORIZED","message":"x","detail":1}]}')
    e = push_error(parse_normalized_named("me/app"), denied)
    assert isinstance(e, Forbidden) and str(e) == "denied: requested access to the resource is denied"


# ---- hosts -----------------------------------------------------------------------------------------------------

def test_docker_hub_endpoints_and_mirrors() -> None:
    hosts = RegistryHosts(mirrors=["https://mirror.example.com", "http://10.1.2.3:5000/"], certs_dirs=[])
    eps = hosts.endpoints("docker.io")
    assert [(e.url, e.mirror) for e in eps] == [("https://mirror.example.com", True),
                                               ("http://10.1.2.3:5000", True),
                                               ("https://registry-1.docker.io", False)]
    assert [e.url for e in hosts.endpoints("docker.io", push=True)] == ["https://registry-1.docker.io"]
    assert hosts.endpoints("index.docker.io") == eps
    assert eps[-1].ssl is None and eps[-1].host == "registry-1.docker.io"


def test_insecure_registries_get_https_then_http() -> None:
    hosts = RegistryHosts(insecure=["myreg:5000", "10.0.0.0/8", "http://other.example"], certs_dirs=[],
                          mirrors_by_host={"myreg:5000": ["http://127.0.0.1:1"]})
    eps = hosts.endpoints("myreg:5000")
    assert [(e.url, e.mirror, e.ssl) for e in eps] == [("http://127.0.0.1:1", True, None),
                                                      ("https://myreg:5000", False, False),
                                                      ("http://myreg:5000", False, None)]
    assert [e.url for e in hosts.endpoints("myreg:5000", push=True)] == ["https://myreg:5000", "http://myreg:5000"]
    assert hosts.is_insecure("10.20.30.40:443")
    assert hosts.is_insecure("other.example")
    assert not hosts.is_insecure("myreg")  # a name entry matches host[:port] exactly
    assert hosts.is_insecure("127.0.0.1:5000") and hosts.is_insecure("[::1]:5000") and hosts.is_insecure("localhost")
    assert not hosts.is_insecure("docker.io")
    assert not hosts.is_insecure("registry.invalid")  # does not resolve: no CIDR match
    secure = hosts.endpoints("registry.invalid")
    assert [(e.url, e.ssl) for e in secure] == [("https://registry.invalid", None)]
    assert not RegistryHosts(insecure_loopback=False, certs_dirs=[]).is_insecure("127.0.0.1:5000")


@pytest.mark.parametrize("mirror, message", [
    ("mirror.example.com", "invalid mirror: no scheme specified for \"mirror.example.com\": must use either "
                           "'https://' or 'http://'"),
    ("ftp://m.example", "invalid mirror: unsupported scheme \"ftp\" in \"ftp://m.example\": must use either "
                        "'https://' or 'http://'"),
    ("https://m.example/?x=1", "invalid mirror: query or fragment at end of the URI \"https://m.example/?x=1\""),
])
def test_invalid_mirrors(mirror: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        RegistryHosts(mirrors=[mirror])
    assert str(ei.value) == message


def test_invalid_insecure_registries() -> None:
    with pytest.raises(InvalidArgument, match="should not contain '://'"):
        RegistryHosts(insecure=["ftp://x"])
    with pytest.raises(InvalidArgument, match="Cannot begin or end with a hyphen"):
        RegistryHosts(insecure=["-bad"])


def test_certs_d(tmp_path: Path) -> None:
    from registry import pki

    keys = pki()
    d1, d2 = tmp_path / "a", tmp_path / "b"
    (d1 / "reg.example:5000").mkdir(parents=True)
    (d1 / "reg.example:5000" / "ca.crt").write_bytes(keys.ca_cert.read_bytes())
    (d2 / "reg.example:5000").mkdir(parents=True)
    (d2 / "reg.example:5000" / "client.cert").write_bytes(keys.client_cert.read_bytes())
    (d2 / "reg.example:5000" / "client.key").write_bytes(keys.client_key.read_bytes())
    hosts = RegistryHosts(certs_dirs=[d1, d2])
    [ep] = hosts.endpoints("reg.example:5000")
    assert isinstance(ep.ssl, ssl.SSLContext)
    assert hosts.endpoints("reg.example:5000")[0].ssl is ep.ssl  # cached while the files do not change
    assert RegistryHosts(certs_dirs=[d1]).endpoints("other.example")[0].ssl is None

    (d1 / "lonely.example").mkdir()
    (d1 / "lonely.example" / "client.cert").write_text("x")
    with pytest.raises(InvalidArgument) as ei:
        hosts.endpoints("lonely.example")
    assert str(ei.value) == ("missing key client.key for client certificate client.cert. CA certificates must use "
                             "the extension .crt")
    (d1 / "keyonly.example").mkdir()
    (d1 / "keyonly.example" / "client.key").write_text("x")
    with pytest.raises(InvalidArgument, match=r"^missing client certificate client.cert for key client.key$"):
        hosts.endpoints("keyonly.example")


def test_endpoint_ssl_argument() -> None:
    assert Endpoint("https://x").ssl_arg is True
    assert Endpoint("https://x", ssl=False).ssl_arg is False
    assert Endpoint("http://x").scheme == "http"
