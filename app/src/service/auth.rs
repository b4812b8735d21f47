//! Authentication as a type: a use case that needs a user takes an `AuthUser`, and the only way
//! to get one is to present a token that the verifier accepts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::ports::{TokenError, UserStore};
use super::AppState;
use crate::domain::UserId;
use crate::error::ApiError;

/// Name of the HttpOnly cookie that carries the access token for the browser app (behind
/// HTTPS with the `__Host-` prefix: see `cookie_name`).
pub const SESSION_COOKIE: &str = "portrait_session";
/// Name of the HttpOnly cookie that carries the refresh token. It is `SameSite=Strict`, and
/// only the refresh endpoint reads it. Its path is `/`, like the session cookie's: `__Host-`
/// requires that, sign-out needs to see the token to revoke it, and a path is no boundary
/// within one origin (RFC 6265, 8.5).
pub const REFRESH_COOKIE: &str = "portrait_refresh";

/// The `users.status` of an account that may use the app; any other value is refused.
pub const ACTIVE: &str = "Active";

/// The `users.role` of administrators (the directory's `Admin` group).
pub const ADMIN: &str = "Admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: UserId,
}

impl AuthUser {
    /// Authenticates the current server-function request.
    pub async fn from_request(state: &AppState) -> Result<Self, ApiError> {
        Self::from_headers(state, &request_headers().await?).await
    }

    /// A Bearer token wins over the cookie: API clients send one, the browser app sends the other.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Self, ApiError> {
        let token = bearer_token(headers)
            .or_else(|| cookie(headers, SESSION_COOKIE, state.settings.secure_cookies))
            .ok_or_else(ApiError::unauthenticated)?;
        let id = state
            .tokens
            .verify_access_token(token)
            .await
            .map_err(|e| match e {
                TokenError::Rejected(rejected) => {
                    tracing::debug!(%rejected, "refused a token");
                    ApiError::unauthenticated()
                }
                TokenError::Unavailable(e) => e.into(),
            })?;
        // A valid token is not enough: the user's row must exist and be active, so that an
        // administrator who disables an account stops its tokens (within the cache's life).
        if !state.user_status.active(state.users.as_ref(), &id).await? {
            tracing::debug!(user = %id, "refused a token of a disabled or unknown user");
            return Err(ApiError::unauthenticated());
        }
        Ok(Self { id })
    }
}

/// Users' `status`, remembered for a short while so that an authenticated request costs no
/// database read. A change of status takes effect within `ttl` (0: read on every request).
pub struct UserStatusCache {
    ttl: Duration,
    entries: RwLock<HashMap<UserId, (Instant, bool)>>,
}

/// Users remembered at most; past this the memory is simply cleared.
const STATUS_CAPACITY: usize = 100_000;

impl UserStatusCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
        }
    }

    /// Whether the user has a row whose status is active.
    pub async fn active(&self, users: &dyn UserStore, id: &UserId) -> Result<bool, ApiError> {
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied();
        if let Some((at, active)) = cached {
            if at.elapsed() < self.ttl {
                return Ok(active);
            }
        }
        let active = users
            .get(id)
            .await?
            .is_some_and(|user| user.status == ACTIVE);
        self.remember(id, active);
        Ok(active)
    }

    /// Records what a sign-in just read, so the next request needs no read either.
    pub fn remember(&self, id: &UserId, active: bool) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= STATUS_CAPACITY {
            entries.clear();
        }
        entries.insert(id.clone(), (Instant::now(), active));
    }
}

/// The address of the client that sent the current request.
///
/// With no trusted proxy (`trusted_proxy_hops` 0) it is the TCP peer, and `X-Forwarded-For` is
/// ignored: anyone can write that header. Behind `n` trusted proxies (an ALB is one) each
/// appends the address it saw, so the client is the `n`-th entry from the right; the entries
/// left of it are the client's own claims and never used. A request with fewer entries than
/// that did not pass through the proxies, and its peer address is used.
pub async fn client_address(trusted_proxy_hops: usize) -> Option<IpAddr> {
    let peer = leptos_axum::extract::<axum::extract::ConnectInfo<SocketAddr>>()
        .await
        .map(|info| info.0.ip());
    if let Err(e) = &peer {
        tracing::warn!(error = %e, "no peer address: sign-ins are throttled by account only");
    }
    let headers = request_headers().await.ok()?;
    client_ip(&headers, peer.ok(), trusted_proxy_hops)
}

