# kairo: the CLI and the registry watcher (`kairo watch --listen`), as a small non-root image.
#
#   docker build -t kairo .
#   docker run --rm kairo --help
#
# Stage 1 builds a release binary; stage 2 carries it with git (the write path pushes with the
# real `git`, so that credentials helpers, SSH and signing behave as git's own) and CA roots.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY xtask/Cargo.toml xtask/Cargo.toml
RUN mkdir -p src xtask/src benches tests/integration \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > tests/integration/main.rs \
    && echo '' > src/lib.rs \
    && echo 'fn main() {}' > xtask/src/main.rs \
    && echo 'fn main() {}' > benches/registry.rs \
    && cargo build --release --locked --bin kairo \
    && rm -rf src xtask/src benches tests
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin kairo \
    && strip target/release/kairo

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --user-group --home-dir /home/kairo --create-home kairo
COPY --from=build /src/target/release/kairo /usr/local/bin/kairo
USER 65532:65532
WORKDIR /home/kairo
ENV HOME=/home/kairo
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kairo"]
CMD ["--help"]
