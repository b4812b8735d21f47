//! The use cases of a session: sign in, refresh, sign out. The directory (Cognito or the
//! embedded issuer) does the real work; this decides what the client gets back and which
//! cookies the browser app keeps.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::auth::{
    clear_legacy_refresh_cookie, cookie, refresh_cookie_header, session_cookie_header,
    REFRESH_COOKIE,
};
use super::limits::too_many;
use super::ports::{RefreshOutcome, SignInOutcome, Tokens};
use super::throttle::Verdict;
use super::AppState;
use crate::api::{LoginRequest, LoginResponse, RefreshRequest};
use crate::error::ApiError;

/// How long the browser keeps the refresh cookie: Cognito's default refresh token validity. A
/// pool configured shorter simply answers a later refresh with 401, and the user signs in again.
const REFRESH_COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// A response and the `Set-Cookie` values that go with it.
pub type WithCookies<T> = (T, Vec<String>);

/// The answer to a wrong password, and to every attempt on a locked account.
fn incorrect() -> ApiError {
    ApiError::new(401, "Incorrect email or password.")
}

/// A 429 whose `Retry-After` is never shorter than the real wait.
fn wait(message: &str, wait: Duration) -> ApiError {
    too_many(
        message,
        Duration::from_secs(wait.as_secs_f64().ceil() as u64),
    )
}

fn provider_busy() -> ApiError {
    tracing::warn!("the identity provider is limiting requests");
    wait(
        "Sign-in is busy right now. Please wait a moment and try again.",
        Duration::from_secs(2),
    )
}

impl AppState {
    /// Signs in with a password, from the client at `client` (for the throttle).
    pub async fn sign_in(
        &self,
        req: LoginRequest,
        client: Option<IpAddr>,
    ) -> Result<WithCookies<LoginResponse>, ApiError> {
        self.sign_in_at(req, client, Instant::now()).await
    }

    /// The same, as if it were `now` (tests step through the throttle's delays this way).
    pub async fn sign_in_at(
        &self,
        req: LoginRequest,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<WithCookies<LoginResponse>, ApiError> {
        let email = req.email.trim();
        if email.is_empty() || req.password.is_empty() {
            return Err(ApiError::bad_request("Email and password are required."));
        }
        match self.sign_in_throttle.begin(email, client, now) {
            Verdict::Go => {}
            Verdict::Wait(delay) => {
                return Err(wait(
                    "Too many sign-in attempts. Please wait a moment and try again.",
                    delay,
                ))
            }
            Verdict::Locked => {
                tracing::info!("sign-in refused: the account is locked after failed attempts");
                return Err(incorrect());
            }
        }
        let signed_in = match self.directory.sign_in(email, &req.password).await? {
            SignInOutcome::SignedIn(signed_in) => signed_in,
            SignInOutcome::Refused => return Err(incorrect()),
            SignInOutcome::NeedsAnotherStep => {
                self.sign_in_throttle.succeeded(email, client);
                return Err(ApiError::new(
                    403,
                    "This account must finish its set-up (a new password, or MFA) before it can \
                     sign in here. Please ask an administrator.",
                ));
            }
            SignInOutcome::TooManyRequests => return Err(provider_busy()),
            SignInOutcome::LockedOut => {
                tracing::info!("sign-in refused: the identity provider locked the account");
                return Err(wait(
                    "Too many failed sign-ins for this account. Please wait a few minutes and \
                     try again.",
                    Duration::from_secs(60),
                ));
            }
        };
        self.sign_in_throttle.succeeded(email, client);
        // First sign-in creates the user's row from what the directory says about them.
        self.users.ensure(&signed_in.user).await?;
        let id = &signed_in.user.id;
        let active = self
            .users
            .get(id)
            .await?
            .is_some_and(|user| user.status == super::auth::ACTIVE);
        self.user_status.remember(id, active);
        if !active {
            if let Some(refresh) = &signed_in.tokens.refresh_token {
                if let Err(e) = self.directory.revoke(refresh).await {
                    tracing::warn!(error = %e, "could not revoke a disabled user's refresh token");
                }
            }
            return Err(ApiError::forbidden(
                "This account is disabled. Please ask an administrator.",
            ));
        }
        Ok(self.session(signed_in.tokens))
    }

    /// Trades a refresh token (from the body, else the browser's cookie) for new tokens.
    pub async fn refresh(
        &self,
        req: RefreshRequest,
        headers: &HeaderMap,
    ) -> Result<WithCookies<LoginResponse>, ApiError> {
        let token = self
            .refresh_token(&req, headers)
            .ok_or_else(ApiError::unauthenticated)?;
        match self.directory.refresh(token).await? {
            RefreshOutcome::Refreshed(tokens) => Ok(self.session(tokens)),
            RefreshOutcome::Refused => Err(ApiError::unauthenticated()),
            RefreshOutcome::TooManyRequests => Err(provider_busy()),
        }
    }

    /// Revokes the refresh token (from the body, else the browser's cookie), so that signing
    /// out really ends the session: a refresh with it afterwards is a 401.
    pub async fn sign_out(&self, req: RefreshRequest, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.refresh_token(&req, headers) {
            Some(token) => Ok(self.directory.revoke(token).await?),
            None => Ok(()),
        }
    }

    /// The refresh token of a request: API clients send it in the body, the browser app as a
    /// cookie.
    fn refresh_token<'r>(
        &self,
        req: &'r RefreshRequest,
        headers: &'r HeaderMap,
    ) -> Option<&'r str> {
        req.refresh_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .or_else(|| cookie(headers, REFRESH_COOKIE, self.settings.secure_cookies))
    }

    /// The `Set-Cookie` values that end the browser session.
    pub fn sign_out_cookies(&self) -> Vec<String> {
        let secure = self.settings.secure_cookies;
        vec![
            session_cookie_header("", 0, secure),
            refresh_cookie_header("", 0, secure),
            clear_legacy_refresh_cookie(),
        ]
    }

    fn session(&self, tokens: Tokens) -> WithCookies<LoginResponse> {
        let secure = self.settings.secure_cookies;
        let mut cookies = vec![session_cookie_header(
            &tokens.access_token,
            tokens.expires_in,
            secure,
        )];
        if let Some(refresh) = &tokens.refresh_token {
            cookies.push(refresh_cookie_header(
                refresh,
                REFRESH_COOKIE_MAX_AGE_SECS,
                secure,
            ));
        }
        cookies.push(clear_legacy_refresh_cookie());
        let response = LoginResponse {
            access_token: tokens.access_token,
            id_token: tokens.id_token,
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
            token_type: "Bearer".into(),
        };
        (response, cookies)
    }
}
