//! An S3-compatible server on a loopback port, storing objects under the data directory.
//!
//! `s3s` checks SigV4 for real (signature, expiry, signed content type and length), so a
//! presigned URL is enforced here exactly as on AWS. It has no CORS support, so tower-http's
//! `CorsLayer` answers the browser's preflights for the app's origin. Bodies over the picture
//! size limit are refused (413). It is served at the root of its own listener: behind a path
//! prefix the signed path would no longer match.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use app::domain::MAX_PICTURE_BYTES;
use app::service::ports::BoxError;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderValue, Method, StatusCode};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use super::random_hex;
use crate::config::ServerLimits;
use crate::storage::S3Storage;

pub const BUCKET: &str = "portrait";
const REGION: &str = "us-east-1";

/// A running embedded store and what a client needs to reach it.
pub struct EmbeddedS3 {
    pub endpoint: String,
    access_key: String,
    secret_key: String,
    addr: SocketAddr,
    router: Router,
    limits: ServerLimits,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl EmbeddedS3 {
    /// Binds `addr` and serves until the process ends. Credentials are fresh on every start:
    /// they never leave the process, and URLs signed before a restart simply stop working.
    pub async fn start(
        data_dir: &Path,
        addr: SocketAddr,
        allowed_origins: Vec<String>,
        limits: ServerLimits,
    ) -> Result<Self, BoxError> {
        let root = data_dir.join("objects");
        std::fs::create_dir_all(root.join(BUCKET))?;
        let access_key = format!("PORTRAIT{}", random_hex(8).to_uppercase());
        let secret_key = random_hex(32);

        let store = s3s_fs::FileSystem::new(&root).map_err(|e| format!("object store: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(store);
        builder.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let s3 = builder.build();

        let handler = move |req: Request| {
            let mut s3 = s3.clone();
            async move {
                let response = match tower::Service::call(&mut s3, req).await {
                    Ok(response) => response.map(Body::new),
                    Err(e) => {
                        tracing::error!(error = ?e, "embedded S3 failed");
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                };
                Ok::<Response, Infallible>(response)
            }
        };
        // A presigned PUT without a signed length (the SRS's request) would take a body of any
        // size; the confirm refuses one over the limit, but here the upload itself is bounded
        // too, so nobody can fill the disk through a URL. S3 and Garage have no such bound on
        // a presigned PUT, so there the confirm's check is the only one.
        let body_limit = usize::try_from(MAX_PICTURE_BYTES).unwrap_or(usize::MAX);
        let router = Router::new()
            .fallback_service(tower::service_fn(handler))
            .layer(axum::middleware::from_fn(response_overrides))
            .layer(RequestBodyLimitLayer::new(body_limit))
            .layer(axum::middleware::from_fn_with_state(
                limits.request_timeout,
                crate::http::request_deadline,
            ))
            .layer(cors(&allowed_origins));

        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let endpoint = format!("http://{addr}");
        let store = Self {
            endpoint,
            access_key,
            secret_key,
            addr,
            router,
            limits,
            running: Mutex::new(None),
        };
        store.serve(listener).await;
        tracing::info!(endpoint = %store.endpoint, "embedded S3 listening");
        Ok(store)
    }

    async fn serve(&self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router.clone();
        let limits = self.limits;
        let task = tokio::spawn(async move {
            let serve = crate::http::serve(listener, router, limits, async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "embedded S3 stopped");
            }
        });
        *self.running.lock().await = Some(Running { stop, task });
    }

    /// Stops serving, as an outage would: new connections are refused until `restart`. Used by
    /// the fault tests, and harmless to call twice.
    pub async fn stop(&self) {
        if let Some(running) = self.running.lock().await.take() {
            let _ = running.stop.send(());
            let _ = running.task.await;
            tracing::warn!(endpoint = %self.endpoint, "embedded S3 stopped");
        }
    }

    /// Serves again on the same address after `stop`.
    pub async fn restart(&self) -> std::io::Result<()> {
        if self.running.lock().await.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener).await;
        Ok(())
    }

    /// A client of this store, whose calls give up after `timeouts`.
    pub async fn storage(&self, timeouts: TimeoutConfig) -> Result<S3Storage, BoxError> {
        let credentials = Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "portrait-embedded",
        );
        let shared = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .timeout_config(timeouts)
            .build();
        S3Storage::connect(&shared, BUCKET, Some(&self.endpoint), true).await
    }
}

/// What a bucket's CORS configuration would say on AWS: the app's origins may PUT and GET,
/// with the headers a presigned PUT carries, and may read the ETag.
/// S3 answers a GET with the headers its query's `response-*` parameters name (presigned, the
/// signature covers them; the app signs the type, the disposition and how long the browser may
/// keep a picture). s3s parses them but s3s-fs does not apply them, so this does, to answers
/// that succeeded, which s3s gives only to a request whose signature it checked.
async fn response_overrides(request: Request, next: axum::middleware::Next) -> Response {
    const OVERRIDES: [(&str, header::HeaderName); 4] = [
        ("response-cache-control", header::CACHE_CONTROL),
        ("response-content-type", header::CONTENT_TYPE),
        ("response-content-disposition", header::CONTENT_DISPOSITION),
        ("response-content-language", header::CONTENT_LANGUAGE),
    ];
    let mut headers = Vec::new();
    if request.method() == Method::GET {
        for (name, value) in request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
        {
            let Some((_, header)) = OVERRIDES.iter().find(|(param, _)| *param == name) else {
                continue;
            };
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.push((header.clone(), value));
            }
        }
    }
    let mut response = next.run(request).await;
    if response.status().is_success() {
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::PUT, Method::HEAD])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::ETAG])
        .max_age(Duration::from_secs(600))
}
