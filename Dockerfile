# syntax=docker/dockerfile:1
# The tollgate binary in a minimal image.
#
#   docker build -t tollgate .
#   docker run --rm -p 127.0.0.1:4000:4000 tollgate          # the offline demo
#   docker run --rm -p 127.0.0.1:4000:4000 -v ./config.yaml:/etc/tollgate/config.yaml:ro \
#       -e TOLLGATE_MASTER_KEY -e OPENROUTER_API_KEY tollgate
#
# Config: /etc/tollgate/config.yaml (TOLLGATE_CONFIG; the image ships the demo
# there). Port: 4000. Volume: /var/lib/tollgate, the working directory, where
# the spend ledger (tollgate-ledger.sqlite3) is kept unless the config sets
# tollgate.ledger_path. User: 65532 (nonroot). docs/SETUP.md has the rest.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# scripts/check-image runs this very command outside Docker: keep it on one
# line, starting with `RUN cargo build`.
RUN cargo build --release --locked -p tollgate-gateway --bin tollgate
# The ledger's directory, owned by the runtime user (the runtime has no shell
# to make it).
RUN mkdir -p /out/var/lib/tollgate && cp target/release/tollgate /out/tollgate

# glibc, libgcc, CA certificates and a nonroot user; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
COPY --from=build --chown=65532:65532 /out/var/lib/tollgate /var/lib/tollgate
COPY examples/demo.yaml /etc/tollgate/config.yaml
USER 65532:65532
WORKDIR /var/lib/tollgate
VOLUME ["/var/lib/tollgate"]
ENV TOLLGATE_CONFIG=/etc/tollgate/config.yaml
EXPOSE 4000
# No curl in the image: the binary probes its own GET /health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/tollgate", "healthcheck", "127.0.0.1:4000"]
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["--host", "0.0.0.0", "--port", "4000"]
