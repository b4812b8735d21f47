//! The Portrait server: configuration, infrastructure and wiring. The use cases live in
//! `app::service`; this crate provides the implementations of its ports.

pub mod cognito;
pub mod config;
pub mod db;
pub mod embedded;
pub mod health;
pub mod http;
pub mod identity;
pub mod rate;
pub mod startup;
pub mod storage;
pub mod telemetry;
