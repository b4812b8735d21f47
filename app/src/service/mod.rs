//! Server side of the app: the use cases behind the server functions, written against the ports.
//! Compiled only with the `ssr` feature.

mod auth;
mod limits;
mod maintenance;
mod metrics;
mod pictures;
pub mod ports;
mod security;
mod session;
mod throttle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use leptos::prelude::use_context;

pub use auth::{
    client_address, request_headers, AuthUser, UserStatusCache, ADMIN, REFRESH_COOKIE,
    SESSION_COOKIE,
};
pub use limits::UploadLimits;
pub use maintenance::{MaintenanceReport, LEDGER_RETENTION, MAX_TASK_ATTEMPTS};
pub use metrics::{Metrics, RequestLabels};
pub use pictures::{UserPage, CONTENT_SNIFF_BYTES};
pub use security::apply_page_policy;
pub use throttle::SignInThrottle;

use crate::api::DemoAccount;
use crate::error::ApiError;
use ports::{Directory, ObjectStore, PortError, TokenVerifier, UserStore};

/// Tunables of the use cases, read from configuration by the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub upload_url_ttl: Duration,
    pub read_url_ttl: Duration,
    /// Mark the session cookie `Secure` (on whenever the app is served over HTTPS).
    pub secure_cookies: bool,
    /// Scheme, host and port of the presigned URLs: the one other origin pages may talk to.
    pub storage_origin: Option<String>,
    /// Proxies in front of the server that append to `X-Forwarded-For` (0: none, the header is
    /// ignored and the client is the TCP peer). See `client_address`.
    pub trusted_proxy_hops: usize,
    /// The port of `cargo leptos watch`'s reload websocket, when pages carry its script.
    pub live_reload_port: Option<u32>,
    /// The accounts the sign-in page shows: the embedded issuer's seeded ones, else none.
    pub demo_accounts: Vec<DemoAccount>,
}

/// Everything a request needs, built once at start and shared (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub users: Arc<dyn UserStore>,
    pub storage: Arc<dyn ObjectStore>,
    pub directory: Arc<dyn Directory>,
    pub tokens: Arc<dyn TokenVerifier>,
    pub limits: Arc<UploadLimits>,
    pub metrics: Arc<Metrics>,
    /// Wrong passwords per account and per client address (in this server's memory).
    pub sign_in_throttle: Arc<SignInThrottle>,
    /// Users' `status`, briefly remembered (see `UserStatusCache`).
    pub user_status: Arc<UserStatusCache>,
    /// Behind an `Arc` like the rest: the state is cloned into every request's context, and
    /// a clone of the settings' strings each time was a measurable share of `upload-url`.
    pub settings: Arc<Settings>,
}

impl AppState {
    /// The state the server provided for this request.
    pub fn current() -> Result<Self, ApiError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from the Leptos context");
            ApiError::internal()
        })
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        // The cause stays in the log; the client learns which part to blame, and that it may retry.
        tracing::error!(part = %e.part, error = %e.source, "outside part failed");
        ApiError::unavailable(format!(
            "The {} is unavailable right now; nothing was changed. Please try again.",
            e.part
        ))
    }
}

/// Sets the HTTP status of the current server-function response.
pub fn set_response_status(status: u16) {
    if let (Some(options), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(status),
    ) {
        options.set_status(status);
    }
}

/// Runs a server function's body and turns its error into the response status. Every server
/// function goes through this, so no error can leave with the default 500 by accident.
pub async fn respond<T>(body: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    let result = body.await;
    if let Err(e) = &result {
        set_response_status(e.status);
        if let (Some(seconds), Some(options)) =
            (e.retry_after, use_context::<leptos_axum::ResponseOptions>())
        {
            options.insert_header(http::header::RETRY_AFTER, seconds.into());
        }
    }
    result
}
