# Build stage: the release binary. The toolchain is the one CI builds with
# (scripts/check-docker-build.sh builds exactly the files copied here with it); it must
# be at least Cargo.toml's rust-version. Every file cargo needs to read the manifest is
# copied, benches included (Cargo.toml declares them).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The other workspace members (load generator, client framing): Cargo loads every
# member to resolve the workspace; only the server is built.
COPY crates ./crates
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin ferrocable

# Runtime stage: a small image running as an unprivileged user.
FROM debian:bookworm-slim
# CA certificates for rediss:// (TLS to a managed Redis).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ferrocable
COPY --from=build /src/target/release/ferrocable /usr/local/bin/ferrocable
USER 10001
ENV FERROCABLE_HOST=0.0.0.0 PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ferrocable"]
