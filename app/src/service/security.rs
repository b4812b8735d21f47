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
/// Under `cargo leptos watch` pages may also open the reload websocket (see [`page_host`]).
pub fn apply_page_policy() {
    provide_nonce();
    let Some(options) = use_context::<leptos_axum::ResponseOptions>() else {
        return;
    };
    let nonce = use_nonce()
        .map(|n| format!(" 'nonce-{n}'"))
        .unwrap_or_default();
    let settings = use_context::<AppState>().map(|state| state.settings);
    let storage = settings
        .as_ref()
        .and_then(|settings| settings.storage_origin.as_ref())
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    let live_reload = settings
        .and_then(|settings| settings.live_reload_port)
        .zip(page_host())
        .map(|(port, host)| format!(" ws://{host}:{port} wss://{host}:{port}"))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{nonce}; \
         style-src 'self'; img-src 'self' data: blob:{storage}; \
         connect-src 'self'{storage}{live_reload}; object-src 'none'; base-uri 'self'; \
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

/// The host the browser asked for (the `Host` header, without its port): where the watch loop's
/// reload script connects, on a port of its own, which `'self'` does not cover.
fn page_host() -> Option<String> {
    let parts = use_context::<http::request::Parts>()?;
    let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    // A host name or an IP address, nothing that could end the directive.
    let host = authority.host();
    host.chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        .then(|| host.to_owned())
}
