# vigil as a container's entrypoint: PID 1, child subreaper, graceful on SIGTERM.
#   docker build -t vigil .
#   docker run --rm -p 9750:9750 -v "$PWD/contrib/k8s/config.ron:/etc/vigil/config.ron:ro" vigil
# Multi-stage: the build stage has the toolchain; the runtime image has the binary, CA
# certificates and /bin/sh (for `Command` workers that use a shell), nothing else.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vigil \
    && strip target/release/vigil

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /etc/vigil /var/lib/vigil
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
COPY contrib/k8s/config.ron /etc/vigil/config.ron
# The metrics and probes endpoint (the config's `http:`).
EXPOSE 9750
VOLUME ["/var/lib/vigil"]
# vigil reaps every zombie as PID 1 and turns SIGTERM into an ordered shutdown of its
# workers; `significant: true` on the main worker makes its end the container's end.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vigil", "--config", "/etc/vigil/config.ron"]
CMD ["serve"]
