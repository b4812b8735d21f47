//! Cross-cutting HTTP behaviour: what every response carries, and the checks every API request
//! passes before a handler sees it.

use std::sync::Arc;
use std::time::Instant;

use app::service::{Metrics, RequestLabels};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};

/// Serves `router` with TCP_NODELAY on every connection. Without it, a small response written
/// in two pieces waits for the peer's delayed ACK: ~40 ms per S3 round trip on loopback.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    // The peer address reaches handlers as `ConnectInfo<SocketAddr>` (the sign-in throttle
    // keys on it).
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

/// API bodies are a few hundred bytes of JSON; the pictures never pass through this server.
pub const BODY_LIMIT_BYTES: u64 = 16 * 1024;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `{"message": ...}` with a status: the shape of every API error.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// Runs before every `/api/` handler.
///
/// - Only JSON is accepted on POST. Besides being the contract, this is what makes the session
///   cookie useless to other sites: a cross-site form can only send form or text bodies, and
///   anything else needs a CORS preflight, which this server never grants.
/// - Oversized bodies are refused from their declared length with a JSON 413 (a body without a
///   length is cut off by the limit layer instead).
/// - API responses are never cached: they carry presigned URLs and personal data.
pub async fn api_guard(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT_BYTES) {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is too large.",
        );
    }
    if request.method() == Method::POST && !is_json(&request) {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send JSON, with Content-Type: application/json.",
        );
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn is_json(request: &Request<Body>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Headers every response carries (pages add their own Content-Security-Policy).
pub fn security_headers<S: Clone>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Send + Sync + 'static,
{
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    router
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "strict-origin-when-cross-origin"))
        .layer(header("cross-origin-opener-policy", "same-origin"))
}

/// One log line per request, tagged with a request id that is also returned to the client.
/// Only the path is logged, never the query string or headers, so no token or signature can
/// end up in the logs.
pub fn request_tracing<S: Clone>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Send + Sync + 'static,
{
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id,
            )
        })
        // The start of a request only at debug level: at info, one line per request.
        .on_request(DefaultOnRequest::new().level(tracing::Level::DEBUG))
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Records each routed request's latency under its route pattern.
pub async fn record_latency(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let labels = RequestLabels {
        method,
        endpoint,
        status: response.status().as_u16(),
    };
    metrics
        .requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
