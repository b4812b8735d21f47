//! Configuration: the one place that reads the environment. With nothing set, everything runs
//! embedded under `./data`; each production part is switched on by its own variables.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use leptos::config::LeptosOptions;

#[derive(Debug, Clone)]
pub struct Config {
    pub leptos: LeptosOptions,
    pub data_dir: PathBuf,
    /// May hold the database password.
    pub database_url: Secret<String>,
    pub storage: StorageConfig,
    pub identity: IdentityConfig,
    pub upload_url_ttl: Duration,
    pub read_url_ttl: Duration,
    /// Origins the storage's CORS rules admit, besides the app's own.
    pub extra_origins: Vec<String>,
    pub secure_cookies: bool,
    pub log_json: bool,
    /// How often queued tasks are retried and abandoned uploads swept.
    pub maintenance_interval: Duration,
    pub upload_urls_per_minute: u32,
    /// None: no cap (`unlimited`).
    pub max_pending_uploads: Option<u64>,
    /// Where `/metrics` is served; unset, metrics are not exposed at all. It is a listener of
    /// its own so that the public one never serves them.
    pub metrics_addr: Option<SocketAddr>,
    /// Proxies in front that append the client's address to `X-Forwarded-For` (0: none, the
    /// header is ignored). Only set it when the servers cannot be reached but through them.
    pub trusted_proxy_hops: usize,
    /// How long a user's `status` may be remembered (0: read on every request).
    pub user_status_ttl: Duration,
    /// Under `cargo leptos watch` (which sets `LEPTOS_WATCH`), Leptos puts a script in every page
    /// that reloads it after a rebuild, over a websocket to the watch loop's port.
    pub live_reload: bool,
    /// What every listener of this process (app, embedded S3, metrics) grants a client.
    pub server_limits: ServerLimits,
    /// How long calls to S3, Cognito and the JWKS may take.
    pub outbound: OutboundTimeouts,
    /// How long one `/readyz` answer is reused (0: every probe checks the parts).
    pub readiness_cache: Duration,
    /// Synthetic people the embedded identity set-up makes sure exist, for benchmarks of the
    /// directory (0: none).
    pub seed_people: usize,
}

/// Limits on what a client may hold of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A connection whose request headers are not complete this long after it was opened (or,
    /// kept alive, after its last response) is closed: slow or idle clients do not hold a
    /// connection slot.
    pub header_read_timeout: Duration,
    /// The most a request may take until its response starts: 408 when its body was still
    /// arriving, else 503.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// After SIGTERM, how long in-flight requests may run on before the process exits anyway.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Timeouts of the calls this server makes (S3, Cognito, the JWKS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundTimeouts {
    /// To open a connection.
    pub connect: Duration,
    /// For a whole call, retries included: a part that accepts and never answers is a 503
    /// naming it after this long.
    pub operation: Duration,
}

impl Default for OutboundTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            operation: Duration::from_secs(10),
        }
    }
}

/// A value that must not reach a log: its `Debug` says only that it is there, so printing the
/// configuration (or an error that holds it) cannot leak it. Read it with `expose`.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// The in-process S3 server on a loopback address (port 0 picks a free one).
    Embedded { addr: SocketAddr },
    /// Any S3 API: AWS itself, or a compatible store when `endpoint_url` is set.
    External {
        bucket: String,
        endpoint_url: Option<String>,
        force_path_style: bool,
    },
}

#[derive(Debug, Clone)]
pub enum IdentityConfig {
    /// The local issuer with the seeded demo accounts, whose password is published: only when
    /// nothing external is configured, or when `PORTRAIT_IDENTITY=embedded` asks for it.
    Embedded,
    Cognito(CognitoConfig),
}

