//! Cross-cutting HTTP behaviour: what every response carries, and the checks every API request
//! passes before a handler sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::service::{Metrics, RequestLabels};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body::Body as HttpBody;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};

use crate::config::ServerLimits;

/// Serves `router` until `shutdown`, within `limits`:
///
/// - at most `max_connections` at once: the next connection is accepted only when one closes,
///   so the ones beyond wait in the kernel's listen backlog (and a full backlog refuses them);
/// - a connection is closed when its request headers are not complete within
///   `header_read_timeout` of it opening or of its previous response (slow clients, and idle
///   keep-alive connections, which would otherwise hold their slot for ever);
/// - after `shutdown`, no new connection is taken and open ones finish their request, for at
///   most `shutdown_grace`: then this returns and whatever is still running is dropped.
///
/// HTTP/1.1 only: TLS ends in front of this server (a load balancer or proxy, which talks
/// HTTP/1.1 to its targets), and browsers speak HTTP/2 only over TLS. An HTTP/2-or-1 server
/// would first wait for the client's first bytes to tell which, with no timeout at all.
///
/// Every connection has TCP_NODELAY. Without it, a small response written in two pieces waits
/// for the peer's delayed ACK: ~40 ms per S3 round trip on loopback. Requests carry the peer's
/// address as axum's `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Dropped when shutdown begins, which tells every connection to finish.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    // Held by every connection: closed once the last one is done.
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });

    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = stop_tx.closed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop_tx.closed() => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service =
            router
                .clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let stop_tx = stop_tx.clone();
        let done_rx = done_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = stop_tx.closed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop((slot, done_rx));
        });
    }
    drop((listener, done_rx));
    let open = done_tx.receiver_count();
    if open > 0 {
        tracing::info!(connections = open, "waiting for open connections to finish");
    }
    if tokio::time::timeout(limits.shutdown_grace, done_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = done_tx.receiver_count(),
            grace = ?limits.shutdown_grace,
            "requests still running at the end of the shutdown grace period are dropped"
        );
    }
    Ok(())
}

/// Bounds each request's time until its response starts (`ServerLimits::request_timeout`).
/// A client still sending its body then gets 408; a request that was complete, and waited on
/// this server or a part behind it, gets 503. Parts have their own shorter timeouts, which
/// answer first with a 503 that names the part; this is the backstop.
pub async fn request_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let received = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = Body::new(TrackedBody {
        inner: body,
        received: received.clone(),
    });
    match tokio::time::timeout(limit, next.run(Request::from_parts(parts, body))).await {
        Ok(response) => response,
        Err(_) if !received.load(Ordering::Acquire) => json_error(
            StatusCode::REQUEST_TIMEOUT,
            "The request did not arrive in time.",
        ),
        Err(_) => {
            tracing::warn!(?limit, "request timed out");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server could not answer in time; nothing was changed. Please try again.",
            )
        }
    }
}

/// A request body that records when it has been received to the end.
struct TrackedBody {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.received.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
pub fn security_headers<S>(router: axum::Router<S>, https: bool) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
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
pub fn request_tracing<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
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

/// Serves the site's build files (WebAssembly, JavaScript, CSS) under `/{pkg}/`, from that
/// folder of `site_root`.
///
/// - Caching: when the build names each file by its content (`hashed`: cargo-leptos'
///   `hash-files`, which `cargo xtask build-release` turns on), browsers keep them for a year and
///   never ask again, since a new build means new names. A development build keeps its names
///   from build to build, so there browsers ask every time (`no-cache`), and get a 304 while
///   the file is unchanged (which leptos_axum's file handler, passing on no condition, would
///   not give).
/// - Compression: a release build brings brotli and gzip files beside each one
///   (`--precompress`), which are sent as they are. A development build
///   has none, so those answers are compressed here, at a quick brotli level (a release is
///   compressed once, at the highest).
pub fn static_files<S>(
    router: axum::Router<S>,
    site_root: &str,
    pkg: &str,
    hashed: bool,
) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use tower_http::compression::predicate::{Predicate, SizeAbove};
    use tower_http::compression::{CompressionLayer, CompressionLevel};
    use tower_http::services::ServeDir;

    let pkg = pkg.trim_matches('/');
    let policy = HeaderValue::from_static(if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    });
    let build_file = |_: StatusCode, _: http::Version, headers: &http::HeaderMap, _: &_| {
        headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|kind| {
                ["application/wasm", "text/javascript", "text/css"]
                    .iter()
                    .any(|compressible| kind.starts_with(compressible))
            })
    };
    // Only these answers pass through the two layers: the API and the pages do not.
    let files = tower::ServiceBuilder::new()
        .map_response(move |mut response: http::Response<_>| {
            let status = response.status();
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                response.headers_mut().insert(CACHE_CONTROL, policy.clone());
            }
            response
        })
        .layer(
            CompressionLayer::new()
                .quality(CompressionLevel::Precise(4))
                .compress_when(SizeAbove::new(1024).and(build_file)),
        )
        .service(
            ServeDir::new(std::path::Path::new(site_root).join(pkg))
                .precompressed_br()
                .precompressed_gzip(),
        );
    router.nest_service(&format!("/{pkg}"), files)
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
