//! The HTTP API, as Leptos server functions at the fixed paths of the contract.
//!
//! Each body is one line of wiring: authenticate, call the use case, and let `respond` turn an
//! error into its status. The browser calls these same functions through the generated client.

use leptos::prelude::*;

use crate::api::{
    ConfirmUploadRequest, DemoAccount, DirectoryPage, LoginRequest, LoginResponse, MessageResponse,
    PictureResponse, Profile, RefreshRequest, RemovedPicture, UploadUrlRequest, UploadUrlResponse,
    UserSummary,
};
use crate::error::ApiError;

#[cfg(feature = "ssr")]
use crate::domain::{DirectoryCursor, DirectoryRequest};
#[cfg(feature = "ssr")]
use crate::service::{client_address, request_headers, respond, AppState, AuthUser};

#[cfg(feature = "ssr")]
async fn authenticated() -> Result<(AppState, AuthUser), ApiError> {
    let state = AppState::current()?;
    let user = AuthUser::from_request(&state).await?;
    Ok((state, user))
}

#[cfg(feature = "ssr")]
fn set_cookies(values: Vec<String>) {
    let options = expect_context::<leptos_axum::ResponseOptions>();
    for value in values {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            options.append_header(http::header::SET_COOKIE, value);
        }
    }
}

#[server(prefix = "/api", endpoint = "auth/login", input = server_fn::codec::Json, output = server_fn::codec::Json)]
pub async fn login(#[server(flatten)] req: LoginRequest) -> Result<LoginResponse, ApiError> {
    respond(async move {
        let state = AppState::current()?;
        let client = client_address(state.settings.trusted_proxy_hops).await;
        let (response, cookies) = state.sign_in(req, client).await?;
        set_cookies(cookies);
        Ok(response)
    })
    .await
}

/// New tokens for a refresh token; the browser app calls it before its access token expires.
#[server(prefix = "/api", endpoint = "auth/refresh", input = server_fn::codec::Json, output = server_fn::codec::Json)]
pub async fn refresh(#[server(flatten)] req: RefreshRequest) -> Result<LoginResponse, ApiError> {
    respond(async move {
        let headers = request_headers().await?;
        let (response, cookies) = AppState::current()?.refresh(req, &headers).await?;
        set_cookies(cookies);
        Ok(response)
    })
    .await
}

/// Ends the session: revokes the refresh token (from the body, else the cookie) and clears
/// both cookies, which are cleared even when the revocation fails.
#[server(prefix = "/api", endpoint = "auth/logout", input = server_fn::codec::Json, output = server_fn::codec::Json)]
pub async fn logout(#[server(flatten)] req: RefreshRequest) -> Result<MessageResponse, ApiError> {
    respond(async move {
        let state = AppState::current()?;
        set_cookies(state.sign_out_cookies());
        state.sign_out(req, &request_headers().await?).await?;
        Ok(MessageResponse {
            message: "Signed out.".into(),
        })
    })
    .await
}

/// The accounts the sign-in page may show: the embedded issuer's demo accounts, and none at all
/// with a real identity provider. Public, like the sign-in page that shows them.
#[server(prefix = "/api", endpoint = "auth/demo-accounts", input = server_fn::codec::GetUrl, output = server_fn::codec::Json)]
pub async fn demo_accounts() -> Result<Vec<DemoAccount>, ApiError> {
    respond(async move { Ok(AppState::current()?.settings.demo_accounts.clone()) }).await
}

#[server(prefix = "/api", endpoint = "auth/user/profile", input = server_fn::codec::GetUrl, output = server_fn::codec::Json)]
pub async fn get_profile() -> Result<Profile, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        state.profile(&user).await
    })
    .await
}

/// The SRS's user list, a page at a time: `?limit=` (50, at most 200), `?cursor=` (from the
/// previous page) and `?q=` (a name or email prefix). The body stays the plain array; the next
/// page, when there is one, is in a `Link: <...>; rel="next"` header.
#[server(prefix = "/api", endpoint = "users", input = server_fn::codec::GetUrl, output = server_fn::codec::Json)]
pub async fn list_users(
    limit: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
) -> Result<Vec<UserSummary>, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        let request = DirectoryRequest::parse(limit.as_deref(), cursor.as_deref(), q.as_deref())?;
        let page = state.list_users(&user, &request).await?;
        if let Some(last) = &page.next {
            let link = format!("</api/users?{}>; rel=\"next\"", request.next_query(last));
            if let Ok(value) = http::HeaderValue::from_str(&link) {
                expect_context::<leptos_axum::ResponseOptions>()
                    .insert_header(http::header::LINK, value);
            }
        }
        Ok(page.users)
    })
    .await
}

/// The same pages for the /users page, which cannot read a server function's headers: the
/// next cursor in the body, and who is looking.
#[server(prefix = "/api", endpoint = "users/directory", input = server_fn::codec::GetUrl, output = server_fn::codec::Json)]
pub async fn user_directory(
    cursor: Option<String>,
    q: Option<String>,
) -> Result<DirectoryPage, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        let request = DirectoryRequest::parse(None, cursor.as_deref(), q.as_deref())?;
        let page = state.list_users(&user, &request).await?;
        Ok(DirectoryPage {
            users: page.users,
            next_cursor: page.next.as_ref().map(DirectoryCursor::encode),
            you: user.id.to_string(),
            admin: page.viewer_is_admin,
        })
    })
    .await
}

/// An administrator removes another person's picture: `DELETE /api/users/picture?id={id}`.
#[server(prefix = "/api", endpoint = "users/picture", input = server_fn::codec::DeleteUrl, output = server_fn::codec::Json)]
pub async fn remove_users_picture(id: String) -> Result<RemovedPicture, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        state.remove_users_picture(&user, &id).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "auth/user/picture/upload-url", input = server_fn::codec::Json, output = server_fn::codec::Json)]
pub async fn create_upload_url(
    #[server(flatten)] req: UploadUrlRequest,
) -> Result<UploadUrlResponse, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        state.create_upload_url(&user, req).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "auth/user/picture/uploaded", input = server_fn::codec::Json, output = server_fn::codec::Json)]
pub async fn confirm_upload(
    #[server(flatten)] req: ConfirmUploadRequest,
) -> Result<PictureResponse, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        // Client-reported figures only feed histograms; absurd ones are dropped.
        let put = req
            .put_millis
            .zip(req.put_bytes)
            .filter(|&(ms, bytes)| ms <= 600_000 && bytes <= 2 * crate::domain::MAX_PICTURE_BYTES)
            .map(|(ms, bytes)| (std::time::Duration::from_millis(ms), bytes));
        state.confirm_upload(&user, &req.photo_key, put).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "auth/user/picture", input = server_fn::codec::DeleteUrl, output = server_fn::codec::Json)]
pub async fn delete_picture() -> Result<PictureResponse, ApiError> {
    respond(async move {
        let (state, user) = authenticated().await?;
        state.delete_picture(&user).await
    })
    .await
}