impl IdentityConfig {
    /// Who signs users in. An external database or bucket is production (or a test of it), and
    /// production without an identity provider is a configuration mistake: it stops start-up,
    /// naming what is missing, instead of opening the demo accounts to whoever finds them.
    fn from_vars<'a>(
        get: &impl Fn(&str) -> Option<&'a str>,
        database_url: &str,
        storage: &StorageConfig,
    ) -> Result<Self, ConfigError> {
        let cognito = CognitoConfig::from_vars(get)?;
        match (get("PORTRAIT_IDENTITY"), cognito) {
            (None | Some("cognito"), Some(cognito)) => Ok(Self::Cognito(cognito)),
            (Some("embedded"), None) => Ok(Self::Embedded),
            (Some("embedded"), Some(_)) => Err(ConfigError {
                name: "PORTRAIT_IDENTITY",
                problem: "is embedded, but COGNITO_USER_POOL_ID is set too: choose one".into(),
            }),
            (Some("cognito"), None) => Err(ConfigError {
                name: COGNITO_VARS,
                problem: "must be set when PORTRAIT_IDENTITY is cognito".into(),
            }),
            (Some(other), _) => Err(ConfigError {
                name: "PORTRAIT_IDENTITY",
                problem: format!("{other:?} is neither embedded nor cognito"),
            }),
            (None, None) => {
                let external: Vec<&str> = [
                    (
                        database_url.starts_with("postgres"),
                        "DATABASE_URL (PostgreSQL)",
                    ),
                    (
                        matches!(storage, StorageConfig::External { .. }),
                        "S3_BUCKET",
                    ),
                ]
                .into_iter()
                .filter_map(|(set, name)| set.then_some(name))
                .collect();
                if external.is_empty() {
                    return Ok(Self::Embedded);
                }
                Err(ConfigError {
                    name: COGNITO_VARS,
                    problem: format!(
                        "must be set, since {} is: external parts need an external identity \
                         provider. The embedded issuer and its demo accounts run only when \
                         nothing external is configured, or when PORTRAIT_IDENTITY=embedded \
                         asks for them",
                        external.join(" and ")
                    ),
                })
            }
        }
    }
}

/// The variables that switch Cognito on, as an error names them.
const COGNITO_VARS: &str = "COGNITO_USER_POOL_ID, COGNITO_CLIENT_ID";

#[derive(Debug, Clone)]
pub struct CognitoConfig {
    pub user_pool_id: String,
    pub client_id: String,
    /// The pool's region, read from its id (`eu-west-1_AbC123`): a pool lives in one region,
    /// so there is nothing to keep in sync with `AWS_REGION`.
    pub region: String,
    /// A local stand-in for the Cognito API (moto), instead of AWS.
    pub endpoint_url: Option<String>,
    /// Where the signing keys are published. Stand-ins publish them locally while signing
    /// AWS's issuer URL, so the two are configured apart.
    pub jwks_url: String,
    /// The `iss` every token must carry.
    pub issuer: String,
}

impl CognitoConfig {
    fn from_vars<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Option<Self>, ConfigError> {
        let Some(user_pool_id) = get("COGNITO_USER_POOL_ID") else {
            if get("COGNITO_CLIENT_ID").is_some() {
                return Err(ConfigError {
                    name: "COGNITO_USER_POOL_ID",
                    problem: "must be set when COGNITO_CLIENT_ID is".into(),
                });
            }
            return Ok(None);
        };
        let client_id = get("COGNITO_CLIENT_ID").ok_or(ConfigError {
            name: "COGNITO_CLIENT_ID",
            problem: "must be set when COGNITO_USER_POOL_ID is".into(),
        })?;
        let region = match user_pool_id.split_once('_') {
            Some((region, rest)) if !region.is_empty() && !rest.is_empty() => region,
            _ => {
                return Err(ConfigError {
                    name: "COGNITO_USER_POOL_ID",
                    problem: format!("{user_pool_id:?} is not a pool id like eu-west-1_AbC123"),
                })
            }
        };
        let endpoint_url = get("COGNITO_ENDPOINT_URL").map(|u| u.trim_end_matches('/').to_owned());
        let issuer = get("COGNITO_ISSUER").map_or_else(
            || format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"),
            str::to_owned,
        );
        // AWS publishes the keys under the issuer; a stand-in under its own endpoint.
        let jwks_url = match (get("COGNITO_JWKS_URL"), &endpoint_url) {
            (Some(url), _) => url.to_owned(),
            (None, Some(endpoint)) => format!("{endpoint}/{user_pool_id}/.well-known/jwks.json"),
            (None, None) => format!("{issuer}/.well-known/jwks.json"),
        };
        Ok(Some(Self {
            user_pool_id: user_pool_id.to_owned(),
            client_id: client_id.to_owned(),
            region: region.to_owned(),
            endpoint_url,
            jwks_url,
            issuer,
        }))
    }
}

/// A variable that is set but wrong. Start-up stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

