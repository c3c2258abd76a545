"""Writes a copy of the official Atlas Administration API v2 specification that Python's JSON-Schema
tooling can run, cut to the operations atlas-sim serves and changed only where the specification has a
known defect or a construct Python's validator cannot follow (each change is a deviation listed in
atlas-sim/README.md). Usage: prepare_spec.py SOURCE.yaml OPERATIONS.txt OUT.json
OPERATIONS.txt holds one `METHOD /api/atlas/v2/...` line per operation (`atlas-sim operations`)."""

import copy
import json
import sys

import yaml

REF = "#/components/schemas/"


def keep_operations(spec, operations):
    """Drops every path and method atlas-sim does not serve; fails on an operation the spec lacks."""
    wanted = {}
    for line in operations:
        method, path = line.split()
        wanted.setdefault(path, set()).add(method.lower())
    missing = [
        f"{m.upper()} {p}" for p, ms in wanted.items() for m in ms if m not in spec["paths"].get(p, {})
    ]
    if missing:
        sys.exit(f"prepare_spec: operations not in the official specification: {missing}")
    spec["paths"] = {
        p: {k: v for k, v in item.items() if k in wanted[p] or k == "parameters"}
        for p, item in spec["paths"].items()
        if p in wanted
    }
    return sum(len(ms) for ms in wanted.values())


def prune_components(spec):
    """Keeps only the components the remaining operations reach, so the tools load a small document."""
    reached, todo = set(), []

    def refs(node):
        if isinstance(node, dict):
            r = node.get("$ref")
            if isinstance(r, str) and r.startswith("#/components/") and r not in reached:
                reached.add(r)
                todo.append(r)
            for v in node.values():
                refs(v)
        elif isinstance(node, list):
            for v in node:
                refs(v)

    refs(spec["paths"])
    while todo:
        _, _, kind, name = todo.pop().split("/", 3)
        refs(spec["components"][kind][name])
        # A discriminator's mapping names its variants by $ref string, outside any `$ref` key.
        for target in spec["components"][kind][name].get("discriminator", {}).get("mapping", {}).values():
            refs({"$ref": target})
    for kind, items in spec["components"].items():
        if kind in ("securitySchemes",):
            continue
        spec["components"][kind] = {
            n: v for n, v in items.items() if f"#/components/{kind}/{n}" in reached
        }


def adapt_polymorphism(schemas):
    """A variant that is allOf [Base, {...}] while Base is oneOf the variants recurses forever in
    Python's validator, which also ignores `discriminator`. Inline Base's own part (without
    oneOf/discriminator) into each variant and pin the variant's tag, so anyOf picks exactly the
    variant the discriminator would."""
    for base_name, base in list(schemas.items()):
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
        if "oneOf" in base:
            base["anyOf"] = base.pop("oneOf")


def adapt_schemas(spec):
    schemas = spec["components"]["schemas"]
    adapt_polymorphism(schemas)
    # Overlapping oneOf without a discriminator (an M10 matches the AWS, Azure and GCP hardware specs at
    # once): anyOf.
    for name in ("HardwareSpec20240805", "DedicatedHardwareSpec20240805", "AlertViewForNdsGroup"):
        if name in schemas and "oneOf" in schemas[name]:
            schemas[name]["anyOf"] = schemas[name].pop("oneOf")

    def walk(node):
        if isinstance(node, dict):
            # `type: object` beside a oneOf of string enums: the values are strings.
            if node.get("type") == "object" and "oneOf" in node and all(
                isinstance(b, dict) and b.get("type") == "string" for b in node["oneOf"]
            ):
                node["type"] = "string"
            # Unicode classes Python's `re` cannot compile (Group.name).
            if isinstance(node.get("pattern"), str) and "\\p{" in node["pattern"]:
                node["pattern"] = node["pattern"].replace("\\p{L}\\p{N}", "\\w")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    # ApiError.parameters: declared as objects, sent by Atlas as strings and numbers.
    schemas["ApiError"]["properties"]["parameters"]["items"] = {}


def main(src, operations_file, out):
    with open(src) as f:
        # The C loader reads the 4.5 MB specification in seconds, the pure-Python one in tens of them.
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    with open(operations_file) as f:
        operations = [line.strip() for line in f if line.strip()]
    count = keep_operations(spec, operations)
    prune_components(spec)
    adapt_schemas(spec)
    with open(out, "w") as f:
        json.dump(spec, f)
    print(f"prepare_spec: {count} official operations kept", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:4])
