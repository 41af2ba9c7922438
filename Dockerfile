# The aegis-proxy container image: built with the Rust toolchain, run on
# distroless (glibc, CA certificates, no shell, no package manager) as a
# non-root numeric user. Build from the repository root:
#
#   docker build -t aegis-proxy:0.1.0 .
#
# The binary links glibc dynamically (SQLite, ring and jemalloc are compiled
# in), so the run stage is distroless `cc`, which carries glibc and libgcc.
# Pin the two base images by digest in your own registry for reproducible
# builds (`FROM ...@sha256:...`); the tags below are what was linted.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace (.dockerignore keeps build output, ledgers and the
# fuzzing corpora out): cargo loads every member's manifest.
COPY . .
RUN cargo build --release --locked -p aegis-proxy \
    && install -D -m 0755 target/release/aegis-proxy /out/aegis-proxy

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="aegis-proxy" \
      org.opencontainers.image.description="A sidecar that enforces AI agents' tool calls inline and records them in a hash-chained ledger" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /out/aegis-proxy /usr/local/bin/aegis-proxy
# distroless's nonroot user; the Kubernetes manifests run as it too.
USER 65532:65532
# admin/API, MCP, forward proxy, metrics and probes.
EXPOSE 8080 8081 3128 9090
ENTRYPOINT ["/usr/local/bin/aegis-proxy"]
CMD ["run", "--config", "/etc/aegis/aegis.yaml"]