/// A release site names its files by their content (`cargo xtask build-release`), and pages
/// can only point at them with the names in the build's `hash.txt`, which Leptos reads from
/// beside the binary when `LEPTOS_HASH_FILES` is true. Either half without the other would
/// serve pages whose scripts are missing (or panic on the first page), so start-up stops
/// instead, saying what to ship or set.
fn check_site_names(leptos: &LeptosOptions) -> Result<(), ConfigError> {
    let error = |problem: String| ConfigError {
        name: "LEPTOS_HASH_FILES",
        problem,
    };
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&*leptos.hash_file)));
    if leptos.hash_files {
        return match beside_binary {
            Some(file) if file.is_file() => Ok(()),
            file => Err(error(format!(
                "is true, but the build's hash file ({}) is not beside the binary: ship the \
                 build's {} with it",
                file.map_or_else(|| "?".into(), |f| f.display().to_string()),
                leptos.hash_file
            ))),
        };
    }
    let pkg = std::path::Path::new(&*leptos.site_root).join(&*leptos.site_pkg_dir);
    let plain = format!("{}.js", leptos.output_name);
    let hashed_prefix = format!("{}.", leptos.output_name);
    let Ok(files) = std::fs::read_dir(&pkg) else {
        return Ok(()); // no site (API-only use, tests): nothing to point at
    };
    let names: Vec<String> = files
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let hashed_only = !names.contains(&plain)
        && names
            .iter()
            .any(|name| name.starts_with(&hashed_prefix) && name.ends_with(".js"));
    if hashed_only {
        return Err(error(format!(
            "the site in {} was built with hashed file names: set LEPTOS_HASH_FILES=true, and \
             ship the build's {} beside the binary",
            pkg.display(),
            leptos.hash_file
        )));
    }
    Ok(())
}

