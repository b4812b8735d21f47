//! Builds the application from a `Config`: every expensive thing (pool, S3 client, keys) once,
//! then the router. Used by `main` and by the black-box tests alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::api::DemoAccount;
use app::domain::{ImageContentType, KeyKind, PhotoKey, UserId};

use app::service::ports::{BoxError, Directory, ObjectStore, TokenVerifier};
use app::service::{AppState, Metrics, Settings, SignInThrottle, UploadLimits, UserStatusCache};
use app::{shell, App};
use axum::routing::get;
use axum::{Json, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

use crate::cognito::CognitoDirectory;
use crate::config::{
    CognitoConfig, Config, IdentityConfig, OutboundTimeouts, ServerLimits, StorageConfig,
};
use crate::db::{self, Database, SqlUserStore};
use crate::embedded::issuer::{
    seed_demo_users, EmbeddedDirectory, LocalIssuer, DEMO_PASSWORD, DEMO_USERS, LOCAL_CLIENT_ID,
};
use crate::embedded::s3::EmbeddedS3;
use crate::http::{
    api_guard, record_latency, request_deadline, request_tracing, security_headers,
    BODY_LIMIT_BYTES,
};
use crate::identity::JwksVerifier;
use crate::rate::SharedAllowance;
use crate::storage::S3Storage;

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Where the app listens (the real port when the configuration asked for port 0).
    pub addr: SocketAddr,
    /// The embedded S3 server, when storage is embedded.
    pub embedded_s3: Option<Arc<EmbeddedS3>>,
    /// The directory, for tests that inspect the `picture` attribute.
    pub directory: Arc<dyn Directory>,
    /// The object store the app uses, for tests that check what is really stored.
    pub storage: Arc<dyn ObjectStore>,
    /// The state the requests use (tests run maintenance passes through it).
    pub state: AppState,
    /// Where `/metrics` is served, when configured.
    pub metrics_addr: Option<SocketAddr>,
    metrics_listener: Option<TcpListener>,
    maintenance_interval: Duration,
    server_limits: ServerLimits,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, BoxError> {
        create_private_dir(&config.data_dir)?;
        let listener = TcpListener::bind(config.leptos.site_addr).await?;
        let addr = listener.local_addr()?;
        // How this process reaches itself, and the origins a browser may load the app from.
        let port = addr.port();
        let self_origin = if addr.ip().is_unspecified() {
            format!("http://127.0.0.1:{port}")
        } else {
            format!("http://{addr}")
        };
        let mut origins = vec![
            self_origin.clone(),
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
        ];
        origins.extend(config.extra_origins.iter().cloned());

        let db = db::connect(config.database_url.expose()).await?;

        // The AWS configuration (credential chain, region) is loaded once, and only when a
        // production part needs it. Every client built from it (S3, Cognito) inherits its
        // timeouts.
        let timeouts = sdk_timeouts(config.outbound);
        let aws = match (&config.storage, &config.identity) {
            (StorageConfig::Embedded { .. }, IdentityConfig::Embedded) => None,
            _ => Some(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .timeout_config(timeouts.clone())
                    .load()
                    .await,
            ),
        };

        let (storage, embedded_s3): (Arc<dyn ObjectStore>, _) = match &config.storage {
            StorageConfig::Embedded { addr } => {
                let s3 = EmbeddedS3::start(&config.data_dir, *addr, origins, config.server_limits);
                let s3 = Arc::new(s3.await?);
                (Arc::new(s3.storage(timeouts).await?), Some(s3))
            }
            StorageConfig::External {
                bucket,
                endpoint_url,
                force_path_style,
            } => {
                let aws = aws.as_ref().expect("loaded for external storage");
                let storage =
                    S3Storage::connect(aws, bucket, endpoint_url.as_deref(), *force_path_style)
                        .await?;
                (Arc::new(storage), None)
            }
        };

        let identity = match &config.identity {
            IdentityConfig::Embedded => {
                let dir = &config.data_dir;
                let identity = Identity::embedded(dir, &db, &self_origin, config.outbound).await?;
                crate::embedded::people::seed_people(&db.write, config.seed_people).await?;
                identity
            }
            IdentityConfig::Cognito(cognito) => {
                let aws = aws.as_ref().expect("loaded for Cognito");
                Identity::cognito(cognito, aws, config.outbound)
            }
        };

        let storage_origin = storage_origin(storage.as_ref()).await?;
        let (limits, allowance) = upload_limits(&config);
        let state = AppState {
            users: Arc::new(SqlUserStore::new(db, allowance)),
            storage: storage.clone(),
            directory: identity.directory.clone(),
            tokens: identity.tokens,
            metrics: Arc::new(Metrics::default()),
            sign_in_throttle: Arc::new(SignInThrottle::default()),
            user_status: Arc::new(UserStatusCache::new(config.user_status_ttl)),
            limits: Arc::new(limits),
            settings: Arc::new(Settings {
                upload_url_ttl: config.upload_url_ttl,
                read_url_ttl: config.read_url_ttl,
                secure_cookies: config.secure_cookies,
                storage_origin: Some(storage_origin),
                trusted_proxy_hops: config.trusted_proxy_hops,
                live_reload_port: config.live_reload.then(|| {
                    let leptos = &config.leptos;
                    leptos.reload_external_port.unwrap_or(leptos.reload_port)
                }),
                demo_accounts: identity.demo_accounts,
            }),
        };
        let health = crate::health::routes(state.clone(), config.readiness_cache);
        let router = router(
            config.leptos,
            state.clone(),
            health.merge(identity.routes),
            config.server_limits.request_timeout,
        );

        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            metrics_addr: metrics_listener
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
            metrics_listener,
            listener,
            router,
            addr,
            embedded_s3,
            directory: identity.directory,
            storage,
            state,
            maintenance_interval: config.maintenance_interval,
            server_limits: config.server_limits,
        })
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish, for at most the
    /// shutdown grace period. Maintenance runs beside it; stopping it mid-pass is safe, since
    /// every queued task is durable and idempotent.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "Portrait listening");
        if let Some(listener) = self.metrics_listener {
            tokio::spawn(serve_metrics(
                listener,
                self.state.clone(),
                self.server_limits,
            ));
        }
        let maintenance = tokio::spawn(maintain(self.state, self.maintenance_interval));
        let served = crate::http::serve(
            self.listener,
            self.router,
            self.server_limits,
            shutdown_signal(),
        )
        .await;
        maintenance.abort();
        served
    }
}

