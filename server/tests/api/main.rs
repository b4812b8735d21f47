//! Black-box tests: the real server on port 0 with a fresh data directory, driven over HTTP.

mod auth;
mod cognito;
mod delivery;
mod directory;
mod edges;
mod helpers;
mod operations;
mod pictures;
mod renditions;
mod resilience;
mod servers;
mod signin;
mod timeouts;
