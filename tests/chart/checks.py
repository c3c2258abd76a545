"""What the chart test scripts share: one way to assert, to fail and to count what passed."""

import sys

PASSED = []


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    PASSED.append(msg)
    print(f"ok: {msg}")


def load(path):
    """Every non-empty YAML document of a file (PyYAML comes from the test venv; only callers need it)."""
    import yaml

    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]
