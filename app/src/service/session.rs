//! The use cases of a session: sign in, refresh, sign out. The directory (Cognito or the
//! embedded issuer) does the real work; this decides what the client gets back and which
//! cookies the browser app keeps.

use http::HeaderMap;

use super::auth::{
    clear_legacy_refresh_cookie, cookie, refresh_cookie_header, session_cookie_header,
    REFRESH_COOKIE,
};
use super::ports::{SignInOutcome, Tokens};
use super::AppState;
use crate::api::{LoginRequest, LoginResponse, RefreshRequest};
use crate::error::ApiError;

/// How long the browser keeps the refresh cookie: Cognito's default refresh token validity. A
/// pool configured shorter simply answers a later refresh with 401, and the user signs in again.
const REFRESH_COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// A response and the `Set-Cookie` values that go with it.
pub type WithCookies<T> = (T, Vec<String>);

impl AppState {
    pub async fn sign_in(&self, req: LoginRequest) -> Result<WithCookies<LoginResponse>, ApiError> {
        let email = req.email.trim();
        if email.is_empty() || req.password.is_empty() {
            return Err(ApiError::bad_request("Email and password are required."));
        }
        let signed_in =
            match self.directory.sign_in(email, &req.password).await? {
                SignInOutcome::SignedIn(signed_in) => signed_in,
                SignInOutcome::Refused => {
                    return Err(ApiError::new(401, "Incorrect email or password."))
                }
                SignInOutcome::NeedsAnotherStep => return Err(ApiError::new(
                    403,
                    "This account must finish its set-up (a new password, or MFA) before it can \
                     sign in here. Please ask an administrator.",
                )),
            };
        // First sign-in creates the user's row from what the directory says about them.
        self.users.ensure(&signed_in.user).await?;
        Ok(self.session(signed_in.tokens))
    }

    /// Trades a refresh token (from the body, else the browser's cookie) for new tokens.
    pub async fn refresh(
        &self,
        req: RefreshRequest,
        headers: &HeaderMap,
    ) -> Result<WithCookies<LoginResponse>, ApiError> {
        let token = req
            .refresh_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .or_else(|| cookie(headers, REFRESH_COOKIE, self.settings.secure_cookies))
            .ok_or_else(ApiError::unauthenticated)?;
        let tokens = self
            .directory
            .refresh(token)
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        Ok(self.session(tokens))
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
