"""distribution.http: the session factory's settings, Go's proxy rule, certs.d TLS contexts (no network)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from dockwright.distribution.http import (
    DEFAULT_USER_AGENT,
    certs_tls_context,
    client_session,
    environment_proxies,
    select_proxy,
)
from dockwright.errors import InvalidArgument


def test_client_session_settings() -> None:
    async def run() -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
        async with client_session(timeout=timeout) as s:
            assert s.timeout == timeout and s.trust_env
            assert "User-Agent" not in s.headers  # aiohttp's own
            assert isinstance(s.connector, aiohttp.TCPConnector)
            assert (s.connector.limit, s.connector.limit_per_host) == (100, 0)
        async with client_session(timeout=timeout, user_agent=DEFAULT_USER_AGENT, limit=64, limit_per_host=16,
                                  trust_env=False) as s:
            assert s.headers["User-Agent"] == DEFAULT_USER_AGENT and not s.trust_env
            assert s.connector is not None and (s.connector.limit, s.connector.limit_per_host) == (64, 16)

    asyncio.run(run())


def test_select_proxy_as_go() -> None:
    proxies = {"http": "http://proxy:3128", "https": "http://sproxy:3128", "no": "corp.example, .internal"}
    assert select_proxy(proxies, "https://registry-1.docker.io/v2/") == "http://sproxy:3128"
    assert select_proxy(proxies, "http://example.com/x") == "http://proxy:3128"
    for direct in ("http://127.0.0.1:5000/v2/", "http://localhost/", "http://[::1]:5000/", "http://a.localhost/",
                   "https://corp.example/", "https://reg.corp.example/", "https://x.internal/"):
        assert select_proxy(proxies, direct) is None, direct
    assert select_proxy({**proxies, "no": "*"}, "https://registry-1.docker.io/") is None
    assert select_proxy({}, "https://registry-1.docker.io/") is None


def test_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://p:1")
    monkeypatch.setenv("NO_PROXY", "x.example")
    assert environment_proxies() == {"https": "http://p:1", "no": "x.example"}


def test_certs_tls_context(tmp_path: Path) -> None:
    assert isinstance(certs_tls_context([]), ssl.SSLContext)
    lone = tmp_path / "client.cert"
    lone.write_text("x")
    with pytest.raises(InvalidArgument, match="missing key client.key for client certificate client.cert"):
        certs_tls_context([lone])
    key = tmp_path / "other.key"
    key.write_text("x")
    with pytest.raises(InvalidArgument, match="missing client certificate other.cert for key other.key"):
        certs_tls_context([key])
    bad_ca = tmp_path / "ca.crt"
    bad_ca.write_text("not a certificate")
    with pytest.raises(InvalidArgument, match="unable to load CA certificate"):
        certs_tls_context([bad_ca])
