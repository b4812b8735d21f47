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
    axum::serve(listener, router)
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
/// - Behind that, a state-changing request from another site's page is refused outright (403),
///   whatever its body (see `cross_site`).
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
    if !request.method().is_safe() && cross_site(&request) {
        return json_error(
            StatusCode::FORBIDDEN,
            "Requests from other sites are not accepted.",
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

/// Whether a browser sent this request from a page of another origin, in the manner of Go's
/// `http.CrossOriginProtection`:
/// - `Sec-Fetch-Site`, which every current browser sends and no page can set: only
///   `same-origin`, and `none` (the user's own doing), pass; `same-site` (a sibling subdomain)
///   and `cross-site` do not.
/// - Without it, `Origin`, which browsers send on every cross-origin request that is not a GET
///   or HEAD: its host and port must be the `Host` the request was sent to. `X-Forwarded-Host`
///   is not trusted. (A proxy that rewrites `Host` needs browsers that send `Sec-Fetch-Site`.)
/// - With neither, the client is not a browser (curl, API clients): it holds no ambient
///   credential to abuse, since its token is a header it sets itself. It passes.
fn cross_site(request: &Request<Body>) -> bool {
    let header = move |name| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("invalid"))
    };
    if let Some(site) = header(HeaderName::from_static("sec-fetch-site")) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header(http::header::ORIGIN) else {
        return false;
    };
    let host = header(http::header::HOST)
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    // "null" (sandboxed frames, some redirects) has no host and never matches.
    let origin_host = origin.split_once("://").map_or("", |(_, host)| host);
    origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host)
}

fn is_json(request: &Request<Body>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The browser features pages may use: the camera, for the editor's camera input, and nothing
/// else that a page could be tricked into asking for.
const PERMISSIONS_POLICY: &str = "camera=(self), microphone=(), geolocation=(), payment=(), \
    usb=(), serial=(), hid=(), midi=(), display-capture=(), accelerometer=(), gyroscope=(), \
    magnetometer=(), idle-detection=(), screen-wake-lock=(), xr-spatial-tracking=(), \
    publickey-credentials-get=(), encrypted-media=(), autoplay=(), fullscreen=(), \
    picture-in-picture=()";

/// A year of HTTPS only, for this host alone: `includeSubDomains` and `preload` would bind
/// hosts this app does not own, which is the operator's decision to make at the proxy.
const HSTS: &str = "max-age=31536000";

/// Headers every response carries (pages add their own Content-Security-Policy and
/// Cache-Control). `https`: the app is served over HTTPS (secure cookies are on), so browsers
/// are told to use nothing else for a year.
pub fn security_headers<S: Clone>(router: axum::Router<S>, https: bool) -> axum::Router<S>
where
    S: Send + Sync + 'static,
{
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    let router = router
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "strict-origin-when-cross-origin"))
        .layer(header("cross-origin-opener-policy", "same-origin"))
        .layer(header("permissions-policy", PERMISSIONS_POLICY));
    if https {
        router.layer(header("strict-transport-security", HSTS))
    } else {
        router
    }
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
        .layer(axum::middleware::from_fn(screen_request_id))
}

/// Longest client-chosen request id kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Keeps a client's `X-Request-Id` only when it is one short, plain value (letters, digits,
/// `.`, `_`, `-`), so that a client can tie its logs to ours; anything else is dropped and a
/// UUID takes its place. The id is in every log line of the request: a long or odd one could
/// bloat the logs or pass for something it is not.
async fn screen_request_id(mut request: Request, next: Next) -> Response {
    let ids = request.headers().get_all(&REQUEST_ID);
    let mut values = ids.iter();
    let plain = match (values.next(), values.next()) {
        (Some(id), None) => is_plain_request_id(id.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !plain {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The method as a metrics label: the standard ones by name, any other `OTHER`, so that made-up
/// methods cannot mint a series each. (The endpoint label is the route pattern and the status
/// one of the few this server answers with, so those are bounded by the code.)
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

/// Records each routed request's latency under its route pattern.
pub async fn record_latency(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        for id in ["abc-123", "trace_1.2", &"a".repeat(64)] {
            assert!(is_plain_request_id(id.as_bytes()), "{id}");
        }
        for id in ["", &"a".repeat(65), "a b", "a\"b", "id,other", "ünï"] {
            assert!(!is_plain_request_id(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
