"""dockerd's networking flags and daemon.json keys become the engine's NetworkConfig (cli.main._merge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockwright.cli.main import ConfigError, _build_parser, _merge
from dockwright.engine.config import NetworkConfig


def _config(tmp_path: Path, *flags: str, daemon_json: dict | None = None) -> NetworkConfig:  # type: ignore[type-arg]
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(daemon_json or {}))
    args = _build_parser().parse_args(["serve", "--config-file", str(path), *flags])
    return _merge(args)["network"]


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
