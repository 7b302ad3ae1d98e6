//! End-to-end tests: the real server (`Application::build_with_clock`) on 127.0.0.1:0 with a
//! `FixedClock`, driven through the generated gRPC clients with real tokens. Every test runs on
//! SQLite (`sqlite::`) and on PostgreSQL (`postgres::`), each on a fresh database.

mod support;

mod access;
mod commands;
mod feed;
mod lifecycle;
mod notifications;
mod publication;
mod queries;
mod search;
mod walk;