/// The per-user limits on upload URLs. On PostgreSQL the allowance lives in the database,
/// which every server shares, and the ledger takes from it as it records each upload; SQLite is
/// the single-server default, where memory suffices.
fn upload_limits(config: &Config) -> (UploadLimits, Option<SharedAllowance>) {
    let max_pending = config.max_pending_uploads;
    if config.database_url.expose().starts_with("postgres") {
        let allowance = SharedAllowance::new(config.upload_urls_per_minute);
        (UploadLimits::kept_by_ledger(max_pending), Some(allowance))
    } else {
        let limits = UploadLimits::in_memory(config.upload_urls_per_minute, max_pending);
        (limits, None)
    }
}

/// The SDK's timeouts for S3 and Cognito. The operation timeout spans the SDK's retries, so a
/// part that accepts connections and never answers fails the call (a 503 naming the part)
/// after that long, however many attempts fit in it.
fn sdk_timeouts(outbound: OutboundTimeouts) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(outbound.connect)
        .operation_timeout(outbound.operation)
        .build()
}

/// Creates the data directory (and any missing parent) readable by this user alone: it holds the
/// embedded database, objects and the issuer's signing key. One that exists is left as it is,
/// with a warning if others may read it.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let existed = dir.is_dir();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if existed && mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = %format!("{mode:o}"),
                "the data directory is open to other users; chmod 700 it");
        }
    }
    Ok(())
}

/// Who signs users in and how their tokens are checked.
struct Identity {
    directory: Arc<dyn Directory>,
    tokens: Arc<dyn TokenVerifier>,
    /// Routes the identity provider needs on the app's own listener.
    routes: Router,
    /// The accounts anyone may use, which the sign-in page shows (the embedded issuer's).
    demo_accounts: Vec<DemoAccount>,
}

