//! Builds the application from a `Config`: every expensive thing (pool, S3 client, keys) once,
//! then the router. Used by `main` and by the black-box tests alike.

use std::net::SocketAddr;
use std::sync::Arc;

use app::service::ports::{BoxError, ObjectStore};
use app::service::{AppState, Settings};
use app::{shell, App};
use axum::routing::get;
use axum::{Json, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::config::{Config, StorageConfig};
use crate::db::{self, SqlUserStore};
use crate::embedded::issuer::{seed_demo_users, EmbeddedDirectory, LocalIssuer, LOCAL_CLIENT_ID};
use crate::embedded::s3::EmbeddedS3;
use crate::identity::JwksVerifier;
use crate::storage::S3Storage;

/// API bodies are a few hundred bytes of JSON; the pictures never pass through this server.
const BODY_LIMIT_BYTES: usize = 16 * 1024;

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Where the app listens (the real port when the configuration asked for port 0).
    pub addr: SocketAddr,
    /// The embedded S3 endpoint, when storage is embedded.
    pub storage_endpoint: Option<String>,
    /// The embedded directory, for tests that inspect the `picture` attribute.
    pub directory: Arc<EmbeddedDirectory>,
    /// The object store the app uses, for tests that check what is really stored.
    pub storage: Arc<dyn ObjectStore>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, BoxError> {
        std::fs::create_dir_all(&config.data_dir)?;
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

        let pool = db::connect(&config.database_url).await?;

        let (storage, storage_endpoint): (Arc<dyn ObjectStore>, _) = match &config.storage {
            StorageConfig::Embedded { addr } => {
                let s3 = EmbeddedS3::start(&config.data_dir, *addr, origins).await?;
                (Arc::new(s3.storage()), Some(s3.endpoint.clone()))
            }
            StorageConfig::External {
                bucket,
                endpoint_url,
                force_path_style,
            } => {
                let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let mut builder = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(*force_path_style);
                if let Some(url) = endpoint_url {
                    builder = builder.endpoint_url(url);
                }
                let client = aws_sdk_s3::Client::from_conf(S3Storage::client_config(builder).build());
                (Arc::new(S3Storage::new(client, bucket)), None)
            }
        };

        let issuer_url = format!("{self_origin}/issuer");
        let issuer = Arc::new(LocalIssuer::load_or_create(&config.data_dir, issuer_url.clone())?);
        seed_demo_users(&pool).await?;
        let directory = Arc::new(EmbeddedDirectory::new(pool.clone(), issuer.clone()));
        let tokens = Arc::new(JwksVerifier::new(
            format!("{issuer_url}/.well-known/jwks.json"),
            issuer_url,
            LOCAL_CLIENT_ID.to_owned(),
        ));

        let state = AppState {
            users: Arc::new(SqlUserStore::new(pool.clone())),
            storage: storage.clone(),
            directory: directory.clone(),
            tokens,
            settings: Settings {
                upload_url_ttl: config.upload_url_ttl,
                read_url_ttl: config.read_url_ttl,
                secure_cookies: config.secure_cookies,
            },
        };
        let jwks = issuer.jwks().clone();
        let router = router(config.leptos, state)
            .route("/issuer/.well-known/jwks.json", get(move || async move { Json(jwks) }));

        Ok(Self {
            listener,
            router,
            addr,
            storage_endpoint,
            directory,
            storage,
        })
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "Portrait listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
    }
}

fn router(leptos_options: LeptosOptions, state: AppState) -> Router {
    let routes = generate_route_list(App);
    Router::new()
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
        .with_state(leptos_options)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(TraceLayer::new_for_http())
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
