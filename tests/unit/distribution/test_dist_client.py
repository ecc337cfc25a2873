"""distribution client against real registries: Debian's docker-registry (plain, htpasswd, token, TLS).

Each test drives RegistryClient in its own event loop (asyncio.run). The registries come from tests/registry.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from dockwright.distribution import (
    AuthConfig,
    Endpoint,
    RegistryClient,
    RegistryHosts,
    pull_error,
    registry_info,
)
from dockwright.errors import (
    DataCorrupted,
    InvalidArgument,
    NotFound,
    SystemError_,
    Unauthorized,
    Unavailable,
)
from dockwright.reference import Reference, parse_normalized_named

from registry import (  # noqa: F401  (fixtures)
    FaultProxy,
    Registry,
    TokenServer,
    fault_proxy,
    free_port,
    push_image,
    registry,
    shared_registry,
    tar_of,
)

T = TypeVar("T")
USER, PASSWORD = "testuser", "testpassword"


def run(fn: Callable[[RegistryClient], Awaitable[T]], hosts: RegistryHosts | None = None) -> T:
    async def main() -> T:
        async with RegistryClient(hosts or RegistryHosts(certs_dirs=[])) as client:
            return await fn(client)
    return asyncio.run(main())


def ref(reg: Registry | str, path: str) -> Reference:
    host = reg if isinstance(reg, str) else reg.host
    return parse_normalized_named(f"{host}/{path}")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def chunks_of(data: bytes, n: int = 50_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i:i + n]


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def dead_port() -> int:
    return free_port()  # nothing listens there


# ---- push, resolve, fetch --------------------------------------------------------------------------------------

def test_push_and_resolve(shared_registry: Registry) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    config_b = config.encode()
    layer = os.urandom(300_000)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config_b),
                   "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer),
                    "size": len(layer)}]}, indent=2).encode()

    async def body(client: RegistryClient) -> None:
        repo = client.repository(ref(shared_registry, "push/me:v1"), None, push=True)
        progress: list[int] = []
        await repo.push_blob(sha(config_b), len(config_b), chunks_of(config_b), progress=progress.append)
        assert progress[-1] == len(config_b)
        progress.clear()
        await repo.push_blob(sha(layer), len(layer), chunks_of(layer, 30_000), progress=progress.append,
                             chunk_min=100_000)  # three PATCHes of 100000 bytes, then PUT ?digest=
        assert progress == [100_000, 200_000, 300_000]
        assert await repo.blob_exists(sha(layer)) == len(layer)
        assert await repo.blob_exists(sha(b"absent")) is None
        digest = await repo.put_manifest("v1", "application/vnd.oci.image.manifest.v1+json", manifest)
        assert digest == sha(manifest)
        for tag in ("v2", "v3"):
            await repo.put_manifest(tag, "application/vnd.oci.image.manifest.v1+json", manifest)
        assert repo.endpoint.url == f"http://{shared_registry.host}"  # https was tried first, as dockerd

        pull = client.repository(ref(shared_registry, "push/me"), None)
        desc, raw = await pull.resolve("v1")
        assert raw == manifest
        assert (desc.media_type, desc.digest, desc.size) == ("application/vnd.oci.image.manifest.v1+json",
                                                             digest, len(manifest))
        desc2, raw2 = await pull.resolve(digest)
        assert desc2 == desc and raw2 == manifest
        assert await pull.fetch_manifest(digest) == manifest
        assert (await pull.get_manifest_descriptor("v2")).digest == digest
        assert sorted(await pull.list_tags()) == ["v1", "v2", "v3"]
        assert sorted(await pull.list_tags(page_size=1)) == ["v1", "v2", "v3"]  # follows Link: rel="next"

        got = await collect(pull.fetch_blob(sha(layer)))
        assert got == layer
        chunks = [c async for c in pull.fetch_blob(sha(layer), offset=123_456, size=len(layer))]
        assert b"".join(chunks) == layer[123_456:]
        assert all(len(c) >= 256 << 10 for c in chunks[:-1])
        assert await collect(pull.fetch_blob(sha(layer), offset=len(layer), size=len(layer))) == b""
    run(body)


def test_push_blob_size_and_digest_mismatch(shared_registry: Registry) -> None:
    data = b"x" * 10_000

    async def body(client: RegistryClient) -> None:
        repo = client.repository(ref(shared_registry, "bad/push"), None, push=True)
        with pytest.raises(DataCorrupted, match="has 10000 bytes, expected 20000"):
            await repo.push_blob(sha(data), 20_000, chunks_of(data))
        with pytest.raises(DataCorrupted, match="is larger than its size 5000"):
            await repo.push_blob(sha(data), 5_000, chunks_of(data))
        with pytest.raises(DataCorrupted) as ei:
            await repo.push_blob(sha(b"other"), len(data), chunks_of(data))
        assert str(ei.value) == "digest invalid: provided digest did not match uploaded content"
        assert await repo.blob_exists(sha(data)) is None
    run(body)


def test_mount_across_repositories(shared_registry: Registry) -> None:
    img = push_image(shared_registry, "mount/src", "v1", [tar_of({"f": b"mount me"})])

    async def body(client: RegistryClient) -> None:
        dst = client.repository(ref(shared_registry, "mount/dst"), None, push=True)
        assert await dst.mount_blob(img["layer_digests"][0], "mount/src") is True
        assert await dst.blob_exists(img["layer_digests"][0]) == img["layer_sizes"][0]
        assert await dst.mount_blob(sha(b"nowhere"), "mount/src") is False  # 202: the upload is cancelled
    run(body)


def test_not_found_translations(shared_registry: Registry) -> None:
    push_image(shared_registry, "nf/repo", "v1", [tar_of({"f": b"1"})])

    async def body(client: RegistryClient) -> None:
        r = ref(shared_registry, "nf/repo:nope")
        repo = client.repository(r, None)
        with pytest.raises(NotFound) as ei:
            await repo.resolve("nope")
        assert str(ei.value) == "manifest unknown: manifest unknown"
        e = pull_error(r, ei.value)
        assert isinstance(e, NotFound)
        assert str(e) == (f"manifest for {shared_registry.host}/nf/repo:nope not found: "
                          "manifest unknown: manifest unknown")
        with pytest.raises(NotFound) as ei2:
            await collect(repo.fetch_blob(sha(b"missing")))
        assert str(ei2.value) == "blob unknown: blob unknown to registry"
        with pytest.raises(NotFound):
            await repo.fetch_manifest(sha(b"missing"))
    run(body)


def test_fetch_blob_resumes_and_retries(fault_proxy: FaultProxy, registry: Registry) -> None:
    layer = os.urandom(1_500_000)
    img = push_image(registry, "fp/img", "v1", [layer], media="oci", compression="none")
    digest = img["layer_digests"][0]

    async def body(client: RegistryClient) -> None:
        repo = client.repository(ref(fault_proxy.host, "fp/img"), None)
        fault_proxy.cut_after_bytes, fault_proxy.cut_times = 400_000, 1
        t0 = time.monotonic()
        assert await collect(repo.fetch_blob(digest, size=len(layer))) == layer
        # the proxy is silent on a TLS handshake: plain http was probed beside https, not after its timeout
        assert time.monotonic() - t0 < 3 and repo.endpoint.scheme == "http"
        ranges = fault_proxy.ranges_for(digest)
        assert len(ranges) == 1 and ranges[0].startswith("bytes=") and int(ranges[0][6:-1]) >= 256 << 10
        fault_proxy.cut_after_bytes = None
        fault_proxy.error_status, fault_proxy.error_times = 503, 2
        assert await collect(repo.fetch_blob(digest)) == layer  # two 503s, then the blob
        fault_proxy.error_status, fault_proxy.error_times = 500, None
        with pytest.raises(Unavailable, match="received unexpected HTTP status: 500 Injected"):
            await collect(repo.fetch_blob(digest))
    run(body)


def test_range_ignored_and_redirect_drops_authorization() -> None:
    """A registry that answers 200 to Range, and redirects blobs to another host (which must not get the
    registry's Authorization)."""
    blob = os.urandom(700_000)
    digest = sha(blob)
    seen: dict[str, Any] = {}

    async def main() -> None:
        storage = web.Application()

        async def serve_blob(request: web.Request) -> web.Response:
            seen["storage_auth"] = request.headers.get("Authorization")
            return web.Response(body=blob)  # ignores Range
        storage.router.add_get("/blob", serve_blob)
        registry_app = web.Application()
        storage_port, registry_port = free_port(), free_port()

        async def v2(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != "Basic dTpw":
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="t"'},
                                    content_type="application/json",
                                    text='{"errors":[{"code":"UNAUTHORIZED","message":"no","detail":null}]}')
            if request.path.endswith("/blobs/" + digest):
                if request.query.get("direct"):
                    return web.Response(body=blob)
                raise web.HTTPTemporaryRedirect(f"http://localhost:{storage_port}/blob?X-Amz-Signature=a%2Fb")
            return web.json_response({})
        registry_app.router.add_route("*", "/{tail:.*}", v2)
        runners = []
        for app, port in ((storage, storage_port), (registry_app, registry_port)):
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        try:
            async with RegistryClient(RegistryHosts(certs_dirs=[])) as client:
                repo = client.repository(ref(f"127.0.0.1:{registry_port}", "r/x"), AuthConfig(username="u",
                                                                                              password="p"))
                got = await collect(repo.fetch_blob(digest, offset=250_000))
                assert got == blob[250_000:]
                assert seen["storage_auth"] is None
        finally:
            for runner in runners:
                await runner.cleanup()
    asyncio.run(main())


# ---- authentication ----------------------------------------------------------------------------------------------

def test_htpasswd_basic_auth() -> None:
    with Registry(auth="htpasswd") as reg:
        push_image(reg, "private/img", "v1", [tar_of({"f": b"secret"})])
        r = ref(reg, "private/img:v1")
        good = AuthConfig(username=USER, password=PASSWORD)
        bad = AuthConfig(username=USER, password="wrong")

        async def body(client: RegistryClient) -> None:
            desc, _ = await client.repository(r, good).resolve("v1")
            assert desc.size > 0
            with pytest.raises(Unauthorized) as ei:
                await client.repository(r, None).resolve("v1")
            assert str(ei.value) == f'Head "http://{reg.host}/v2/private/img/manifests/v1": no basic auth credentials'
            assert str(pull_error(r, ei.value)) == str(ei.value)
            with pytest.raises(Unauthorized) as ei:
                await client.repository(r, bad).resolve("v1")
            assert str(ei.value) == "unauthorized: authentication required"
            assert isinstance(pull_error(r, ei.value), SystemError_)  # dockerd: errdefs.Unknown

            assert await client.login(AuthConfig(username=USER, password=PASSWORD, serveraddress=reg.host)) == \
                ("Login Succeeded", "")
            with pytest.raises(SystemError_) as le:
                await client.login(AuthConfig(username=USER, password="wrong", serveraddress=reg.host))
            assert str(le.value) == f"login attempt to http://{reg.host}/v2/ failed with status: 401 Unauthorized"
        run(body)


def test_token_auth() -> None:
    with Registry(auth="token") as reg:
        ts = reg.token_server
        assert ts is not None
        img = push_image(reg, "tok/img", "v1", [tar_of({"f": b"t"})])
        r = ref(reg, "tok/img:v1")
        good = AuthConfig(username=USER, password=PASSWORD)

        async def body(client: RegistryClient) -> None:
            # anonymous: the token carries no access, the registry says insufficient_scope
            with pytest.raises(Exception) as ei:
                await client.repository(r, None).resolve("v1")
            e = pull_error(r, ei.value)
            assert isinstance(e, NotFound)
            assert str(e) == (f"pull access denied for {reg.host}/tok/img, repository does not exist or may require "
                              "'docker login': denied: requested access to the resource is denied")
            # wrong password: the token server refuses
            with pytest.raises(Unauthorized) as ei:
                await client.repository(r, AuthConfig(username=USER, password="nope")).resolve("v1")
            assert str(ei.value) == (f'Head "http://{reg.host}/v2/tok/img/manifests/v1": '
                                     "unauthorized: incorrect username or password")
            with pytest.raises(Unauthorized) as le:
                await client.login(AuthConfig(username=USER, password="nope", serveraddress=reg.host))
            assert str(le.value) == f'Get "http://{reg.host}/v2/": unauthorized: incorrect username or password'

            # good credentials: one token for several requests of the same scope
            before = len(ts.requests)
            repo = client.repository(r, good)
            desc, _ = await repo.resolve("v1")
            assert desc.digest == img["manifest_digest"]
            await collect(repo.fetch_blob(img["layer_digests"][0]))
            await client.repository(r, good).resolve("v1")
            assert len(ts.requests) - before == 1
            req = ts.requests[-1]
            assert req["method"] == "GET" and req["params"]["scope"] == ["repository:tok/img:pull"]
            assert req["params"]["account"] == [USER]

            # login: the refresh token is the identity token, and it works (OAuth2 POST, refresh_token grant)
            status, identity = await client.login(AuthConfig(username=USER, password=PASSWORD,
                                                             serveraddress=f"http://{reg.host}"))
            assert status == "Login Succeeded" and identity
            assert ts.requests[-1]["params"]["offline_token"] == ["true"]
            assert ts.requests[-1]["params"]["client_id"] == ["docker"]
            desc, _ = await client.repository(r, AuthConfig(username=USER, identitytoken=identity)).resolve("v1")
            assert desc.digest == img["manifest_digest"]
            post = ts.requests[-1]
            assert post["method"] == "POST" and post["params"]["grant_type"] == ["refresh_token"]

            # a registry token is sent as is
            n = len(ts.requests)
            token = ts.make_token(USER, ["repository:tok/img:pull"])
            desc, _ = await client.repository(r, AuthConfig(registrytoken=token)).resolve("v1")
            assert desc.digest == img["manifest_digest"] and len(ts.requests) == n
        run(body)


def test_refused_cached_token_is_renewed_once() -> None:
    ts = TokenServer()
    with ts, Registry(auth="token", token_server=ts) as reg:
        push_image(reg, "exp/img", "v1", [tar_of({"f": b"e"})])
        r = ref(reg, "exp/img:v1")

        async def body(client: RegistryClient) -> None:
            repo = client.repository(r, AuthConfig(username=USER, password=PASSWORD))
            await repo.resolve("v1")
            n = len(ts.requests)
            ts.issuer = "another-issuer"  # the registry will refuse the tokens the client has cached
            reg.restart()
            await repo.resolve("v1")
            assert len(ts.requests) == n + 1
        run(body)


# ---- TLS ---------------------------------------------------------------------------------------------------------

def test_tls_registry_with_and_without_ca(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", tls=True, tls_client_auth=True) as reg:
        push_image(reg, "tls/img", "v1", [tar_of({"f": b"tls"})], verify=reg.ca_cert_path)
        r = ref(reg, "tls/img:v1")
        certs = tmp_path / "certs.d"
        reg.install_certs_d(certs)

        async def body(client: RegistryClient) -> None:
            repo = client.repository(r, None)
            desc, _ = await repo.resolve("v1")
            assert desc.size > 0 and repo.endpoint.url == f"https://{reg.host}"
        run(body, RegistryHosts(certs_dirs=[certs], insecure_loopback=False))

        async def unknown_ca(client: RegistryClient) -> None:
            with pytest.raises(Unavailable) as ei:
                await client.repository(r, None).resolve("v1")
            assert str(ei.value) == (f'Get "https://{reg.host}/v2/": tls: failed to verify certificate: x509: '
                                     "certificate signed by unknown authority")
            assert registry_info(ei.value).transport  # type: ignore[union-attr]
            assert isinstance(pull_error(r, ei.value), SystemError_)
        run(unknown_ca, RegistryHosts(certs_dirs=[tmp_path / "empty"], insecure_loopback=False))


def test_insecure_tls_registry_skips_verification(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", tls=True) as reg:
        push_image(reg, "tls/img", "v1", [tar_of({"f": b"tls"})], verify=reg.ca_cert_path)

        async def body(client: RegistryClient) -> None:
            repo = client.repository(ref(reg, "tls/img"), None)
            await repo.resolve("v1")  # 127.0.0.1 is insecure by default: https without verification
            assert repo.endpoint.url.startswith("https://") and repo.endpoint.ssl is False
            # a TLS port answers a plain request with 400: that is not taken for a plain-HTTP registry
            assert await client._probe_plain(Endpoint(f"http://{reg.host}", host=reg.host)) is False
        run(body)


# ---- mirrors and endpoints ---------------------------------------------------------------------------------------

def test_mirror_fallthrough(shared_registry: Registry) -> None:
    img = push_image(shared_registry, "mirrored/img", "v1", [tar_of({"f": b"m"})])
    r = ref(shared_registry, "mirrored/img:v1")
    with Registry() as empty:
        hosts = RegistryHosts(certs_dirs=[], mirrors_by_host={
            shared_registry.host: [f"http://127.0.0.1:{dead_port()}", empty.url]})

        async def body(client: RegistryClient) -> None:
            repo = client.repository(r, None)
            t0 = time.monotonic()
            desc, _ = await repo.resolve("v1")  # dead mirror, then a mirror without it (404), then the registry
            assert desc.digest == img["manifest_digest"]
            assert repo.endpoint.url == f"http://{shared_registry.host}" and not repo.endpoint.mirror
            assert time.monotonic() - t0 < 5
            assert await collect(repo.fetch_blob(img["layer_digests"][0])) == img["layer_blobs"][0]
        run(body, hosts)


def test_docker_hub_mirror_serves_docker_io(shared_registry: Registry) -> None:
    img = push_image(shared_registry, "library/mirrorme", "latest", [tar_of({"f": b"hub"})])

    async def body(client: RegistryClient) -> None:
        repo = client.repository(parse_normalized_named("mirrorme"), None)
        desc, _ = await repo.resolve("latest")
        assert desc.digest == img["manifest_digest"] and repo.endpoint.mirror
    run(body, RegistryHosts(certs_dirs=[], mirrors=[shared_registry.url]))


def test_unreachable_registry() -> None:
    port = dead_port()
    r = ref(f"127.0.0.1:{port}", "x/y:1")

    async def body(client: RegistryClient) -> None:
        with pytest.raises(Unavailable) as ei:
            await client.repository(r, None).resolve("1")
        # https then http (127.0.0.1 is insecure): the last error is the one reported, as dockerd
        assert str(ei.value) == (f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: '
                                 "connection refused")
        assert str(pull_error(r, ei.value)) == str(ei.value)
    run(body)


# ---- search ------------------------------------------------------------------------------------------------------

def test_search() -> None:
    seen: list[str] = []

    async def main() -> None:
        app = web.Application()

        async def search(request: web.Request) -> web.Response:
            seen.append(request.path_qs)
            return web.json_response({"num_results": 1, "query": request.query["q"], "results": [
                {"name": "me/app", "description": "an app", "star_count": 3, "is_official": False,
                 "is_automated": True}]})

        async def ping(request: web.Request) -> web.Response:
            return web.json_response(True)
        app.router.add_get("/v1/search", search)
        app.router.add_get("/v1/_ping", ping)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with RegistryClient(RegistryHosts(certs_dirs=[])) as client:
                results = await client.search(f"127.0.0.1:{port}/my app", 0, None)
                assert results == [{"name": "me/app", "description": "an app", "star_count": 3,
                                    "is_official": False, "is_automated": True}]
                assert seen == ["/v1/search?q=my+app&n=25"]
                with pytest.raises(InvalidArgument, match=r"^limit 101 is outside the range of \[1, 100\]$"):
                    await client.search("x", 101, None)
                with pytest.raises(InvalidArgument, match="should not have a scheme"):
                    await client.search("http://x/y", 1, None)
        finally:
            await runner.cleanup()
    asyncio.run(main())


def test_search_on_a_v2_only_registry(shared_registry: Registry) -> None:
    async def body(client: RegistryClient) -> None:
        with pytest.raises(SystemError_, match="^unexpected status code 404$"):
            await client.search(f"{shared_registry.host}/anything", 10, None)
    run(body)
