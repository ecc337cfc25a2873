"""cli.config: dockerd's flags and daemon.json keys, merged as dockerd does (merge_options); the networking ones
become the engine's NetworkConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockwright.cli.config import (
    DEFAULT_SOCKET,
    DEFAULT_TLS_HOST,
    ConfigError,
    DaemonOptions,
    TLSSettings,
    build_parser,
    load_daemon_json,
    merge_options,
    parse_host,
)
from dockwright.network.config import NetworkConfig


def _config(tmp_path: Path, *flags: str, daemon_json: dict | None = None) -> NetworkConfig:  # type: ignore[type-arg]
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(daemon_json or {}))
    args = build_parser().parse_args(["serve", "--config-file", str(path), *flags])
    return merge_options(args)["network"]


def test_defaults(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg == NetworkConfig()
    assert (cfg.bridge, cfg.iptables, cfg.ip_masq, cfg.ip_forward, cfg.icc, cfg.userland_proxy, cfg.mtu) == \
        ("dockwright0", True, True, True, True, True, 1500)


def test_flags(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "-b", "br9", "--fixed-cidr", "10.9.0.0/25", "--mtu", "1400", "--iptables=false",
                  "--ip-masq=false", "--ip-forward=false", "--icc=false", "--userland-proxy=false", "--ip",
                  "127.0.0.1", "--dns", "10.0.0.53", "--dns", "10.0.0.54", "--dns-search", "ex.com", "--dns-opt",
                  "ndots:2", "--host-gateway-ip", "10.9.9.9", "--default-address-pool", "base=10.50.0.0/16,size=24")
    assert cfg == NetworkConfig(bridge="br9", fixed_cidr="10.9.0.0/25", mtu=1400, iptables=False, ip_masq=False,
                                ip_forward=False, icc=False, userland_proxy=False, ip="127.0.0.1",
                                dns=["10.0.0.53", "10.0.0.54"], dns_search=["ex.com"], dns_opts=["ndots:2"],
                                host_gateway_ip="10.9.9.9",
                                default_address_pools=["base=10.50.0.0/16,size=24"])
    assert _config(tmp_path, "--bip", "10.7.0.1/16", "--icc").bip == "10.7.0.1/16"


def test_daemon_json_keys(tmp_path: Path) -> None:
    cfg = _config(tmp_path, daemon_json={
        "bridge": "none", "bip": "10.8.0.1/24", "mtu": 9000, "iptables": False, "ip-masq": False, "icc": False,
        "userland-proxy": False, "dns": ["1.1.1.1"], "dns-search": ["a.b"], "dns-opts": ["rotate"],
        "default-address-pools": [{"base": "10.60.0.0/16", "size": 26}], "host-gateway-ip": "10.8.0.9"})
    assert (cfg.bridge, cfg.bip, cfg.mtu, cfg.iptables, cfg.ip_masq, cfg.icc, cfg.userland_proxy) == \
        ("none", "10.8.0.1/24", 9000, False, False, False, False)
    assert (cfg.dns, cfg.dns_search, cfg.dns_opts, cfg.host_gateway_ip) == (["1.1.1.1"], ["a.b"], ["rotate"],
                                                                            "10.8.0.9")
    assert cfg.default_address_pools == [{"base": "10.60.0.0/16", "size": 26}]


def test_errors_as_dockerd(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="specified both as a flag and in the configuration file: bip"):
        _config(tmp_path, "--bip", "10.1.0.1/16", daemon_json={"bip": "10.2.0.1/16"})
    with pytest.raises(ConfigError, match="cannot unmarshal string into Go struct field Config.iptables of type bool"):
        _config(tmp_path, daemon_json={"iptables": "yes"})
    with pytest.raises(ConfigError, match="cannot unmarshal number into Go struct field Config.dns of type"):
        _config(tmp_path, daemon_json={"dns": 5})
    with pytest.raises(ConfigError, match="invalid default-address-pools"):
        _config(tmp_path, "--default-address-pool", "base=10.0.0.0/8")
    with pytest.raises(ConfigError, match="invalid MTU"):
        _config(tmp_path, "--mtu", "20")


# ---- flags and daemon.json beyond networking -------------------------------------------------------------------

def _merged(tmp_path: Path, *flags: str, daemon_json: dict | None = None) -> DaemonOptions:  # type: ignore[type-arg]
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(daemon_json or {}))
    return merge_options(build_parser().parse_args(["serve", "--config-file", str(path), *flags]))


def test_parse_host_as_dockerd() -> None:
    assert parse_host("unix:///run/x.sock") == ("unix", "/run/x.sock")
    assert parse_host("unix://") == ("unix", "/run/dockwright.sock")
    assert parse_host("/run/y.sock") == ("unix", "/run/y.sock")
    assert parse_host("tcp://0.0.0.0:2376") == ("tcp", ("0.0.0.0", 2376))
    assert parse_host("tcp://:2380") == ("tcp", ("localhost", 2380))
    assert parse_host("tcp://") == ("tcp", ("localhost", 2375))
    assert parse_host("tcp://[::1]:2377") == ("tcp", ("::1", 2377))
    with pytest.raises(ConfigError, match="invalid bind address .*invalid port: 70000"):
        parse_host("tcp://h:70000")
    with pytest.raises(ConfigError, match="invalid bind address format: ftp://x"):
        parse_host("ftp://x")


def test_load_daemon_json(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.json")
    assert load_daemon_json(missing, explicit=False) == {}
    with pytest.raises(ConfigError, match=f"open {missing}: no such file or directory"):
        load_daemon_json(missing, explicit=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="unable to configure the Docker daemon with file"):
        load_daemon_json(str(bad), explicit=True)
    bad.write_text("[]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_daemon_json(str(bad), explicit=True)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"tls": None, "group": "g", "data-root": "/d", "unknown-key": 1}))
    assert load_daemon_json(str(ok), explicit=True) == {"group": "g", "data-root": "/d", "unknown-key": 1}
    ok.write_text(json.dumps({"tlsverify": "yes"}))
    with pytest.raises(ConfigError, match="cannot unmarshal string into Go struct field Config.tlsverify of type bool"):
        load_daemon_json(str(ok), explicit=True)


def test_merge_defaults_and_precedence(tmp_path: Path) -> None:
    opts = _merged(tmp_path)
    assert opts["hosts"] == [DEFAULT_SOCKET]
    assert (opts["data_root"], opts["downloads"], opts["uploads"], opts["log_level"]) == \
        ("/var/lib/dockwright", 3, 5, "info")
    assert opts["certs_d"] == str(tmp_path / "certs.d")
    opts = _merged(tmp_path, "-D", "--max-concurrent-downloads", "7",
                   daemon_json={"data-root": "/srv/dw", "registry-mirrors": ["https://m.example"]})
    assert (opts["data_root"], opts["downloads"], opts["log_level"], opts["mirrors"]) == \
        ("/srv/dw", 7, "debug", ["https://m.example"])
    with pytest.raises(ConfigError, match=r"hosts: \(from flag: \[unix:///a\], from file: \[unix:///b\]\)"):
        _merged(tmp_path, "-H", "unix:///a", daemon_json={"hosts": ["unix:///b"]})


def test_tls_flags_and_default_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    assert _merged(tmp_path, "--tlsverify")["hosts"] == [DEFAULT_TLS_HOST]
    tls = _merged(tmp_path, "--tlsverify")["tls"]
    assert (tls.tls, tls.verify, tls.cacert, tls.cert) == (True, True, str(tmp_path / "ca.pem"), "")
    assert tls.client_auth and tls.auth_ok()
    tls = _merged(tmp_path, "--tls=false")["tls"]
    assert (tls.tls, tls.verify, tls.client_auth, tls.auth_ok()) == (False, False, False, True)
    assert _merged(tmp_path)["tls"] == TLSSettings()
    # daemon.json's tlsverify turns TLS on, but not for the default -H (taken before it)
    opts = _merged(tmp_path, daemon_json={"tlsverify": True, "tlscacert": "/c.pem"})
    assert (opts["tls"].tls, opts["tls"].verify, opts["tls"].cacert, opts["hosts"]) == \
        (True, True, "/c.pem", [DEFAULT_SOCKET])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--tls=maybe"])
