# The everyday commands. `just --list` shows them.

# Run the service on its embedded default (SQLite under ./data/).
run *ARGS:
    cargo run --release -p jobboard -- demo {{ARGS}}

# Run the whole test suite (SQLite and PostgreSQL halves).
test:
    cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The usual benchmarks, printed as a table (PostgreSQL at DATABASE_URL or the local server).
bench:
    cargo build --release -p jobboard-bench
    ./scripts/bench-table

# What CI runs.
ci:
    bash .ci/run
