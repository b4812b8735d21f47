//! Liveness and readiness, for load balancers and orchestrators.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::service::ports::PortResult;
use app::service::AppState;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// A part that does not answer within this is not ready, however it would eventually answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `cache_for`: how long one readiness answer is reused (see `Readiness`).
pub fn routes(state: AppState, cache_for: Duration) -> Router {
    let readiness = Arc::new(Readiness {
        state,
        cache_for,
        last: Mutex::default(),
    });
    Router::new()
        // Alive: the process serves requests. Nothing outside is consulted, so a database
        // outage does not get every instance restarted at once.
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(move || readiness.clone().answer()))
}

/// The last readiness answer and when it was made. However many probes arrive (every load
/// balancer node, or a flood), the parts are asked at most once per `cache_for`: a request
/// that finds the answer stale checks while holding the lock, and the requests that queue
/// behind it get its fresh answer.
struct Readiness {
    state: AppState,
    cache_for: Duration,
    last: Mutex<Option<(Instant, StatusCode, Value)>>,
}

impl Readiness {
    async fn answer(self: Arc<Self>) -> Response {
        let mut last = self.last.lock().await;
        let fresh = last
            .as_ref()
            .filter(|(at, _, _)| at.elapsed() < self.cache_for);
        let (status, body) = match fresh {
            Some((_, status, body)) => (*status, body.clone()),
            None => {
                let (status, body) = ready(&self.state).await;
                self.state.metrics.readiness_checks.inc();
                *last = Some((Instant::now(), status, body.clone()));
                (status, body)
            }
        };
        (status, Json(body)).into_response()
    }
}

async fn ready(state: &AppState) -> (StatusCode, Value) {
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
    (status, body)
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
