//! Liveness and readiness, for load balancers and orchestrators.

use std::future::Future;
use std::time::Duration;

use app::service::ports::PortResult;
use app::service::AppState;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

/// A part that does not answer within this is not ready, however it would eventually answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(state: AppState) -> Router {
    Router::new()
        // Alive: the process serves requests. Nothing outside is consulted, so a database
        // outage does not get every instance restarted at once.
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(move || ready(state.clone())))
}

async fn ready(state: AppState) -> Response {
    let (database, storage, identity) = tokio::join!(
        check(state.users.ping()),
        check(state.storage.ping()),
        // The identity provider's signing keys: without them no token can be verified.
        check(state.tokens.ready()),
    );
    let ready = database.is_ok() && storage.is_ok() && identity.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": database.err().unwrap_or("ok"),
            "storage": storage.err().unwrap_or("ok"),
            "identity": identity.err().unwrap_or("ok"),
        },
    });
    (status, Json(body)).into_response()
}

async fn check(probe: impl Future<Output = PortResult<()>>) -> Result<(), &'static str> {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(part = %e.part, error = %e.source, "readiness check failed");
            Err("unavailable")
        }
        Err(_) => Err("timeout"),
    }
}
