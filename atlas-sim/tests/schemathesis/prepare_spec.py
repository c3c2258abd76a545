"""Writes a copy of the official OpenAPI subset that Python's JSON-Schema tooling can run, changing only
what the reference's §12 lists as quirks of the official spec (each change is an exclusion documented in
atlas-sim/README.md). Usage: prepare_spec.py SOURCE.yaml OUT.json"""

import copy
import json
import sys

import yaml

REF = "#/components/schemas/"


def main(src, out):
    with open(src) as f:
        spec = yaml.safe_load(f)
    schemas = spec["components"]["schemas"]

    # §12.1 self-referencing polymorphism: a variant that is allOf [Base, {...}] while Base is oneOf the
    # variants recurses forever. Inline Base's own part (without oneOf/discriminator) into each variant.
    for base_name, base in schemas.items():
        if "discriminator" not in base:
            continue
        own = {k: v for k, v in base.items() if k not in ("oneOf", "discriminator")}
        prop = base["discriminator"]["propertyName"]
        for tag, target in base["discriminator"].get("mapping", {}).items():
            variant = schemas[target[len(REF):]]
            variant["allOf"] = [
                copy.deepcopy(own) if part.get("$ref") == REF + base_name else part
                for part in variant.get("allOf", [])
            ] + [{"properties": {prop: {"enum": [tag]}}}]
        # Python's validator ignores `discriminator`: with each variant pinned to its tag, anyOf selects
        # exactly the variant the discriminator would (variants overlap on everything else).
        if "oneOf" in base:
            base["anyOf"] = base.pop("oneOf")

    # §12.2 overlapping oneOf without a discriminator: anyOf.
    for name in ("HardwareSpec20240805", "DedicatedHardwareSpec20240805", "AlertViewForNdsGroup"):
        s = schemas[name]
        s["anyOf"] = s.pop("oneOf")

    def walk(node):
        if isinstance(node, dict):
            # §12.3 `type: object` beside a oneOf of string enums: the values are strings.
            if node.get("type") == "object" and "oneOf" in node and all(
                isinstance(b, dict) and b.get("type") == "string" for b in node["oneOf"]
            ):
                node["type"] = "string"
            # §12.6 Unicode classes Python's `re` can't compile (Group.name).
            if isinstance(node.get("pattern"), str) and "\\p{" in node["pattern"]:
                node["pattern"] = node["pattern"].replace("\\p{L}\\p{N}", "\\w")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    # §12.4 ApiError.parameters hold strings and numbers.
    schemas["ApiError"]["properties"]["parameters"]["items"] = {}

    with open(out, "w") as f:
        json.dump(spec, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
