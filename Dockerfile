# syntax=docker/dockerfile:1
# The repoint server image: a static musl binary on an empty base, run as
# a non-root user. Build: docker build -t repoint .
#
# Stage 1 compiles. The built-in policies are compiled for wasm32-wasip2 by
# the runtime's build script, so that target is installed here too.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev ca-certificates \
 && rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p repoint-cli \
 && cp target/release/repoint /repoint \
 && mkdir -p /empty-tmp

# Stage 2 runs: nothing but the binary, the CA roots for registry probes,
# and a writable /tmp.
FROM scratch
COPY --from=build /repoint /usr/local/bin/repoint
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /empty-tmp /tmp
ENV HOME=/tmp
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/repoint"]
CMD ["serve", "--help"]
