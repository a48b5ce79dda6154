# syntax=docker/dockerfile:1
# segd: build a release binary, run it as a non-root user on a slim image.
#
#   docker build -t segd .
#   docker run --rm -p 50051:50051 -p 9090:9090 segd                     # 1M-customer demo
#   docker run --rm -p 50051:50051 -v $PWD/data:/data segd \
#       segd serve --data /data/customers.parquet --listen 0.0.0.0:50051
#
# The build targets x86-64-v3 (AVX2, as .cargo/config.toml does): run it on an AVX2 host,
# or build with --build-arg TARGET_CPU=x86-64 for an older CPU.

FROM rust:1.95-bookworm AS builder
# Debian's protoc; build.rs would otherwise use the vendored one from protoc-bin-vendored.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
ENV PROTOC=/usr/bin/protoc
ARG TARGET_CPU=x86-64-v3
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory across builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-cpu=${TARGET_CPU}" cargo build --release --locked --bin segd \
 && cp target/release/segd /usr/local/bin/segd

FROM debian:bookworm-slim
RUN groupadd --system segd && useradd --system --gid segd --no-create-home segd
COPY --from=builder /usr/local/bin/segd /usr/local/bin/segd
USER segd
# gRPC, Prometheus metrics.
EXPOSE 50051 9090
ENV SEGD_LOG=info
# docker stop sends SIGTERM: segd stops accepting, drains in-flight calls, exits.
CMD ["segd", "serve", "--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9090"]