fn client_ip(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted_proxy_hops: usize,
) -> Option<IpAddr> {
    if trusted_proxy_hops == 0 {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(trusted_proxy_hops)
        .and_then(|i| forwarded[i].parse().ok())
        .or(peer)
}

/// The headers of the current server-function request.
pub async fn request_headers() -> Result<HeaderMap, ApiError> {
    leptos_axum::extract().await.map_err(|e| {
        tracing::error!(error = %e, "could not read request headers");
        ApiError::internal()
    })
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The name a cookie goes by. Behind HTTPS it carries the `__Host-` prefix: browsers accept
/// such a cookie only from a secure origin, with `Secure`, `Path=/` and no `Domain`, so neither a
/// sibling subdomain nor a network attacker on plain HTTP can plant or overwrite one. The
/// unprefixed name is then never read, or the prefix would protect nothing.
fn cookie_name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// The value of the cookie named `base` (see `cookie_name`) in the request.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, base: &str, secure: bool) -> Option<&'h str> {
    let wanted = cookie_name(base, secure);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted.as_str())
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that sets (or, with `max_age` 0, clears) the access-token cookie.
pub(super) fn session_cookie_header(token: &str, max_age: u64, secure: bool) -> String {
    // SameSite=Lax: sent on top-level navigation (so following a link to the app keeps you signed
    // in) but never on cross-site POSTs, which are the only way the API could be misused.
    cookie_header(SESSION_COOKIE, token, "Lax", max_age, secure)
}

/// The same for the refresh-token cookie. Strict: a refresh is only ever asked for by the app's
/// own pages, never as a result of a cross-site navigation.
pub(super) fn refresh_cookie_header(token: &str, max_age: u64, secure: bool) -> String {
    cookie_header(REFRESH_COOKIE, token, "Strict", max_age, secure)
}

/// Clears the refresh cookie as earlier releases set it, scoped to `/api/auth/refresh`: a
/// browser would otherwise keep sending that one to the refresh endpoint ahead of the current
/// one (longer paths first), and with it an earlier session.
pub(super) fn clear_legacy_refresh_cookie() -> String {
    format!("{REFRESH_COOKIE}=; Path=/api/auth/refresh; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn cookie_header(base: &str, value: &str, same_site: &str, max_age: u64, secure: bool) -> String {
    let name = cookie_name(base, secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(
            bearer_token(&headers(&[(AUTHORIZATION, "bearer abc")])),
            Some("abc")
        );
        assert_eq!(bearer_token(&headers(&[(AUTHORIZATION, "Bearer ")])), None);
        assert_eq!(
            bearer_token(&headers(&[(AUTHORIZATION, "Basic abc")])),
            None
        );
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let peer = Some(IpAddr::from([10, 0, 0, 1]));
        let xff = http::header::HeaderName::from_static("x-forwarded-for");
        let h = headers(&[(xff.clone(), "6.6.6.6, 198.51.100.7"), (xff, "10.0.0.9")]);
        assert_eq!(client_ip(&h, peer, 0), peer, "not trusted: the peer");
        assert_eq!(client_ip(&h, peer, 1), "10.0.0.9".parse().ok());
        assert_eq!(client_ip(&h, peer, 2), "198.51.100.7".parse().ok());
        // Fewer entries than proxies, or garbage: the peer.
        assert_eq!(client_ip(&h, peer, 4), peer);
        let bad = headers(&[(
            http::header::HeaderName::from_static("x-forwarded-for"),
            "me",
        )]);
        assert_eq!(client_ip(&bad, peer, 1), peer);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[(COOKIE, "a=1; portrait_session=tok; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE, false), Some("tok"));
        assert_eq!(
            cookie(
                &headers(&[(COOKIE, "portrait_sessionx=1")]),
                SESSION_COOKIE,
                false
            ),
            None
        );
    }

    #[test]
    fn behind_https_only_the_host_prefixed_cookie_counts() {
        let set = session_cookie_header("tok", 60, true);
        assert!(
            set.starts_with("__Host-portrait_session=tok; Path=/;"),
            "{set}"
        );
        assert!(
            set.ends_with("; Secure") && !set.contains("Domain"),
            "{set}"
        );
        let refresh = refresh_cookie_header("r", 60, true);
        assert!(
            refresh.starts_with("__Host-portrait_refresh=r; Path=/;"),
            "{refresh}"
        );

        let planted = headers(&[(COOKIE, "portrait_session=planted")]);
        assert_eq!(cookie(&planted, SESSION_COOKIE, true), None);
        let real = headers(&[(COOKIE, "portrait_session=x; __Host-portrait_session=tok")]);
        assert_eq!(cookie(&real, SESSION_COOKIE, true), Some("tok"));
    }
}
