# syntax=docker/dockerfile:1
# The operator image: a release build of the atlas-encryption-operator binary on distroless.
#
#   docker build -t atlas-encryption-operator:dev .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t ... .
#
# Base images are pinned by exact version tags here; the release pipeline pins them by digest
# too (image@sha256:...) so a rebuilt tag upstream cannot change a released image.
# RUST_VERSION must equal the channel in rust-toolchain.toml (`make test-chart` checks it).
ARG RUST_VERSION=1.95.0

# Builder: Debian 12 (bookworm), the same glibc as the runtime image below. The binary links glibc
# dynamically; rustls uses aws-lc-rs, whose C sources build with the image's gcc (no cmake needed).
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS rust
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5
WORKDIR /src

# Skeleton: every workspace manifest plus stub target roots, with the real Rust sources removed.
# Its content changes only when a Cargo.toml, Cargo.lock or the set of targets changes, so the
# dependency layer below stays cached across source edits, whatever members the workspace gains.
FROM rust AS skeleton
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]
COPY . .
RUN find . -name Cargo.toml -not -path './target/*' -print0 \
    | while IFS= read -r -d '' manifest; do \
        dir="${manifest%/Cargo.toml}"; \
        { echo src/main.rs; echo src/lib.rs; echo build.rs; sed -n 's/^path *= *"\(.*\)"/\1/p' "$manifest"; } \
          | while read -r f; do if [ -f "$dir/$f" ]; then echo "$dir/$f"; fi; done; \
        if [ -d "$dir/src/bin" ]; then find "$dir/src/bin" -name '*.rs'; fi; \
      done | sort -u > .stub-roots \
 && find . -name '*.rs' | sort | comm -23 - .stub-roots | xargs -r rm -f \
 && while read -r f; do printf 'fn main() {}\n' > "$f"; done < .stub-roots \
 && find . -type f ! -name Cargo.toml ! -name Cargo.lock ! -name '*.rs' -delete

FROM rust AS build
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]
# Dependency layer: all of crates.io the operator needs, built against the stubs.
COPY --from=skeleton /src ./
RUN cargo build --release --locked --bin atlas-encryption-operator \
 && rm -rf target/release/.fingerprint/atlas-encryption-operator-* \
    target/release/deps/atlas_encryption_operator-* target/release/deps/libatlas_encryption_operator-* \
    target/release/atlas-encryption-operator
# The operator's real sources (other members stay stubs: only this crate is compiled). COPY keeps
# the files' modification times, which can be older than the stub build: touch them so cargo
# never reuses a stub artefact.
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin atlas-encryption-operator \
 && install -D -m 0755 target/release/atlas-encryption-operator /out/atlas-encryption-operator

# Runtime: distroless with glibc, libgcc and CA certificates, no shell, uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="atlas-encryption-operator" \
      org.opencontainers.image.description="Kubernetes operator for MongoDB Atlas Encryption at Rest with customer-managed AWS KMS keys" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/atlasops/atlas-encryption-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/atlas-encryption-operator /usr/local/bin/atlas-encryption-operator
USER 65532:65532
# 8080: GET /metrics; 8081: GET /healthz and /readyz.
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/atlas-encryption-operator"]
