//! The Content-Security-Policy of the pages. It is made per response because it carries the
//! nonce of that page's inline hydration scripts; for the same reason pages are never cached.

use leptos::nonce::{provide_nonce, use_nonce};
use leptos::prelude::use_context;

use super::AppState;

/// Call while rendering a page, before the hydration scripts: provides the nonce they use and
/// sets the policy header that admits them, and `Cache-Control: no-store`.
///
/// The policy allows only this origin and the storage (presigned PUTs and the pictures
/// themselves), no inline script but the nonced hydration code, and WebAssembly compilation
/// (`wasm-unsafe-eval`, which is not `unsafe-eval`: no `eval()` of strings). Framing is refused.
pub fn apply_page_policy() {
    provide_nonce();
    let Some(options) = use_context::<leptos_axum::ResponseOptions>() else {
        return;
    };
    let nonce = use_nonce()
        .map(|n| format!(" 'nonce-{n}'"))
        .unwrap_or_default();
    let storage = use_context::<AppState>()
        .and_then(|state| state.settings.storage_origin)
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{nonce}; \
         style-src 'self'; img-src 'self' data: blob:{storage}; \
         connect-src 'self'{storage}; object-src 'none'; base-uri 'self'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        options.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
    // A page is made for one request (its nonce, and the signed-in user's data): never stored,
    // so the back button after signing out, or a shared proxy, cannot show it to someone else.
    options.insert_header(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
}
