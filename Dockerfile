# syntax=docker/dockerfile:1
# One image with every seckill binary (seckill-gateway, seckill-order-worker,
# seckill-dlq-replayer, the operator's seckill-ctl, seckill-sim); the container's command picks
# one:
#   docker build -t ghcr.io/seckill/seckill:dev .
#   docker run --rm -e SECKILL__KAFKA__BOOTSTRAP_SERVERS=... ghcr.io/seckill/seckill:dev seckill-gateway
# Kubernetes (deploy/k8s) and compose (deploy/compose) set `command` per service.

FROM rust:1-bookworm AS builder
# rdkafka-sys compiles librdkafka from source and links zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binaries are copied out
# of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -executable -name 'seckill-*' -exec cp {} /out/ \;

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 seckill \
 && useradd --system --uid 10001 --gid seckill --home-dir /app --no-create-home --shell /usr/sbin/nologin seckill
COPY --from=builder /out/ /usr/local/bin/
WORKDIR /app
# Numeric, so that Kubernetes can verify runAsNonRoot (deploy/k8s sets runAsUser 10001 too).
USER 10001:10001
# In a container the listeners must face the network, not loopback (the default in config/).
ENV SECKILL__HTTP__HOST=0.0.0.0
# An image runs as a deployment unless told otherwise: the gateway then refuses the development
# secrets of config/default.toml (SECKILL_ENV=local, or test, accepts them).
ENV SECKILL_ENV=production
# Gateway API (http.port) and the ops port of the worker and the replayer (http.ops_port).
EXPOSE 8080 9090
CMD ["seckill-gateway"]
