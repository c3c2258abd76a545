"""Schemathesis hooks for atlas-sim: Atlas versions media types per operation, so the Accept header is set
from the operation's own success media type; `envelope=true` is dropped because it deliberately changes the
body shape away from the schema (an exclusion documented in atlas-sim/README.md)."""

import json
import os

import schemathesis

_SPEC = json.load(open(os.environ["ATLAS_SIM_SPEC"]))
_MEDIA = {}
for _path, _item in _SPEC["paths"].items():
    for _method, _op in _item.items():
        if not isinstance(_op, dict) or "responses" not in _op:
            continue
        for _code in ("200", "202", "204"):
            _content = _op["responses"].get(_code, {}).get("content")
            if _content:
                _MEDIA[(_method.upper(), _path)] = next(iter(_content))
                break


@schemathesis.hook
def before_call(context, case, **kwargs):
    media = _MEDIA.get((case.method.upper(), case.operation.path))
    if media:
        case.headers = {**(case.headers or {}), "Accept": media}
    if case.query and "envelope" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "envelope"}
