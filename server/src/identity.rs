//! Token verification against a JWKS, as AWS documents it for Cognito: RS256 only, the key
//! named by `kid`, then `iss`, `exp`, `token_use` and `client_id`. The embedded issuer is
//! verified by this same code, over HTTP, from its published JWKS.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use app::domain::UserId;
use app::service::ports::{TokenRejected, TokenVerifier};
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// A token whose `kid` we do not know triggers a JWKS refetch at most this often, so that forged
/// tokens cannot make us hammer the identity provider.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 30;
/// Verified tokens remembered at most; past this the memory is simply cleared.
const VERIFIED_CAPACITY: usize = 10_000;

pub struct JwksVerifier {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    client_id: String,
    cache: RwLock<KeyCache>,
    /// Tokens that passed every check, with their subject and `exp`: a client sending the same
    /// token again costs a lookup instead of an RSA verification. Keyed by the whole token, so
    /// any change to it misses; an entry is never used past the token's own expiry.
    verified: std::sync::RwLock<HashMap<String, (UserId, u64)>>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    last_fetch: Option<Instant>,
}

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    token_use: String,
    client_id: Option<String>,
    exp: u64,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwksVerifier {
    pub fn new(jwks_url: String, issuer: String, client_id: String) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a default HTTP client always builds"),
            jwks_url,
            issuer,
            client_id,
            cache: RwLock::default(),
            verified: std::sync::RwLock::default(),
        }
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenRejected> {
        if let Some(key) = self.cache.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        let mut cache = self.cache.write().await;
        // Another request may have refreshed the keys while we waited for the lock.
        if let Some(key) = cache.keys.get(kid) {
            return Ok(key.clone());
        }
        if cache
            .last_fetch
            .is_some_and(|t| t.elapsed() < REFETCH_INTERVAL)
        {
            return Err(TokenRejected(format!("unknown kid {kid}")));
        }
        cache.last_fetch = Some(Instant::now());
        let set = self.fetch().await?;
        cache.keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, DecodingKey::from_jwk(jwk).ok()?))
            })
            .collect();
        tracing::info!(keys = cache.keys.len(), url = %self.jwks_url, "JWKS loaded");
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenRejected(format!("unknown kid {kid}")))
    }

    async fn fetch(&self) -> Result<JwkSet, TokenRejected> {
        let fail = |e: reqwest::Error| {
            tracing::error!(error = %e, url = %self.jwks_url, "could not fetch the JWKS");
            TokenRejected("JWKS unavailable".into())
        };
        self.http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)
    }
}

#[async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify_access_token(&self, token: &str) -> Result<UserId, TokenRejected> {
        if let Some((id, exp)) = self
            .verified
            .read()
            .ok()
            .and_then(|v| v.get(token).cloned())
        {
            if now_unix() < exp {
                return Ok(id);
            }
        }
        let (id, exp) = self.verify_fully(token).await?;
        if let Ok(mut verified) = self.verified.write() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_owned(), (id.clone(), exp));
        }
        Ok(id)
    }
}

impl JwksVerifier {
    async fn verify_fully(&self, token: &str) -> Result<(UserId, u64), TokenRejected> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenRejected(e.to_string()))?;
        // Checked before any key lookup: `none`, HS256 and friends never get further.
        if header.alg != Algorithm::RS256 {
            return Err(TokenRejected(format!("algorithm {:?}", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| TokenRejected("no kid".into()))?;
        let key = self.key_for(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        // Cognito access tokens carry `client_id` instead of `aud`; it is checked below.
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| TokenRejected(e.to_string()))?
            .claims;

        if claims.token_use != "access" {
            return Err(TokenRejected(format!("token_use {}", claims.token_use)));
        }
        if claims.client_id.as_deref() != Some(self.client_id.as_str()) {
            return Err(TokenRejected("client_id mismatch".into()));
        }
        let id = UserId::parse(claims.sub).map_err(|e| TokenRejected(e.0))?;
        Ok((id, claims.exp))
    }
}
