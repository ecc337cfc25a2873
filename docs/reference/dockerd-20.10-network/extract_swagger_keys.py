"""Writes swagger-keys.json: the property names of the networking definitions in the Engine API specs of
/work/shared/spec (moby's api/docs/v1.XX.yaml and api/swagger.yaml, see that folder's SOURCES.md).

Run with a Python that has PyYAML (Debian's python3 has it; the project venv does not):
    python3 docs/reference/dockerd-20.10-network/extract_swagger_keys.py [/work/shared/spec]
"""

import json
import sys
from pathlib import Path

import yaml

SPECS = {
    "1.41": "docker-engine-api-v1.41.yaml",
    "1.44": "docker-engine-api-v1.44.yaml",
    "1.51": "docker-engine-api-v1.51.yaml",
    "1.56": "docker-engine-api-v1.56-master.yaml",
}
DEFS = ["NetworkSettings", "EndpointSettings", "Network", "NetworkSummary", "NetworkInspect", "EndpointResource",
        "IPAM", "IPAMConfig", "Port", "PortSummary", "PortBinding", "ConfigReference", "ContainerSummary"]


def props(defs: dict, name: str) -> list[str] | None:
    d = defs.get(name)
    if d is None:
        return None
    out: list[str] = []
    for part in d.get("allOf", []):
        ref = part.get("$ref", "")
        if ref:
            out += props(defs, ref.rsplit("/", 1)[1]) or []
        out += list(part.get("properties", {}))
    out += list(d.get("properties", {}))
    return out


def main() -> None:
    spec_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/spec")
    result: dict[str, dict[str, list[str]]] = {}
    for version, fname in SPECS.items():
        defs = yaml.safe_load((spec_dir / fname).read_text())["definitions"]
        result[version] = {name: p for name in DEFS if (p := props(defs, name)) is not None}
        cs = defs["ContainerSummary"]["properties"]["NetworkSettings"]
        result[version]["ContainerSummary.NetworkSettings"] = list(cs.get("properties", {}))
    out = Path(__file__).with_name("swagger-keys.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
