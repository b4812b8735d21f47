//! Keeps the browser's session alive. The access token lives an hour (Cognito's default); a
//! little before it expires the app trades the HttpOnly refresh cookie for a new one, so that
//! someone in the middle of editing a picture is never signed out under their hands.
//!
//! Only the expiry time is kept in `localStorage`: it is not a secret, and it lets a reloaded
//! page pick up the schedule. The tokens themselves never leave their HttpOnly cookies.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::RefreshRequest;
use crate::server_fns::refresh;

const EXPIRES_AT_KEY: &str = "portrait.sessionExpiresAt";
/// Refresh this long before expiry: room for a slow network and some clock skew.
const MARGIN_MS: f64 = 120_000.0;

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

/// Records when the current tokens expire and schedules their refresh.
pub fn started(expires_in_secs: u64) {
    let expires_at = js_sys::Date::now() + expires_in_secs as f64 * 1000.0;
    if let Some(storage) = storage() {
        let _ = storage.set_item(EXPIRES_AT_KEY, &expires_at.to_string());
    }
    keep_alive();
}

pub fn ended() {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(EXPIRES_AT_KEY);
    }
}

/// Schedules the next refresh, if this browser holds a session the app started.
pub fn keep_alive() {
    let Some(expires_at) = storage()
        .and_then(|s| s.get_item(EXPIRES_AT_KEY).ok().flatten())
        .and_then(|v| v.parse::<f64>().ok())
    else {
        return;
    };
    let delay = (expires_at - MARGIN_MS - js_sys::Date::now()).max(0.0);
    set_timeout(
        || {
            spawn_local(async {
                renew().await;
            })
        },
        Duration::from_millis(delay as u64),
    );
}

/// Trades the refresh cookie for new tokens now; false when there is no session to renew.
pub async fn renew() -> bool {
    match refresh(RefreshRequest::default()).await {
        Ok(tokens) => {
            started(tokens.expires_in);
            true
        }
        Err(_) => {
            ended();
            false
        }
    }
}
