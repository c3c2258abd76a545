#!/usr/bin/env python3
"""Checks on the Dockerfile that need no container runtime (this project's machines have none).

    dockerfile_check.py REPO_ROOT

1. The builder's RUST_VERSION equals rust-toolchain.toml's channel.
2. The image contract the chart relies on: binary at /usr/local/bin/atlas-encryption-operator run
   with no args, USER 65532, EXPOSE 8080 8081, base images pinned by exact version tags.
3. The dependency-cache skeleton stage really works on today's workspace: the build context is
   assembled the way .dockerignore says, the skeleton stage's RUN is executed on it as written in
   the Dockerfile, and `cargo metadata --locked` must load the resulting workspace (every member's
   manifest and targets present, Cargo.lock unchanged). The operator's own sources must be in the
   context, and nothing the check uses is a copy of the Dockerfile's logic.
"""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile

from checks import PASSED, check, fail


def logical_lines(text):
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            # Docker removes the backslash and the newline: the lines simply join.
            cur += line.rstrip()[:-1]
            continue
        out.append(cur + line)
        cur = ""
    return out


def ignored(rel, patterns):
    """A small .dockerignore matcher: a pattern matches the path or any of its parent folders."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        if p.startswith("**/"):
            hit = any(fnmatch.fnmatch(pre, p) or fnmatch.fnmatch(pre.split("/")[-1], p[3:]) for pre in prefixes)
        else:
            hit = any(fnmatch.fnmatch(pre, p) for pre in prefixes)
        if hit:
            result = not neg
    return result


def build_context(root, dest):
    with open(os.path.join(root, ".dockerignore")) as f:
        patterns = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    # Only files git knows about (tracked or not ignored): what a fresh clone or a CI checkout has.
    files = subprocess.run(["git", "-C", root, "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    kept = []
    for rel in filter(None, files):
        src = os.path.join(root, rel)
        if not os.path.isfile(src) or ignored(rel, patterns):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
        kept.append(rel)
    return kept


def main(root):
    text = open(os.path.join(root, "Dockerfile")).read()
    toolchain = open(os.path.join(root, "rust-toolchain.toml")).read()
    channel = re.search(r'^channel\s*=\s*"([^"]+)"', toolchain, re.M).group(1)
    m = re.search(r"^ARG RUST_VERSION=(\S+)$", text, re.M)
    check(m and m.group(1) == channel, f"Dockerfile RUST_VERSION equals rust-toolchain.toml ({channel})")

    lines = logical_lines(text)
    froms = [ln.split()[1].replace("${RUST_VERSION}", channel) for ln in lines if ln.startswith("FROM ")]
    external = [f for f in froms if "/" in f]
    check(f"docker.io/library/rust:{channel}-slim-bookworm" in external, "builder is rust:<toolchain>-slim-bookworm")
    # distroless publishes no version tags (only latest, nonroot, debug): the release pipeline pins
    # its digest. Debian 12 must match the builder's glibc.
    check("gcr.io/distroless/cc-debian12:nonroot" in external or any(
        f.startswith("gcr.io/distroless/cc-debian12@sha256:") for f in external), "runtime is distroless cc-debian12 nonroot")
    check(not any(f.endswith(":latest") or ":" not in f.split("/")[-1] for f in external), "no untagged or :latest base image")
    final = lines[max(i for i, ln in enumerate(lines) if ln.startswith("FROM ")):]
    check(any(ln.startswith("COPY ") and ln.endswith(" /usr/local/bin/atlas-encryption-operator") for ln in final),
          "binary at /usr/local/bin/atlas-encryption-operator")
    check('ENTRYPOINT ["/usr/local/bin/atlas-encryption-operator"]' in final and not any(ln.startswith("CMD") for ln in final),
          "entrypoint is the binary, with no args")
    check("USER 65532:65532" in final, "final stage runs as uid/gid 65532")
    check("EXPOSE 8080 8081" in final, "exposes 8080 (metrics) and 8081 (health)")
    check(sum("cargo build --release --locked --bin atlas-encryption-operator" in ln for ln in lines) == 2,
          "two locked release builds of the operator binary (dependencies, then sources)")
    check(any(ln.startswith("LABEL ") and "org.opencontainers.image.source" in ln for ln in final), "OCI labels")

    stage = None
    skeleton_runs = []
    for ln in lines:
        if ln.startswith("FROM "):
            stage = ln.split()[-1] if " AS " in ln else None
        elif stage == "skeleton" and ln.startswith("RUN "):
            skeleton_runs.append(ln[4:])
    check(len(skeleton_runs) == 1, "one RUN in the skeleton stage")

    with tempfile.TemporaryDirectory() as tmp:
        ctx = os.path.join(tmp, "src")
        kept = build_context(root, ctx)
        check("src/main.rs" in kept and "Cargo.lock" in kept, "the build context holds the operator's sources and Cargo.lock")
        check(not any(k.startswith((".git/", "target/", ".testenv/", "charts/")) for k in kept),
              "the build context leaves out .git, target, .testenv and charts")
        # Files the operator's sources embed at compile time must be in the context too.
        embedded = []
        for d, _, fs in os.walk(os.path.join(root, "src")):
            for f in fs:
                if f.endswith(".rs"):
                    src = open(os.path.join(d, f)).read()
                    for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', src):
                        target = os.path.relpath(os.path.normpath(os.path.join(d, m.group(1))), root)
                        embedded.append(target)
        missing = [e for e in embedded if e not in kept]
        check(not missing, f"files embedded with include_str!/include_bytes! are in the build context ({len(embedded)})"
              + (f"; missing: {missing}" if missing else ""))
        lock_before = open(os.path.join(ctx, "Cargo.lock")).read()
        subprocess.run(["bash", "-o", "pipefail", "-euc", skeleton_runs[0]], cwd=ctx, check=True)
        rs = sorted(os.path.relpath(os.path.join(d, f), ctx) for d, _, fs in os.walk(ctx) for f in fs if f.endswith(".rs"))
        check(rs and all(open(os.path.join(ctx, f)).read() == "fn main() {}\n" for f in rs),
              f"the skeleton keeps only stub target roots ({len(rs)} files)")
        others = [os.path.relpath(os.path.join(d, f), ctx) for d, _, fs in os.walk(ctx) for f in fs
                  if not f.endswith(".rs") and f not in ("Cargo.toml", "Cargo.lock")]
        check(not others, "the skeleton holds nothing but manifests, the lock file and stubs")
        env = dict(os.environ, RUSTUP_TOOLCHAIN=channel, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
        r = subprocess.run(["cargo", "metadata", "--locked", "--format-version", "1"], cwd=ctx, env=env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            own = subprocess.run(["cargo", "metadata", "--locked", "--format-version", "1"], cwd=root, env=env,
                                 capture_output=True, text=True)
            if own.returncode != 0:
                fail("Cargo.lock does not match the workspace manifests (`cargo metadata --locked` fails in the "
                     "repository itself), so `cargo build --locked` in the image would fail too: commit the "
                     f"updated Cargo.lock.\n{own.stderr}")
            fail(f"cargo metadata --locked on the skeleton failed (the repository itself loads):\n{r.stderr}")
        check(open(os.path.join(ctx, "Cargo.lock")).read() == lock_before, "the skeleton workspace loads with Cargo.lock unchanged")
        check('"name":"atlas-encryption-operator"' in r.stdout.replace(" ", ""), "the skeleton has the operator package")
    print(f"dockerfile_check: {len(PASSED)} checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: dockerfile_check.py REPO_ROOT")
    main(sys.argv[1])
