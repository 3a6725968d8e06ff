# Tributary: the `api` binary (REST API, webhook ingress, embedded worker, `api migrate`) and
# the standalone `worker`, in a small non-root image.
#
#   docker build -t tributary .
#   docker run -e DATABASE_URL=postgres://… -e TRIBUTARY_ENCRYPTION_KEYS=… -e TRIBUTARY_JWT_SECRET=… \
#     -p 8080:8080 tributary                      # the api
#   docker run … tributary worker                 # a standalone worker
#   docker run … tributary api migrate            # migrations only (a Kubernetes Job)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api -p worker \
    && mkdir -p /out \
    && cp target/release/api target/release/worker /out/

# glibc, libgcc and the CA certificates (TLS to Stripe and the CRMs verifies against the
# system store), nothing else; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/api /out/worker /usr/local/bin/
ENV TRIBUTARY_LISTEN=0.0.0.0:8080 \
    TRIBUTARY_DATA_DIR=/tmp/tributary \
    TRIBUTARY_LOG_FORMAT=json
EXPOSE 8080
USER nonroot:nonroot
CMD ["api"]