impl Config {
    /// Reads the process environment (and `Cargo.toml`'s Leptos metadata for the site settings).
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let leptos = leptos::config::get_configuration(None)
            .map_err(|e| ConfigError {
                name: "LEPTOS_*",
                problem: e.to_string(),
            })?
            .leptos_options;
        check_site_names(&leptos)?;
        Self::from_vars(&vars, leptos)
    }

    /// The same, from an explicit set of variables (tests build their configuration this way).
    pub fn from_vars(
        vars: &HashMap<String, String>,
        leptos: LeptosOptions,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let data_dir = PathBuf::from(get("PORTRAIT_DATA_DIR").unwrap_or("./data"));
        let database_url = match get("DATABASE_URL") {
            Some(url) if url.starts_with("sqlite:") || url.starts_with("postgres") => {
                url.to_owned()
            }
            Some(_) => {
                return Err(ConfigError {
                    name: "DATABASE_URL",
                    problem: "must start with sqlite: or postgres://".into(),
                })
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("portrait.db").display()
            ),
        };
        let storage = match get("S3_BUCKET") {
            Some(bucket) => StorageConfig::External {
                bucket: bucket.to_owned(),
                endpoint_url: get("S3_ENDPOINT_URL").map(str::to_owned),
                force_path_style: parse_bool(get("S3_FORCE_PATH_STYLE"), "S3_FORCE_PATH_STYLE")?
                    .unwrap_or(false),
            },
            None => StorageConfig::Embedded {
                addr: parse(
                    get("PORTRAIT_EMBEDDED_S3_ADDR"),
                    "PORTRAIT_EMBEDDED_S3_ADDR",
                )?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            },
        };
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            let value = parse::<u64>(get(name), name)?.unwrap_or(default);
            if !(1..=7 * 24 * 3600).contains(&value) {
                return Err(ConfigError {
                    name,
                    problem: "must be between 1 and 604800 seconds".into(),
                });
            }
            Ok(Duration::from_secs(value))
        };
        let (limits, outbound) = (ServerLimits::default(), OutboundTimeouts::default());
        let identity = IdentityConfig::from_vars(&get, &database_url, &storage)?;
        let seed_people = match parse::<usize>(get(SEED_PEOPLE), SEED_PEOPLE)? {
            Some(n) if n > 10_000_000 => {
                return Err(ConfigError {
                    name: SEED_PEOPLE,
                    problem: "must be at most 10000000".into(),
                })
            }
            // Made-up people belong only beside the demo accounts, never in a real directory.
            Some(n) if n > 0 && !matches!(identity, IdentityConfig::Embedded) => {
                return Err(ConfigError {
                    name: SEED_PEOPLE,
                    problem: "needs the embedded identity provider".into(),
                })
            }
            n => n.unwrap_or(0),
        };
        Ok(Self {
            leptos,
            data_dir,
            database_url: Secret::new(database_url),
            storage,
            identity,
            upload_url_ttl: secs("PORTRAIT_UPLOAD_URL_TTL_SECS", 300)?,
            read_url_ttl: secs("PORTRAIT_READ_URL_TTL_SECS", 900)?,
            extra_origins: get("PORTRAIT_ALLOWED_ORIGINS")
                .map(|v| v.split(',').map(|o| o.trim().to_owned()).collect())
                .unwrap_or_default(),
            secure_cookies: parse_bool(get("PORTRAIT_SECURE_COOKIES"), "PORTRAIT_SECURE_COOKIES")?
                .unwrap_or(false),
            log_json: get("PORTRAIT_LOG_FORMAT") == Some("json"),
            maintenance_interval: secs("PORTRAIT_MAINTENANCE_INTERVAL_SECS", 30)?,
            upload_urls_per_minute: positive(&get, "PORTRAIT_UPLOAD_URLS_PER_MINUTE", 30)?,
            max_pending_uploads: match get("PORTRAIT_MAX_PENDING_UPLOADS") {
                Some("unlimited") => None,
                _ => Some(positive(&get, "PORTRAIT_MAX_PENDING_UPLOADS", 10)?.into()),
            },
            metrics_addr: parse(get("PORTRAIT_METRICS_ADDR"), "PORTRAIT_METRICS_ADDR")?,
            trusted_proxy_hops: match parse::<usize>(get(TRUSTED_PROXY_HOPS), TRUSTED_PROXY_HOPS)? {
                Some(hops) if hops > 8 => {
                    return Err(ConfigError {
                        name: TRUSTED_PROXY_HOPS,
                        problem: "must be between 0 and 8".into(),
                    })
                }
                hops => hops.unwrap_or(0),
            },
            user_status_ttl: match parse::<u64>(get(USER_STATUS_SECS), USER_STATUS_SECS)? {
                Some(secs) if secs > 60 => {
                    return Err(ConfigError {
                        name: USER_STATUS_SECS,
                        problem: "must be between 0 and 60 seconds".into(),
                    })
                }
                secs => Duration::from_secs(secs.unwrap_or(30)),
            },
            // Set at all, as Leptos reads it.
            live_reload: vars.contains_key("LEPTOS_WATCH"),
            server_limits: ServerLimits {
                header_read_timeout: secs(
                    "PORTRAIT_HEADER_READ_TIMEOUT_SECS",
                    limits.header_read_timeout.as_secs(),
                )?,
                request_timeout: secs(
                    "PORTRAIT_REQUEST_TIMEOUT_SECS",
                    limits.request_timeout.as_secs(),
                )?,
                max_connections: positive(
                    &get,
                    "PORTRAIT_MAX_CONNECTIONS",
                    limits.max_connections as u32,
                )? as usize,
                shutdown_grace: secs(
                    "PORTRAIT_SHUTDOWN_GRACE_SECS",
                    limits.shutdown_grace.as_secs(),
                )?,
            },
            outbound: OutboundTimeouts {
                connect: secs("PORTRAIT_CONNECT_TIMEOUT_SECS", outbound.connect.as_secs())?,
                operation: secs(
                    "PORTRAIT_OUTBOUND_TIMEOUT_SECS",
                    outbound.operation.as_secs(),
                )?,
            },
            readiness_cache: match parse::<u64>(
                get("PORTRAIT_READINESS_CACHE_MS"),
                "PORTRAIT_READINESS_CACHE_MS",
            )? {
                Some(ms) if ms > 60_000 => {
                    return Err(ConfigError {
                        name: "PORTRAIT_READINESS_CACHE_MS",
                        problem: "must be at most 60000 milliseconds".into(),
                    })
                }
                ms => Duration::from_millis(ms.unwrap_or(1000)),
            },
            seed_people,
        })
    }
}

const TRUSTED_PROXY_HOPS: &str = "PORTRAIT_TRUSTED_PROXY_HOPS";
const USER_STATUS_SECS: &str = "PORTRAIT_USER_STATUS_CACHE_SECS";
const SEED_PEOPLE: &str = "PORTRAIT_SEED_PEOPLE";

fn parse<T: std::str::FromStr>(
    raw: Option<&str>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    raw.map(|v| {
        v.parse().map_err(|e: T::Err| ConfigError {
            name,
            problem: format!("{v:?}: {e}"),
        })
    })
    .transpose()
}

