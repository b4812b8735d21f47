//! Token verification against a JWKS, as AWS documents it for Cognito: RS256 only, the key
//! named by `kid`, then `iss`, `exp`, `nbf`, `iat`, `token_use` and `client_id`. The embedded
//! issuer is verified by this same code, over HTTP, from its published JWKS.
//!
//! The keys are a snapshot swapped in whole after each fetch: a verification reads it without
//! waiting for anything, and a fetch (at most one at a time) never holds a lock a verification
//! needs. They are fetched on a schedule, so that a key withdrawn from the JWKS stops being
//! trusted within `refresh_every`, and early for a token naming a key we do not know (a
//! rotation), rate-limited so that forged `kid`s cannot make us hammer the provider. A failed
//! fetch is retried after a second, doubling, instead of waiting for the next schedule.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use app::domain::UserId;
use app::service::ports::{Part, PortError, PortResult, TokenError, TokenRejected, TokenVerifier};
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{watch, Mutex};

use crate::config::OutboundTimeouts;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;
/// Verified tokens remembered at most; past this the memory is simply cleared.
const VERIFIED_CAPACITY: usize = 10_000;

/// When the keys are fetched.
#[derive(Debug, Clone, Copy)]
pub struct JwksTiming {
    /// The schedule: a key withdrawn from the JWKS is trusted at most this long after.
    pub refresh_every: Duration,
    /// A token with an unknown `kid` fetches again at most this often.
    pub unknown_kid_every: Duration,
    /// After a failed fetch the next is tried after this, doubling up to `refresh_every`.
    pub retry_after_failure: Duration,
    /// Keys that could not be refreshed for this long are no longer used: an identity provider
    /// unreachable for that long may have withdrawn them.
    pub max_key_age: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(5 * 60),
            unknown_kid_every: Duration::from_secs(30),
            retry_after_failure: Duration::from_secs(1),
            max_key_age: Duration::from_secs(3600),
        }
    }
}

pub struct JwksVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    client_id: String,
    timing: JwksTiming,
    keys: RwLock<Arc<KeySet>>,
    /// Held by the one fetch in progress (and by those waiting to fetch), never by a
    /// verification of a known key.
    fetching: Mutex<FetchLog>,
    /// Tokens that passed every check: a client sending the same token again costs a lookup
    /// instead of an RSA verification. Keyed by the whole token, so any change to it misses;
    /// an entry is never used past the token's own expiry, nor once its key is gone.
    verified: RwLock<HashMap<String, Verified>>,
    /// Counts finished fetches (successful or not); tests wait on it.
    fetches: watch::Sender<u64>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

#[derive(Default)]
struct FetchLog {
    last_attempt: Option<Instant>,
    failures: u32,
}

