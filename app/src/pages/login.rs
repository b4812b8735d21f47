use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use leptos::task::spawn_local;

use crate::api::{DemoAccount, LoginRequest};
use crate::server_fns::{demo_accounts, login};
use crate::session;

#[component]
pub fn LoginPage() -> impl IntoView {
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let sign_in = Action::new(|req: &LoginRequest| login(req.clone()));
    // Loaded before the page is sent (async SSR), so it renders with the page.
    let demo = Resource::new(|| (), |_| demo_accounts());
    let navigate = use_navigate();
    Effect::new({
        let navigate = navigate.clone();
        move |_| {
            if let Some(Ok(tokens)) = sign_in.value().get() {
                session::started(tokens.expires_in);
                navigate("/profile", Default::default());
            }
        }
    });
    // Someone coming back with a live refresh cookie goes straight on, without a password.
    Effect::new(move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            if session::renew().await {
                navigate("/profile", Default::default());
            }
        });
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        sign_in.dispatch(LoginRequest {
            email: email.get_untracked(),
            password: password.get_untracked(),
        });
    };

    view! {
        <section class="card auth-card">
            <h1>"Sign in to Portrait"</h1>
            <p class="muted">"Your profile, your picture."</p>
            <form on:submit=on_submit>
                <label for="email">"Email"</label>
                <input id="email" type="email" autocomplete="username" required bind:value=email />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    type="password"
                    autocomplete="current-password"
                    required
                    bind:value=password
                />
                {move || {
                    sign_in
                        .value()
                        .get()
                        .and_then(Result::err)
                        .map(|e| view! { <p class="alert" role="alert">{e.message}</p> })
                }}
                <button type="submit" class="primary wide" disabled=move || sign_in.pending().get()>
                    "Sign in"
                </button>
            </form>
            <Suspense>
                {move || Suspend::new(async move {
                    demo.await.ok().filter(|accounts| !accounts.is_empty()).map(demo_list)
                })}
            </Suspense>
        </section>
    }
}

/// The embedded issuer's accounts, for trying the app out. There are none in production.
fn demo_list(accounts: Vec<DemoAccount>) -> impl IntoView {
    view! {
        <aside class="demo-accounts">
            <h2>"Demo accounts"</h2>
            <ul>
                {accounts
                    .into_iter()
                    .map(|account| {
                        view! {
                            <li>
                                <code>{account.email}</code>
                                {format!(" ({}), password ", account.role)}
                                <code>{account.password}</code>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </aside>
    }
}