impl Identity {
    /// The local issuer, publishing its JWKS at `/issuer/...`, with the demo accounts.
    async fn embedded(
        data_dir: &std::path::Path,
        db: &Database,
        self_origin: &str,
        outbound: OutboundTimeouts,
    ) -> Result<Self, BoxError> {
        let issuer_url = format!("{self_origin}/issuer");
        let issuer = Arc::new(LocalIssuer::load_or_create(data_dir, issuer_url.clone())?);
        seed_demo_users(&db.write).await?;
        let jwks = issuer.jwks().clone();
        Ok(Self {
            directory: Arc::new(EmbeddedDirectory::new(db.clone(), issuer)),
            // Verified over HTTP from the published JWKS, exactly as Cognito's tokens are.
            tokens: Arc::new(JwksVerifier::new(
                format!("{issuer_url}/.well-known/jwks.json"),
                issuer_url,
                LOCAL_CLIENT_ID.to_owned(),
                outbound,
            )),
            routes: Router::new().route(
                "/issuer/.well-known/jwks.json",
                get(move || async move { Json(jwks) }),
            ),
            demo_accounts: DEMO_USERS
                .iter()
                .map(|demo| DemoAccount {
                    email: demo.email.to_owned(),
                    role: demo.role.to_owned(),
                    password: DEMO_PASSWORD.to_owned(),
                })
                .collect(),
        })
    }

    fn cognito(
        config: &CognitoConfig,
        aws: &aws_config::SdkConfig,
        outbound: OutboundTimeouts,
    ) -> Self {
        let mut builder = aws_sdk_cognitoidentityprovider::config::Builder::from(aws)
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        let client = aws_sdk_cognitoidentityprovider::Client::from_conf(builder.build());
        Self {
            directory: Arc::new(CognitoDirectory::new(
                client,
                config.user_pool_id.clone(),
                config.client_id.clone(),
            )),
            tokens: Arc::new(JwksVerifier::new(
                config.jwks_url.clone(),
                config.issuer.clone(),
                config.client_id.clone(),
                outbound,
            )),
            routes: Router::new(),
            demo_accounts: Vec::new(),
        }
    }
}

/// The origin of presigned URLs, learnt by presigning one: exact for every store and addressing
/// style, with no configuration to keep in sync. Pages admit it in their CSP.
async fn storage_origin(storage: &dyn ObjectStore) -> Result<String, BoxError> {
    let probe = PhotoKey::generate(
        &UserId::parse("probe")?,
        KeyKind::Picture,
        ImageContentType::Jpeg,
        0,
        0,
    );
    let url = storage
        .presign_get(&probe, Duration::from_secs(60))
        .await?
        .url;
    let after_scheme = url
        .find("://")
        .map(|i| i + 3)
        .ok_or("presigned URL without scheme")?;
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    Ok(url[..end].to_owned())
}

/// The whole HTTP surface: pages and server functions, and `extra` (health, the embedded
/// issuer's JWKS), all behind the same guards and logging.
fn router(
    leptos_options: LeptosOptions,
    state: AppState,
    extra: Router,
    request_timeout: Duration,
) -> Router {
    let routes = generate_route_list(App);
    let metrics = state.metrics.clone();
    let https = state.settings.secure_cookies;
    let site = leptos_options.clone();
    let router = Router::new()
        .leptos_routes_with_context(
            &leptos_options,
            routes,
            move || provide_context(state.clone()),
            {
                let options = leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(leptos_options);
    let router =
        crate::http::static_files(router, &site.site_root, &site.site_pkg_dir, site.hash_files)
            .merge(extra)
            .route_layer(axum::middleware::from_fn_with_state(
                metrics,
                record_latency,
            ))
            .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES as usize))
            .layer(axum::middleware::from_fn(api_guard))
            .layer(axum::middleware::from_fn_with_state(
                request_timeout,
                request_deadline,
            ));
    request_tracing(security_headers(router, https))
}

async fn serve_metrics(listener: TcpListener, state: AppState, limits: ServerLimits) {
    let metrics = Router::new().route(
        "/metrics",
        get(move || {
            let state = state.clone();
            async move {
                // The queue depth is read at scrape time, so it is never stale.
                if let Ok(depth) = state.users.queue_depth().await {
                    state
                        .metrics
                        .queue_depth
                        .set(depth.try_into().unwrap_or(i64::MAX));
                }
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.metrics.encode(),
                )
            }
        }),
    );
    if let Err(e) = crate::http::serve(listener, metrics, limits, std::future::pending()).await {
        tracing::error!(error = %e, "metrics listener stopped");
    }
}

async fn maintain(state: AppState, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = state
            .maintenance_pass(time::OffsetDateTime::now_utc())
            .await
        {
            tracing::warn!(error = %e, "maintenance pass failed; retrying at the next tick");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
