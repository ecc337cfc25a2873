"""The registry test infrastructure itself (tests/registry.py), checked with plain HTTP clients only."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import tarfile
import threading
import time

import pytest
import requests

from registry import (  # noqa: F401  (fixtures are used by name)
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    PASSWORD,
    SERVICE,
    USER,
    FaultProxy,
    Registry,
    RegistryClient,
    TokenServer,
    auth_registry,
    fault_proxy,
    push_image,
    push_index,
    push_multiplatform,
    registry,
    registry_available,
    sha256_digest,
    shared_registry,
    tar_of,
    tls_registry,
    token_registry,
)

pytestmark = pytest.mark.skipif(not registry_available(), reason="docker-registry is not installed")


def _claims(token: str) -> dict:  # type: ignore[type-arg]
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _raw_get(host: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, bool]:
    """GET with http.client; returns (status, headers, body, complete) — a cut body comes back partial."""
    h, _, p = host.partition(":")
    c = http.client.HTTPConnection(h, int(p), timeout=30)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            return r.status, hdrs, r.read(), True
        except http.client.IncompleteRead as e:
            return r.status, hdrs, e.partial, False
    finally:
        c.close()


# -- each variant answers /v2/ ------------------------------------------------------------------------------
def test_plain_registry_answers_v2(registry: Registry) -> None:
    assert registry.host == f"127.0.0.1:{registry.port}" and registry.url == f"http://{registry.host}"
    r = requests.get(registry.url + "/v2/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.credentials is None and registry.ca_cert_path is None


def test_htpasswd_registry_wants_basic_credentials(auth_registry: Registry) -> None:
    url = auth_registry.url + "/v2/"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert requests.get(url, auth=(USER, "wrong"), timeout=10).status_code == 401
    assert requests.get(url, auth=(USER, PASSWORD), timeout=10).status_code == 200
    assert auth_registry.credentials == (USER, PASSWORD)
    assert (auth_registry.base / "htpasswd").read_text().startswith(f"{USER}:$2")  # bcrypt


def test_tls_registry_works_with_the_ca_only(tls_registry: Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert tls_registry.url.startswith("https://127.0.0.1:")
    ca = str(tls_registry.ca_cert_path)
    assert requests.get(tls_registry.url + "/v2/", verify=ca, timeout=10).status_code == 200
    # the cert names localhost too
    assert requests.get(f"https://localhost:{tls_registry.port}/v2/", verify=ca, timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_registry.url + "/v2/", verify=True, timeout=10)  # the system CAs do not know it
    # plain HTTP to the TLS port is refused by the registry
    assert requests.get(f"http://{tls_registry.host}/v2/", timeout=10).status_code == 400
    d = tls_registry.install_certs_d(tmp_path / "certs.d")
    assert d.name == tls_registry.host and (d / "ca.crt").read_bytes() == tls_registry.ca_cert_path.read_bytes()


def test_tls_client_auth_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Registry(tmp_path / "mtls", tls_client_auth=True) as r:
        ca = str(r.ca_cert_path)
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(r.url + "/v2/", verify=ca, timeout=10)
        cert = (str(r.client_cert_path), str(r.client_key_path))
        assert requests.get(r.url + "/v2/", verify=ca, cert=cert, timeout=10).status_code == 200
        d = r.install_certs_d(tmp_path / "certs.d")
        assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "client.cert", "client.key"]


# -- token auth ----------------------------------------------------------------------------------------
def test_token_server_issues_tokens_the_registry_accepts(token_registry: Registry) -> None:
    ts = token_registry.token_server
    assert ts is not None
    r = requests.get(token_registry.url + "/v2/", timeout=10)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{ts.realm}"' in challenge and f'service="{SERVICE}"' in challenge

    scope = "repository:test/tok:pull,push"
    t = requests.get(ts.realm, params={"service": SERVICE, "scope": scope}, auth=(USER, PASSWORD), timeout=10)
    assert t.status_code == 200
    body = t.json()
    token = body["token"]
    assert body["access_token"] == token and body["expires_in"] > 0 and "refresh_token" not in body
    claims = _claims(token)
    assert claims["access"] == [{"type": "repository", "name": "test/tok", "actions": ["pull", "push"]}]
    assert claims["aud"] == SERVICE and claims["sub"] == USER
    assert requests.get(token_registry.url + "/v2/", headers=_bearer(token), timeout=10).status_code == 200

    # push and pull with the token dance (RegistryClient) through push_image
    img = push_image(token_registry, "test/tok", "v1", [tar_of({"f": b"token"})])
    m = requests.get(f"{token_registry.url}/v2/test/tok/manifests/v1", timeout=10,
                     headers={**_bearer(token), "Accept": DOCKER_MANIFEST})
    assert m.status_code == 200 and m.headers["Docker-Content-Digest"] == img["manifest_digest"]

    # wrong password: the token server says 401
    assert requests.get(ts.realm, params={"service": SERVICE, "scope": scope}, auth=(USER, "nope"),
                        timeout=10).status_code == 401
    # an anonymous token grants nothing, so the registry refuses it
    anon = requests.get(ts.realm, params={"service": SERVICE, "scope": scope}, timeout=10).json()["token"]
    assert _claims(anon)["access"][0]["actions"] == []
    r = requests.get(f"{token_registry.url}/v2/test/tok/manifests/v1", headers=_bearer(anon), timeout=10)
    assert r.status_code == 401 and "insufficient_scope" in r.headers["WWW-Authenticate"]
    # expired tokens and tokens for another audience are refused
    for bad in (ts.make_token(USER, [scope], ttl=-3600), ts.make_token(USER, [scope], audience="elsewhere")):
        assert requests.get(f"{token_registry.url}/v2/test/tok/manifests/v1", headers=_bearer(bad),
                            timeout=10).status_code == 401
    assert any(rec["user"] == USER and rec["scopes"] == [scope] for rec in ts.requests if rec.get("status") == 200)


def test_token_server_oauth2_form_and_refresh_tokens(token_registry: Registry) -> None:
    ts = token_registry.token_server
    assert ts is not None
    push_image(token_registry, "test/oauth", "v1", [tar_of({"f": b"oauth"})])
    scope = "repository:test/oauth:pull"
    r = requests.post(ts.realm, data={"grant_type": "password", "username": USER, "password": PASSWORD,
                                      "service": SERVICE, "scope": scope, "client_id": "test",
                                      "access_type": "offline"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["refresh_token"] and body["scope"] == scope
    r2 = requests.post(ts.realm, data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                       "service": SERVICE, "scope": scope, "client_id": "test"}, timeout=10)
    assert r2.status_code == 200 and r2.json()["refresh_token"] == body["refresh_token"]
    for tok in (body["access_token"], r2.json()["access_token"]):
        m = requests.get(f"{token_registry.url}/v2/test/oauth/manifests/v1", timeout=10,
                         headers={**_bearer(tok), "Accept": DOCKER_MANIFEST})
        assert m.status_code == 200
    assert requests.post(ts.realm, data={"grant_type": "refresh_token", "refresh_token": "bogus",
                                         "service": SERVICE}, timeout=10).status_code == 401
    assert requests.post(ts.realm, data={"grant_type": "password", "username": USER, "password": "x",
                                         "service": SERVICE}, timeout=10).status_code == 401
    # GET with offline_token=true (docker login) also returns a refresh token
    g = requests.get(ts.realm, params={"service": SERVICE, "offline_token": "true", "client_id": "docker"},
                     auth=(USER, PASSWORD), timeout=10)
    assert g.status_code == 200 and g.json()["refresh_token"]


def test_token_policy_pull_only_refuses_push(token_registry: Registry) -> None:
    ts = token_registry.token_server
    assert ts is not None
    push_image(token_registry, "test/ro", "v1", [tar_of({"f": b"ro"})])
    ts.policy = lambda user, typ, name, actions: [a for a in actions if a == "pull"]
    with pytest.raises(RuntimeError):
        push_image(token_registry, "test/ro", "v2", [tar_of({"f": b"ro2"})])
    m = token_registry.client().get_manifest("test/ro", "v1")
    assert m.status_code == 200


def test_token_server_injected_failures() -> None:
    with TokenServer(anonymous_pull=True) as ts:
        ts.fail_times, ts.fail_status = 1, 503
        assert requests.get(ts.realm, params={"scope": "repository:a/b:pull,push"}, timeout=10).status_code == 503
        r = requests.get(ts.realm, params={"scope": "repository:a/b:pull,push"}, timeout=10)
        assert r.status_code == 200 and _claims(r.json()["token"])["access"][0]["actions"] == ["pull"]


# -- pushing test images -----------------------------------------------------------------------------------
@pytest.mark.parametrize("media", ["docker", "oci"])
def test_push_image_manifest_round_trip(shared_registry: Registry, media: str) -> None:
    layers = [tar_of({"etc/a": b"a" * 1000}), tar_of({"etc/b": b"b" * 2000})]
    img = push_image(shared_registry.url, f"test/{media}", "v1", layers, {"config": {"Cmd": ["true"]}}, media=media)
    c = RegistryClient(shared_registry.url)
    m = c.get_manifest(f"test/{media}", "v1")
    assert m.status_code == 200
    assert m.headers["Content-Type"] == (DOCKER_MANIFEST if media == "docker" else OCI_MANIFEST)
    assert m.headers["Docker-Content-Digest"] == img["manifest_digest"] == sha256_digest(m.content)
    assert m.content == img["manifest_bytes"]
    manifest = m.json()
    assert [d["digest"] for d in manifest["layers"]] == img["layer_digests"]
    cfg_blob = c.get_blob(f"test/{media}", manifest["config"]["digest"]).content
    assert sha256_digest(cfg_blob) == img["config_digest"]
    cfg = json.loads(cfg_blob)
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": img["diff_ids"]}
    assert cfg["os"] == "linux" and cfg["architecture"] == "amd64" and len(cfg["history"]) == 2
    assert cfg["config"]["Cmd"] == ["true"]
    for desc, diff_id, tar in zip(manifest["layers"], img["diff_ids"], layers, strict=True):
        blob = c.get_blob(f"test/{media}", desc["digest"]).content
        assert len(blob) == desc["size"] and sha256_digest(blob) == desc["digest"]
        assert gzip.decompress(blob) == tar and sha256_digest(tar) == diff_id
    assert c.request("GET", f"/v2/test/{media}/tags/list").json()["tags"] == ["v1"]
    assert img["reference"] == f"{shared_registry.host}/test/{media}:v1"


def test_push_image_oci_zstd_layers(shared_registry: Registry) -> None:
    import zstandard
    tar = tar_of({"z": b"zstd" * 100})
    img = push_image(shared_registry, "test/zstd", "v1", [tar], media="oci", compression="zstd")
    c = shared_registry.client()
    m = c.get_manifest("test/zstd", "v1").json()
    assert m["layers"][0]["mediaType"] == OCI_LAYER_ZSTD
    blob = c.get_blob("test/zstd", img["layer_digests"][0]).content
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == tar


@pytest.mark.parametrize("media", ["oci", "docker"])
def test_push_multiplatform_index(shared_registry: Registry, media: str) -> None:
    repo = f"test/multi-{media}"
    out = push_multiplatform(shared_registry, repo, "latest", ("linux/amd64", "linux/arm64/v8"), media=media)
    c = shared_registry.client()
    r = c.get_manifest(repo, "latest")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == (OCI_INDEX if media == "oci" else DOCKER_MANIFEST_LIST)
    assert r.headers["Docker-Content-Digest"] == out["index_digest"]
    platforms = {(d["platform"]["architecture"], d["platform"].get("variant")): d for d in r.json()["manifests"]}
    assert set(platforms) == {("amd64", None), ("arm64", "v8")}
    for (arch, _), desc in platforms.items():
        child = c.get_manifest(repo, desc["digest"])
        assert child.status_code == 200 and len(child.content) == desc["size"]
        cfg = c.get_blob(repo, child.json()["config"]["digest"]).json()
        assert cfg["architecture"] == arch
    # push_index over images pushed separately, tagged
    a = push_image(shared_registry, repo, None, [tar_of({"x": b"1"})], platform="linux/amd64", media=media)
    b = push_image(shared_registry, repo, None, [tar_of({"x": b"2"})], platform="linux/arm64", media=media)
    idx = push_index(shared_registry, repo, "two", {"linux/amd64": a["manifest_digest"],
                                                    "linux/arm64": b["manifest_digest"]}, media=media)
    got = c.get_manifest(repo, "two").json()
    assert [d["digest"] for d in got["manifests"]] == [a["manifest_digest"], b["manifest_digest"]]
    assert idx["index"] == got


def test_shared_registry_keeps_content_within_the_module(shared_registry: Registry) -> None:
    tags = shared_registry.client().request("GET", "/v2/test/docker/tags/list")
    assert tags.status_code == 200 and tags.json()["tags"] == ["v1"]


def test_push_image_with_basic_auth(auth_registry: Registry) -> None:
    img = push_image(auth_registry, "test/basic", "v1", [tar_of({"f": b"basic"})])  # creds from the Registry
    img2 = push_image(auth_registry.url, "test/basic", "v2", [tar_of({"f": b"basic2"})], auth=(USER, PASSWORD))
    with pytest.raises(RuntimeError):
        push_image(auth_registry.url, "test/basic", "v3", [tar_of({"f": b"x"})])
    r = requests.get(f"{auth_registry.url}/v2/test/basic/manifests/v1", auth=(USER, PASSWORD), timeout=10,
                     headers={"Accept": DOCKER_MANIFEST})
    assert r.headers["Docker-Content-Digest"] == img["manifest_digest"] != img2["manifest_digest"]


def test_push_image_over_tls(tls_registry: Registry) -> None:
    img = push_image(tls_registry, "test/tls", "v1", [tar_of({"f": b"tls"})], media="oci")
    r = requests.get(f"{tls_registry.url}/v2/test/tls/manifests/v1", verify=str(tls_registry.ca_cert_path),
                     headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert r.headers["Docker-Content-Digest"] == img["manifest_digest"]


# -- restart ---------------------------------------------------------------------------------------------
def test_restart_keeps_port_and_content(registry: Registry) -> None:
    img = push_image(registry, "test/restart", "v1", [tar_of({"f": b"restart"})])
    port = registry.port
    registry.stop()
    assert not registry.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(registry.url + "/v2/", timeout=5)
    registry.start()
    assert registry.port == port and registry.running
    m = registry.client().get_manifest("test/restart", "v1")
    assert m.status_code == 200 and m.headers["Docker-Content-Digest"] == img["manifest_digest"]
    assert registry.blob_path(img["layer_digests"][0]).read_bytes() == img["layer_blobs"][0]


# -- the fault proxy ---------------------------------------------------------------------------------------
def _big_image(target: Registry | FaultProxy | str, repo: str, size: int = 256 * 1024) -> dict:  # type: ignore[type-arg]
    url = target.url if not isinstance(target, str) else target
    return push_image(url, repo, "v1", [tar_of({"big": os.urandom(size)})])


def test_fault_proxy_passes_through_and_counts(registry: Registry, fault_proxy: FaultProxy) -> None:
    assert fault_proxy.host != registry.host
    img = _big_image(fault_proxy, "test/pass")  # pushed through the proxy: upload Locations point at it
    digest, size = img["layer_digests"][0], img["layer_sizes"][0]
    r = requests.get(f"{fault_proxy.url}/v2/test/pass/blobs/{digest}", timeout=10)
    assert r.status_code == 200 and r.headers["Connection"] == "close"
    assert sha256_digest(r.content) == digest
    assert fault_proxy.bytes_for(digest) == size
    assert fault_proxy.blob_bytes == {f"/v2/test/pass/blobs/{digest}": size}
    assert ("GET", f"/v2/test/pass/blobs/{digest}", 200) in fault_proxy.requests
    m = RegistryClient(fault_proxy.url).get_manifest("test/pass", "v1")
    assert m.headers["Docker-Content-Digest"] == img["manifest_digest"]
    fault_proxy.reset()
    assert fault_proxy.blob_bytes == {} and fault_proxy.requests == []


def test_fault_proxy_corrupts_blobs_keeping_length(registry: Registry, fault_proxy: FaultProxy) -> None:
    img = _big_image(registry, "test/corrupt", 64 * 1024)
    digest, size = img["layer_digests"][0], img["layer_sizes"][0]
    fault_proxy.corrupt_blobs, fault_proxy.corrupt_times = True, 1
    path = f"/v2/test/corrupt/blobs/{digest}"
    status, hdrs, body, complete = _raw_get(fault_proxy.host, path)
    assert status == 200 and complete and int(hdrs["content-length"]) == size == len(body)
    assert sha256_digest(body) != digest
    assert sum(a != b for a, b in zip(body, img["layer_blobs"][0], strict=True)) == 1
    # manifests are untouched; the second blob GET is intact (corrupt_times=1)
    assert RegistryClient(fault_proxy.url).get_manifest("test/corrupt", "v1").status_code == 200
    assert sha256_digest(_raw_get(fault_proxy.host, path)[2]) == digest
    assert fault_proxy.corrupted == 1


def test_fault_proxy_cuts_once_and_range_resume_fetches_less(registry: Registry, fault_proxy: FaultProxy) -> None:
    img = _big_image(registry, "test/cut")
    digest, size = img["layer_digests"][0], img["layer_sizes"][0]
    path = f"/v2/test/cut/blobs/{digest}"
    fault_proxy.cut_after_bytes, fault_proxy.cut_times = 100_000, 1
    status, hdrs, part, complete = _raw_get(fault_proxy.host, path)
    assert status == 200 and not complete and len(part) == 100_000 and int(hdrs["content-length"]) == size
    status, hdrs, rest, complete = _raw_get(fault_proxy.host, path, {"Range": f"bytes={len(part)}-"})
    assert status == 206 and complete and hdrs["content-range"] == f"bytes {len(part)}-{size - 1}/{size}"
    assert sha256_digest(part + rest) == digest
    assert fault_proxy.ranges_for(digest) == [f"bytes={len(part)}-"]
    assert fault_proxy.bytes_for(digest) == size  # nothing fetched twice
    assert len(rest) < size and fault_proxy.cuts == 1


def test_fault_proxy_cuts_every_time(registry: Registry, fault_proxy: FaultProxy) -> None:
    img = _big_image(registry, "test/cutall", 64 * 1024)
    path = f"/v2/test/cutall/blobs/{img['layer_digests'][0]}"
    fault_proxy.cut_after_bytes = 1000
    for _ in range(3):
        status, _, body, complete = _raw_get(fault_proxy.host, path)
        assert status == 200 and not complete and len(body) == 1000
    assert fault_proxy.cuts == 3 and fault_proxy.bytes_for(img["layer_digests"][0]) == 3000


def test_fault_proxy_throttles(registry: Registry) -> None:
    img = _big_image(registry, "test/slow", 128 * 1024)
    with FaultProxy(registry, delay_per_chunk=0.05, chunk_size=16 * 1024) as proxy:
        t0 = time.monotonic()
        r = requests.get(f"{proxy.url}/v2/test/slow/blobs/{img['layer_digests'][0]}", timeout=30)
        took = time.monotonic() - t0
        assert sha256_digest(r.content) == img["layer_digests"][0]
        assert took >= 0.05 * (img["layer_sizes"][0] // (16 * 1024))  # >= 8 chunks
        # manifests are not throttled
        t0 = time.monotonic()
        RegistryClient(proxy.url).get_manifest("test/slow", "v1")
        assert time.monotonic() - t0 < took


def test_fault_proxy_injects_error_status(registry: Registry, fault_proxy: FaultProxy) -> None:
    img = _big_image(registry, "test/err", 1024)
    url = f"{fault_proxy.url}/v2/test/err/blobs/{img['layer_digests'][0]}"
    fault_proxy.error_status, fault_proxy.error_times = 503, 2
    assert [requests.get(url, timeout=10).status_code for _ in range(3)] == [503, 503, 200]
    assert fault_proxy.errors == 2


def test_fault_proxy_disconnect_with_registry_stop_then_resume(registry: Registry) -> None:
    """The 'registry stopped mid-download, started again' scenario, at the fixture level."""
    img = _big_image(registry, "test/stop", 256 * 1024)
    digest, size = img["layer_digests"][0], img["layer_sizes"][0]
    path = f"/v2/test/stop/blobs/{digest}"
    with FaultProxy(registry, delay_per_chunk=0.02, chunk_size=8192) as proxy:
        got: list[tuple[int, bytes, bool]] = []

        def fetch() -> None:
            status, _, body, complete = _raw_get(proxy.host, path)
            got.append((status, body, complete))
        t = threading.Thread(target=fetch)
        t.start()
        deadline = time.monotonic() + 5
        while proxy.bytes_for(digest) < 32 * 1024 and time.monotonic() < deadline:
            time.sleep(0.01)
        registry.stop()
        proxy.disconnect_all()
        t.join(10)
        status, part, complete = got[0]
        assert status == 200 and not complete and 0 < len(part) < size
        # while the registry is down the proxy closes connections without an answer
        with pytest.raises((requests.exceptions.ConnectionError, http.client.HTTPException)):
            requests.get(proxy.url + path, timeout=5)
        registry.start()
        status, _, rest, complete = _raw_get(proxy.host, path, {"Range": f"bytes={len(part)}-"})
        assert status == 206 and complete and sha256_digest(part + rest) == digest
        assert len(rest) == size - len(part) and proxy.bytes_for(digest) <= size
        assert proxy.ranges_for(digest) == [f"bytes={len(part)}-"]


def test_fault_proxy_in_front_of_tls_registry(tls_registry: Registry) -> None:
    img = push_image(tls_registry, "test/tlsproxy", "v1", [tar_of({"f": b"tls"})])
    with FaultProxy(tls_registry) as proxy:
        r = requests.get(f"{proxy.url}/v2/test/tlsproxy/blobs/{img['layer_digests'][0]}", timeout=10)
        assert r.status_code == 200 and sha256_digest(r.content) == img["layer_digests"][0]
        img2 = push_image(proxy.url, "test/tlsproxy", "v2", [tar_of({"f": b"via proxy"})])  # uploads too
    m = tls_registry.client().get_manifest("test/tlsproxy", "v2")
    assert m.headers["Docker-Content-Digest"] == img2["manifest_digest"]


def test_tar_of_and_digests() -> None:
    tar = tar_of({"a/b/c": b"x"})
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert tf.getnames() == ["a", "a/b", "a/b/c"]
    assert tar == tar_of({"a/b/c": b"x"})  # deterministic
    assert sha256_digest(tar) == "sha256:" + hashlib.sha256(tar).hexdigest()