fn positive<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    name: &'static str,
    default: u32,
) -> Result<u32, ConfigError> {
    match parse::<u32>(get(name), name)? {
        Some(0) => Err(ConfigError {
            name,
            problem: "must be at least 1".into(),
        }),
        value => Ok(value.unwrap_or(default)),
    }
}

fn parse_bool(raw: Option<&str>, name: &'static str) -> Result<Option<bool>, ConfigError> {
    raw.map(|v| match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(ConfigError {
            name,
            problem: format!("{v:?} is not a boolean (use true or false)"),
        }),
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(
            &vars,
            LeptosOptions::builder().output_name("portrait").build(),
        )
    }

    #[test]
    fn nothing_set_means_everything_embedded() {
        let c = config(&[]).unwrap();
        assert!(c
            .database_url
            .expose()
            .starts_with("sqlite://./data/portrait.db"));
        assert!(matches!(c.storage, StorageConfig::Embedded { .. }));
        assert_eq!(c.upload_url_ttl, Duration::from_secs(300));
        assert_eq!(c.read_url_ttl, Duration::from_secs(900));
        assert_eq!(c.server_limits, ServerLimits::default());
        assert_eq!(c.outbound, OutboundTimeouts::default());
    }

    #[test]
    fn synthetic_people_only_beside_the_embedded_identity_provider() {
        assert_eq!(config(&[]).unwrap().seed_people, 0);
        let c = config(&[("PORTRAIT_SEED_PEOPLE", "100000")]).unwrap();
        assert_eq!(c.seed_people, 100_000);
        let e = config(&[("PORTRAIT_SEED_PEOPLE", "many")]).unwrap_err();
        assert_eq!(e.name, "PORTRAIT_SEED_PEOPLE");
        let cognito = [
            ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
            ("COGNITO_CLIENT_ID", "client"),
            ("PORTRAIT_SEED_PEOPLE", "10"),
        ];
        assert_eq!(config(&cognito).unwrap_err().name, "PORTRAIT_SEED_PEOPLE");
    }

    #[test]
    fn timeouts_and_the_connection_cap_are_configurable() {
        let c = config(&[
            ("PORTRAIT_HEADER_READ_TIMEOUT_SECS", "2"),
            ("PORTRAIT_REQUEST_TIMEOUT_SECS", "3"),
            ("PORTRAIT_MAX_CONNECTIONS", "4"),
            ("PORTRAIT_SHUTDOWN_GRACE_SECS", "5"),
            ("PORTRAIT_CONNECT_TIMEOUT_SECS", "6"),
            ("PORTRAIT_OUTBOUND_TIMEOUT_SECS", "7"),
        ])
        .unwrap();
        let s = Duration::from_secs;
        assert_eq!(
            c.server_limits,
            ServerLimits {
                header_read_timeout: s(2),
                request_timeout: s(3),
                max_connections: 4,
                shutdown_grace: s(5),
            }
        );
        assert_eq!(
            c.outbound,
            OutboundTimeouts {
                connect: s(6),
                operation: s(7),
            }
        );
        let e = config(&[("PORTRAIT_MAX_CONNECTIONS", "0")]).unwrap_err();
        assert_eq!(e.name, "PORTRAIT_MAX_CONNECTIONS");
        let e = config(&[("PORTRAIT_REQUEST_TIMEOUT_SECS", "0")]).unwrap_err();
        assert_eq!(e.name, "PORTRAIT_REQUEST_TIMEOUT_SECS");
    }

    #[test]
    fn a_wrong_value_names_its_variable() {
        let e = config(&[("PORTRAIT_UPLOAD_URL_TTL_SECS", "soon")]).unwrap_err();
        assert_eq!(e.name, "PORTRAIT_UPLOAD_URL_TTL_SECS");
        let e = config(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(e.name, "DATABASE_URL");
        let e = config(&[(TRUSTED_PROXY_HOPS, "-1")]).unwrap_err();
        assert_eq!(e.name, TRUSTED_PROXY_HOPS);
        let e = config(&[(USER_STATUS_SECS, "3600")]).unwrap_err();
        assert_eq!(
            e.name, USER_STATUS_SECS,
            "a disabled user must be out within a minute"
        );
        let e = config(&[("S3_BUCKET", "b"), ("S3_FORCE_PATH_STYLE", "maybe")]).unwrap_err();
        assert_eq!(e.name, "S3_FORCE_PATH_STYLE");
        let e = config(&[("COGNITO_USER_POOL_ID", "eu-west-1_AbC123")]).unwrap_err();
        assert_eq!(e.name, "COGNITO_CLIENT_ID");
        let e = config(&[
            ("COGNITO_USER_POOL_ID", "AbC123"),
            ("COGNITO_CLIENT_ID", "c"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "COGNITO_USER_POOL_ID");
    }

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let c = config(&[
            (
                "DATABASE_URL",
                "postgres://portrait:hunter2@db.internal/portrait",
            ),
            ("PORTRAIT_IDENTITY", "embedded"),
        ])
        .unwrap();
        let printed = format!("{c:?} {c:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("database_url: Secret([REDACTED])"),
            "{printed}"
        );
        assert_eq!(
            c.database_url.expose(),
            "postgres://portrait:hunter2@db.internal/portrait"
        );
    }

    #[test]
    fn external_parts_without_an_identity_provider_stop_start_up() {
        let postgres = ("DATABASE_URL", "postgres://portrait@127.0.0.1/portrait");
        for vars in [&[("S3_BUCKET", "pictures")][..], &[postgres]] {
            let e = config(vars).unwrap_err();
            assert_eq!(
                e.name, "COGNITO_USER_POOL_ID, COGNITO_CLIENT_ID",
                "{vars:?}"
            );
            assert!(e.to_string().contains("PORTRAIT_IDENTITY=embedded"), "{e}");
        }
        let e = config(&[("S3_BUCKET", "pictures"), postgres]).unwrap_err();
        assert!(
            e.problem
                .contains("DATABASE_URL (PostgreSQL) and S3_BUCKET"),
            "{e}"
        );
        // A client id alone is half a Cognito configuration, not none.
        let e = config(&[("COGNITO_CLIENT_ID", "abc")]).unwrap_err();
        assert_eq!(e.name, "COGNITO_USER_POOL_ID");
    }

    #[test]
    fn the_embedded_issuer_runs_alone_or_when_asked_for_by_name() {
        assert!(matches!(
            config(&[]).unwrap().identity,
            IdentityConfig::Embedded
        ));
        let sqlite = ("DATABASE_URL", "sqlite:///var/lib/portrait/p.db");
        assert!(matches!(
            config(&[sqlite]).unwrap().identity,
            IdentityConfig::Embedded
        ));
        let asked = ("PORTRAIT_IDENTITY", "embedded");
        let mixed = [("DATABASE_URL", "postgres://p@127.0.0.1/p"), asked];
        assert!(matches!(
            config(&mixed).unwrap().identity,
            IdentityConfig::Embedded
        ));

        let pool = ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123");
        let client = ("COGNITO_CLIENT_ID", "abc");
        let e = config(&[asked, pool, client]).unwrap_err();
        assert_eq!(e.name, "PORTRAIT_IDENTITY");
        let e = config(&[("PORTRAIT_IDENTITY", "demo")]).unwrap_err();
        assert_eq!(e.name, "PORTRAIT_IDENTITY");
        let e = config(&[("PORTRAIT_IDENTITY", "cognito")]).unwrap_err();
        assert_eq!(e.name, "COGNITO_USER_POOL_ID, COGNITO_CLIENT_ID");
        let cognito = [("PORTRAIT_IDENTITY", "cognito"), pool, client];
        assert!(matches!(
            config(&cognito).unwrap().identity,
            IdentityConfig::Cognito(_)
        ));
    }

    #[test]
    fn cognito_issuer_and_keys_derive_from_the_pool() {
        let pool = ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123");
        let client = ("COGNITO_CLIENT_ID", "abc");
        let IdentityConfig::Cognito(aws) = config(&[pool, client]).unwrap().identity else {
            panic!("Cognito expected");
        };
        let issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123";
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(aws.issuer, issuer);
        assert_eq!(aws.jwks_url, format!("{issuer}/.well-known/jwks.json"));

        let endpoint = ("COGNITO_ENDPOINT_URL", "http://127.0.0.1:5000/");
        let IdentityConfig::Cognito(local) = config(&[pool, client, endpoint]).unwrap().identity
        else {
            panic!("Cognito expected");
        };
        assert_eq!(local.issuer, issuer, "stand-ins sign AWS's issuer");
        assert_eq!(
            local.jwks_url,
            "http://127.0.0.1:5000/eu-west-1_AbC123/.well-known/jwks.json"
        );
    }
}