#[derive(Clone)]
struct Verified {
    id: UserId,
    exp: u64,
    kid: String,
}

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    token_use: String,
    client_id: Option<String>,
    exp: u64,
    iat: u64,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwksVerifier {
    /// Starts the scheduled refresh (the first fetch at once); needs a Tokio runtime.
    pub fn new(
        jwks_url: String,
        issuer: String,
        client_id: String,
        outbound: OutboundTimeouts,
    ) -> Self {
        Self::with_timing(jwks_url, issuer, client_id, JwksTiming::default(), outbound)
    }

    pub fn with_timing(
        jwks_url: String,
        issuer: String,
        client_id: String,
        timing: JwksTiming,
        outbound: OutboundTimeouts,
    ) -> Self {
        let inner = Arc::new(Inner {
            // No idle connection is kept: a fetch comes every few minutes, and a kept-alive
            // connection would hold one of the provider's connection slots in between (the
            // embedded issuer's JWKS is served by this server's own, capped listener).
            http: reqwest::Client::builder()
                .connect_timeout(outbound.connect)
                .timeout(outbound.operation)
                .pool_max_idle_per_host(0)
                .build()
                .expect("a default HTTP client always builds"),
            jwks_url,
            issuer,
            client_id,
            timing,
            keys: RwLock::default(),
            fetching: Mutex::default(),
            verified: RwLock::default(),
            fetches: watch::Sender::new(0),
        });
        tokio::spawn(refresh_on_schedule(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// Resolves once `n` fetches have finished, for tests that wait for the schedule.
    #[cfg(test)]
    async fn fetched(&self, n: u64) {
        let mut fetches = self.inner.fetches.subscribe();
        fetches.wait_for(|&done| done >= n).await.unwrap();
    }
}

/// Fetches whenever the last attempt is old enough: `refresh_every` after a success, the
/// backoff after a failure. Ends when the verifier is dropped.
async fn refresh_on_schedule(inner: Weak<Inner>) {
    loop {
        let due = {
            let Some(inner) = inner.upgrade() else { return };
            let log = inner.fetching.lock().await;
            inner.next_due(&log, inner.timing.refresh_every)
        };
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.fetch_if_due(inner.timing.refresh_every).await;
    }
}

impl Inner {
    /// When the next fetch may start, if a successful one may be followed after `every`
    /// (`None`: now, nothing was fetched yet).
    fn next_due(&self, log: &FetchLog, every: Duration) -> Option<Instant> {
        let last = log.last_attempt?;
        let wait = match log.failures {
            0 => every,
            n => self
                .timing
                .retry_after_failure
                .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
                .min(self.timing.refresh_every),
        };
        Some(last + wait)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key, if we hold it and our keys are recent enough to trust.
    fn current_key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.snapshot();
        let fresh = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() <= self.timing.max_key_age);
        fresh.then(|| keys.keys.get(kid).cloned()).flatten()
    }

    fn usable(&self) -> bool {
        let keys = self.snapshot();
        !keys.keys.is_empty()
            && keys
                .fetched_at
                .is_some_and(|at| at.elapsed() <= self.timing.max_key_age)
    }

    /// Fetches unless an attempt was made recently enough (`every` after a success). Waits
    /// for a fetch already in progress instead of starting a second one.
    async fn fetch_if_due(&self, every: Duration) {
        let mut log = self.fetching.lock().await;
        if self
            .next_due(&log, every)
            .is_some_and(|due| Instant::now() < due)
        {
            return;
        }
        log.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                log.failures = 0;
                self.install(&set);
            }
            Err(e) => {
                log.failures = log.failures.saturating_add(1);
                tracing::warn!(error = %e, url = %self.jwks_url, failures = log.failures,
                    "could not fetch the JWKS; retrying soon");
            }
        }
        drop(log);
        self.fetches.send_modify(|n| *n += 1);
    }

    fn install(&self, set: &JwkSet) {
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, DecodingKey::from_jwk(jwk).ok()?))
            })
            .collect();
        let old = self.snapshot();
        let withdrawn: HashSet<&String> = old
            .keys
            .keys()
            .filter(|kid| !keys.contains_key(*kid))
            .collect();
        let added = keys
            .keys()
            .filter(|kid| !old.keys.contains_key(*kid))
            .count();
        if !withdrawn.is_empty() {
            self.verified
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, v| !withdrawn.contains(&v.kid));
        }
        if added > 0 || !withdrawn.is_empty() {
            tracing::info!(keys = keys.len(), added, withdrawn = withdrawn.len(),
                url = %self.jwks_url, "JWKS loaded");
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        });
    }

    async fn fetch(&self) -> Result<JwkSet, reqwest::Error> {
        self.http
            .get(&self.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        if let Some(key) = self.current_key(kid) {
            return Ok(key);
        }
        // A rotation, a forgery, or keys not loaded yet: fetch, unless that was just tried.
        self.fetch_if_due(self.timing.unknown_kid_every).await;
        if let Some(key) = self.current_key(kid) {
            return Ok(key);
        }
        // With current keys in hand, a `kid` that is not among them is not the provider's.
        // Without them nothing can be told apart: the provider is out of reach, and saying so
        // (a 503) beats sending every user back to the sign-in page.
        if self.usable() {
            Err(TokenRejected(format!("unknown kid {kid}")).into())
        } else {
            Err(self.keys_unavailable().into())
        }
    }

    fn keys_unavailable(&self) -> PortError {
        PortError::new(
            Part::Directory,
            format!("no current signing keys from {}", self.jwks_url),
        )
    }

    async fn verify_fully(&self, token: &str) -> Result<Verified, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenRejected(e.to_string()))?;
        // Checked before any key lookup: `none`, HS256 and friends never get further.
        if header.alg != Algorithm::RS256 {
            return Err(TokenRejected(format!("algorithm {:?}", header.alg)).into());
        }
        let kid = header.kid.ok_or_else(|| TokenRejected("no kid".into()))?;
        let key = self.key_for(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Cognito access tokens carry `client_id` instead of `aud`; it is checked below.
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| TokenRejected(e.to_string()))?
            .claims;

        // Issued in the future: forged, or signed by a clock we should not trust.
        if claims.iat > now_unix() + LEEWAY_SECS {
            return Err(TokenRejected(format!("iat {} in the future", claims.iat)).into());
        }
        if claims.token_use != "access" {
            return Err(TokenRejected(format!("token_use {}", claims.token_use)).into());
        }
        if claims.client_id.as_deref() != Some(self.client_id.as_str()) {
            return Err(TokenRejected("client_id mismatch".into()).into());
        }
        let id = UserId::parse(claims.sub).map_err(|e| TokenRejected(e.0))?;
        Ok(Verified {
            id,
            exp: claims.exp,
            kid,
        })
    }
}

