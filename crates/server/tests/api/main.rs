//! End-to-end tests: the real server on 127.0.0.1:0 with a temporary SQLite data directory (and
//! one PostgreSQL test), driven through the generated clients.

mod admin;
mod auth;
mod cli;
mod feed;
mod health;
mod metrics;
mod postgres;
mod subscribe;
mod support;
