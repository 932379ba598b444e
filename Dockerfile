# Build stage: the release binary.
FROM rust:1.85-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The other workspace members (load generator, client framing): Cargo loads every
# member to resolve the workspace; only the server is built.
COPY crates ./crates
COPY src ./src
COPY examples ./examples
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
