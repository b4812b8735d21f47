//! Authentication as a type: a use case that needs a user takes an `AuthUser`, and the only way
//! to get one is to present a token that the verifier accepts.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::AppState;
use crate::domain::UserId;
use crate::error::ApiError;

/// Name of the HttpOnly cookie that carries the access token for the browser app.
pub const SESSION_COOKIE: &str = "portrait_session";
/// Name of the HttpOnly cookie that carries the refresh token. It is sent only to the refresh
/// endpoint, so no other request (and no page) ever carries the long-lived token.
pub const REFRESH_COOKIE: &str = "portrait_refresh";
pub(super) const REFRESH_PATH: &str = "/api/auth/refresh";

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
            .or_else(|| cookie(headers, SESSION_COOKIE))
            .ok_or_else(ApiError::unauthenticated)?;
        let id = state
            .tokens
            .verify_access_token(token)
            .await
            .map_err(|rejected| {
                tracing::debug!(%rejected, "refused a token");
                ApiError::unauthenticated()
            })?;
        Ok(Self { id })
    }
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

pub(super) fn cookie<'h>(headers: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that sets (or, with `max_age` 0, clears) the access-token cookie.
pub(super) fn session_cookie_header(token: &str, max_age: u64, secure: bool) -> String {
    // SameSite=Lax: sent on top-level navigation (so following a link to the app keeps you signed
    // in) but never on cross-site POSTs, which are the only way the API could be misused.
    cookie_header(SESSION_COOKIE, token, "/", "Lax", max_age, secure)
}

/// The same for the refresh-token cookie. Strict: a refresh is only ever asked for by the app's
/// own pages, never as a result of a cross-site navigation.
pub(super) fn refresh_cookie_header(token: &str, max_age: u64, secure: bool) -> String {
    cookie_header(
        REFRESH_COOKIE,
        token,
        REFRESH_PATH,
        "Strict",
        max_age,
        secure,
    )
}

fn cookie_header(
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: u64,
    secure: bool,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
    )
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
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[(COOKIE, "a=1; portrait_session=tok; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(
            cookie(&headers(&[(COOKIE, "portrait_sessionx=1")]), SESSION_COOKIE),
            None
        );
    }
}
