# The everyday commands. `just --list` shows them.

# Run the service on its embedded default (SQLite under ./data/).
run *ARGS:
    cargo run --release -p jobboard -- serve {{ARGS}}

# Run the whole test suite (SQLite and PostgreSQL halves).
test:
    cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The usual benchmarks (event store, then commands through the gRPC service), printed as a table
# of medians of RUNS runs (PostgreSQL at DATABASE_URL or the local server).
bench RUNS="3":
    cargo build --release -p jobboard-bench
    ./scripts/bench-table {{RUNS}}

# What CI runs.
ci:
    bash .ci/run