#[async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify_access_token(&self, token: &str) -> Result<UserId, TokenError> {
        let inner = &self.inner;
        let cached = inner
            .verified
            .read()
            .ok()
            .and_then(|v| v.get(token).cloned());
        if let Some(hit) = cached {
            if now_unix() < hit.exp && inner.current_key(&hit.kid).is_some() {
                return Ok(hit.id);
            }
        }
        let verified = inner.verify_fully(token).await?;
        if let Ok(mut cache) = inner.verified.write() {
            if cache.len() >= VERIFIED_CAPACITY {
                cache.clear();
            }
            cache.insert(token.to_owned(), verified.clone());
        }
        Ok(verified.id)
    }

    async fn ready(&self) -> PortResult<()> {
        let inner = &self.inner;
        if !inner.usable() {
            // Not loaded yet, or too old: try now (within the usual backoff).
            inner.fetch_if_due(inner.timing.unknown_kid_every).await;
        }
        if inner.usable() {
            Ok(())
        } else {
            Err(inner.keys_unavailable())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use app::service::ports::NewUser;
    use axum::extract::State;
    use axum::response::{IntoResponse, Response};
    use axum::Json;

    use super::*;
    use crate::embedded::issuer::{Account, LocalIssuer, LOCAL_CLIENT_ID};

    const ISSUER: &str = "http://issuer.test";

    /// A signing key of its own, and a genuine access token signed with it.
    struct Signer {
        issuer: LocalIssuer,
        _dir: tempfile::TempDir,
    }

    impl Signer {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let issuer = LocalIssuer::load_or_create(dir.path(), ISSUER.into()).unwrap();
            Self { issuer, _dir: dir }
        }

        fn token(&self) -> String {
            let account = Account {
                user: NewUser {
                    id: UserId::parse("4f1c2d").unwrap(),
                    email: "ada@example.com".into(),
                    name: "Ada".into(),
                    phone: None,
                    role: "Member".into(),
                },
                picture: None,
            };
            self.issuer.mint(&account).unwrap().access_token
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Serve,
        Fail,
        /// Accepts the request and never answers.
        Hang,
    }

    /// A JWKS endpoint whose keys and behaviour the test changes.
    struct JwksServer {
        url: String,
        state: Arc<Served>,
    }

    struct Served {
        set: std::sync::Mutex<(JwkSet, Mode)>,
        requests: AtomicUsize,
    }

    impl JwksServer {
        async fn start(signers: &[&Signer]) -> Self {
            let state = Arc::new(Served {
                set: std::sync::Mutex::new((JwkSet { keys: vec![] }, Mode::Serve)),
                requests: AtomicUsize::new(0),
            });
            let router = axum::Router::new()
                .route("/jwks.json", axum::routing::get(serve_jwks))
                .with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router).await });
            let server = Self { url, state };
            server.publish(signers, Mode::Serve);
            server
        }

        fn publish(&self, signers: &[&Signer], mode: Mode) {
            let keys = signers
                .iter()
                .flat_map(|s| s.issuer.jwks().keys.clone())
                .collect();
            *self.state.set.lock().unwrap() = (JwkSet { keys }, mode);
        }

        fn requests(&self) -> usize {
            self.state.requests.load(Ordering::SeqCst)
        }

        fn verifier(&self, timing: JwksTiming) -> JwksVerifier {
            JwksVerifier::with_timing(
                self.url.clone(),
                ISSUER.into(),
                LOCAL_CLIENT_ID.into(),
                timing,
                OutboundTimeouts::default(),
            )
        }
    }

    async fn serve_jwks(State(state): State<Arc<Served>>) -> Response {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let (set, mode) = state.set.lock().unwrap().clone();
        match mode {
            Mode::Serve => Json(set).into_response(),
            Mode::Fail => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Mode::Hang => std::future::pending().await,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_new_key_is_fetched_for_its_first_token_and_a_withdrawn_key_stops_working() {
        let (old, new) = (Signer::new(), Signer::new());
        let server = JwksServer::start(&[&old]).await;
        let verifier = server.verifier(JwksTiming {
            refresh_every: HOUR,
            unknown_kid_every: Duration::ZERO,
            ..JwksTiming::default()
        });
        let (old_token, new_token) = (old.token(), new.token());
        assert!(verifier.verify_access_token(&old_token).await.is_ok());
        assert!(verifier.verify_access_token(&new_token).await.is_err());

        // Rotation: the provider publishes a new key; its first token fetches it at once.
        server.publish(&[&old, &new], Mode::Serve);
        assert!(verifier.verify_access_token(&new_token).await.is_ok());

        // The old key is withdrawn: once fetched, its tokens are refused, even one that was
        // verified (and remembered) before.
        server.publish(&[&new], Mode::Serve);
        // (Any token with an unknown kid makes it look at once.)
        let _ = verifier.verify_access_token(&Signer::new().token()).await;
        assert!(verifier.verify_access_token(&old_token).await.is_err());
        assert!(verifier.verify_access_token(&new_token).await.is_ok());
    }

    #[tokio::test]
    async fn keys_are_refreshed_on_schedule() {
        let (old, new) = (Signer::new(), Signer::new());
        let server = JwksServer::start(&[&old]).await;
        let verifier = server.verifier(JwksTiming {
            refresh_every: Duration::from_millis(200),
            unknown_kid_every: HOUR,
            ..JwksTiming::default()
        });
        let old_token = old.token();
        assert!(verifier.verify_access_token(&old_token).await.is_ok());

        // The schedule alone brings the withdrawal in. (Two fetches: the first may have been
        // on its way before the change.)
        server.publish(&[&new], Mode::Serve);
        let done = *verifier.inner.fetches.borrow();
        verifier.fetched(done + 2).await;
        assert!(verifier.verify_access_token(&old_token).await.is_err());
        assert!(verifier.verify_access_token(&new.token()).await.is_ok());
    }

    #[tokio::test]
    async fn a_failed_fetch_is_retried_soon_and_readiness_says_so() {
        let signer = Signer::new();
        let server = JwksServer::start(&[&signer]).await;
        server.publish(&[&signer], Mode::Fail);
        // Neither the schedule nor unknown kids would fetch again within the hour: only the
        // retry after a failure can.
        let verifier = server.verifier(JwksTiming {
            refresh_every: HOUR,
            unknown_kid_every: HOUR,
            retry_after_failure: Duration::from_millis(50),
            max_key_age: HOUR,
        });
        verifier.fetched(1).await;
        let token = signer.token();
        assert!(verifier.verify_access_token(&token).await.is_err());
        assert!(verifier.ready().await.is_err());

        // Each failed fetch is followed by another within a fraction of a second, so waiting
        // fetch by fetch ends at the first one after the provider is back. (The timeout only
        // turns a hang into a failure.)
        server.publish(&[&signer], Mode::Serve);
        let retried = async {
            loop {
                let done = *verifier.inner.fetches.borrow();
                if verifier.verify_access_token(&token).await.is_ok() {
                    break;
                }
                verifier.fetched(done + 1).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), retried)
            .await
            .expect("no retry after a failed fetch");
        assert!(verifier.ready().await.is_ok());

        // Once fetched, forged key ids do not make us fetch again (the limit is an hour here).
        let (before, forger) = (server.requests(), Signer::new());
        for _ in 0..20 {
            assert!(verifier.verify_access_token(&forger.token()).await.is_err());
        }
        assert_eq!(server.requests(), before);
    }

    #[tokio::test]
    async fn a_fetch_that_hangs_does_not_hold_up_tokens_of_known_keys() {
        let (known, unknown) = (Signer::new(), Signer::new());
        let server = JwksServer::start(&[&known]).await;
        let verifier = Arc::new(server.verifier(JwksTiming {
            refresh_every: HOUR,
            unknown_kid_every: Duration::ZERO,
            ..JwksTiming::default()
        }));
        let token = known.token();
        assert!(verifier.verify_access_token(&token).await.is_ok());

        server.publish(&[&known], Mode::Hang);
        let requests = server.requests();
        let waiting = tokio::spawn({
            let verifier = verifier.clone();
            let token = unknown.token();
            async move { verifier.verify_access_token(&token).await.is_ok() }
        });
        while server.requests() == requests {
            tokio::task::yield_now().await;
        }
        // The fetch is in progress and will not end: a token with a known key still verifies
        // (a fresh one, so that it is not simply remembered).
        let fresh = known.token();
        assert!(verifier.verify_access_token(&fresh).await.is_ok());
        assert!(
            !waiting.is_finished(),
            "the unknown kid waits for the fetch"
        );
        waiting.abort();
    }
}
