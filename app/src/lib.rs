//! Portrait: the isomorphic part of the app (pages, components, API types, server functions).
//! With `ssr` it also holds the use cases behind the server functions (`service`).

pub mod api;
mod components;
pub mod domain;
pub mod editor;
pub mod error;
mod pages;
pub mod server_fns;
mod session;
mod upload;

#[cfg(feature = "ssr")]
pub mod service;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Redirect, Route, Router, Routes, A};
use leptos_router::hooks::use_location;
use leptos_router::{SsrMode, StaticSegment};

use pages::{LoginPage, ProfilePage, UsersPage};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    service::apply_page_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // End-to-end tests wait for this before they interact: before hydration, clicks do nothing.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
        session::keep_alive();
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/portrait.css" />
        <Title text="Portrait" />
        <Router>
            <TopBar />
            <main>
                // Async SSR: the page is rendered only once its data is loaded, so that a missing
                // session can still become a real 302 to /login (a streamed page has already
                // sent its 200). The pages are small; nothing is gained by streaming them.
                <Routes fallback=|| view! { <p class="card">"Page not found."</p> }>
                    <Route
                        path=StaticSegment("")
                        view=|| view! { <Redirect path="/profile" /> }
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::Async />
                    <Route path=StaticSegment("profile") view=ProfilePage ssr=SsrMode::Async />
                    <Route path=StaticSegment("users") view=UsersPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}

/// The brand, and the navigation once there is somewhere to go (not on the sign-in page).
#[component]
fn TopBar() -> impl IntoView {
    let location = use_location();
    let signed_in_page = move || location.pathname.get() != "/login";
    view! {
        <header class="topbar">
            <A href="/profile" attr:class="brand">
                "Portrait"
            </A>
            <Show when=signed_in_page>
                <nav aria-label="Main">
                    <A href="/profile">"Profile"</A>
                    <A href="/users">"People"</A>
                    <button type="button" class="link-button" on:click=|_| sign_out()>
                        "Sign out"
                    </button>
                </nav>
            </Show>
        </header>
    }
}

/// Ends the session and reloads the sign-in page, dropping any state the app held.
fn sign_out() {
    spawn_local(async {
        let _ = server_fns::logout(crate::api::RefreshRequest::default()).await;
        session::ended();
        let _ = window().location().set_href("/login");
    });
}
