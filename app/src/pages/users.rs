use std::time::Duration;

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;

use super::load_error;
use crate::api::{DirectoryPage, UserSummary};
use crate::components::Avatar;
use crate::server_fns::{remove_users_picture, user_directory};

/// How long typing pauses before the search runs: one request per pause, not per key.
const SEARCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// The directory: a search (in the URL as `?q=`, so a reload or a shared link keeps it), a
/// page of people at a time, and for administrators the removal of someone's picture.
#[component]
pub fn UsersPage() -> impl IntoView {
    let query = use_query_map();
    let search = Memo::new(move |_| query.read().get("q").unwrap_or_default());
    let first_page = Resource::new(move || search.get(), |q| user_directory(None, Some(q)));
    view! {
        <section class="card">
            <h1>"People"</h1>
            <SearchBox search />
            // Transition, not Suspense: while a new search loads, the old results stay.
            <Transition fallback=|| view! { <p class="muted">"Loading people…"</p> }>
                {move || Suspend::new(async move {
                    match first_page.await {
                        Ok(page) => view! { <Directory page search=search.get_untracked() /> }
                            .into_any(),
                        Err(e) => load_error(e),
                    }
                })}
            </Transition>
        </section>
    }
}

/// `/users`, with the search when there is one. Kept as typed (the server trims it): the
/// box shows what the URL holds, and a trimmed copy would eat the space being typed.
fn search_url(q: &str) -> String {
    if q.trim().is_empty() {
        "/users".into()
    } else {
        format!("/users?q={}", crate::domain::percent_encode(q))
    }
}

/// A real GET form, so the search works before the page hydrates; once it has, typing
/// searches after a pause, and Enter at once.
#[component]
fn SearchBox(search: Memo<String>) -> impl IntoView {
    let navigate = use_navigate();
    let pending = StoredValue::new(None::<TimeoutHandle>);
    let input = NodeRef::<html::Input>::new();
    let go = move |q: String| {
        if let Some(timer) = pending.get_value() {
            timer.clear();
        }
        // Replace, not push: every pause in the typing is not a step worth going back to.
        let options = NavigateOptions {
            replace: true,
            ..Default::default()
        };
        navigate(&search_url(&q), options);
    };
    let on_input = {
        let go = go.clone();
        move |ev: leptos::ev::Event| {
            let q = event_target_value(&ev);
            if let Some(timer) = pending.get_value() {
                timer.clear();
            }
            let go = go.clone();
            pending.set_value(set_timeout_with_handle(move || go(q), SEARCH_DEBOUNCE).ok());
        }
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(input) = input.get_untracked() {
            go(input.value());
        }
    };
    on_cleanup(move || {
        if let Some(timer) = pending.get_value() {
            timer.clear();
        }
    });
    view! {
        <form class="search" role="search" action="/users" method="get" on:submit=on_submit>
            <label for="people-search" class="visually-hidden">
                "Search people"
            </label>
            <input
                id="people-search"
                node_ref=input
                type="search"
                name="q"
                placeholder="Search by name or email"
                autocomplete="off"
                value=search.get_untracked()
                prop:value=move || search.get()
                on:input=on_input
            />
            <button type="submit" class="secondary">
                "Search"
            </button>
        </form>
    }
}

/// The people found so far, "Show more" while there are more, and the removal dialog.
#[component]
fn Directory(page: DirectoryPage, search: String) -> impl IntoView {
    let rows = RwSignal::new(page.users);
    let next = RwSignal::new(page.next_cursor);
    let loading = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    // The person whose picture the dialog is about to remove.
    let target = RwSignal::new(None::<UserSummary>);
    let dialog = NodeRef::<html::Dialog>::new();
    let (you, admin) = (page.you, page.admin);

    let search_for_more = search.clone();
    let show_more = move |_| {
        let Some(cursor) = next.get_untracked() else {
            return;
        };
        let q = search_for_more.clone();
        loading.set(true);
        error.set(None);
        spawn_local(async move {
            match user_directory(Some(cursor), Some(q)).await {
                Ok(page) => {
                    rows.update(|rows| rows.extend(page.users));
                    next.set(page.next_cursor);
                }
                Err(e) => error.set(Some(e.message)),
            }
            loading.set(false);
        });
    };

    let ask_to_remove = move |user: UserSummary| {
        target.set(Some(user));
        if let Some(dialog) = dialog.get_untracked() {
            // Modal: the rest of the page is inert, focus moves into the dialog, Escape
            // closes it and focus goes back to the button that opened it.
            let _ = dialog.show_modal();
        }
    };
    // Also called when a removal answers, which may be after the page was left: `try_` then
    // finds nothing to close instead of panicking on a disposed node.
    let close_dialog = move || {
        if let Some(dialog) = dialog.try_get_untracked().flatten() {
            dialog.close();
        }
    };
    let removing = RwSignal::new(false);
    let dialog_error = RwSignal::new(None::<String>);
    let confirm_removal = move |_| {
        let Some(user) = target.get_untracked() else {
            return;
        };
        removing.set(true);
        dialog_error.set(None);
        spawn_local(async move {
            match remove_users_picture(user.id.clone()).await {
                Ok(removed) => {
                    rows.update(|rows| {
                        for row in rows.iter_mut().filter(|row| row.id == removed.user.id) {
                            *row = removed.user.clone();
                        }
                    });
                    close_dialog();
                }
                Err(e) => dialog_error.set(Some(e.message)),
            }
            removing.set(false);
        });
    };

    let row = move |user: UserSummary| {
        let is_you = user.id == you;
        let removable = admin && !is_you && user.picture_url.is_some();
        let for_dialog = user.clone();
        view! {
            <li class="user-row" class:is-you=is_you>
                <Avatar name=user.name.clone() initials=user.initials picture_url=user.picture_url />
                <span class="user-name">{user.name.clone()}</span>
                {is_you.then(|| view! { <span class="badge">"You"</span> })}
                {removable
                    .then(|| {
                        view! {
                            <button
                                type="button"
                                class="ghost row-action"
                                aria-label=format!("Remove picture of {}", user.name)
                                on:click=move |_| ask_to_remove(for_dialog.clone())
                            >
                                "Remove picture"
                            </button>
                        }
                    })}
            </li>
        }
    };

    let empty = if search.trim().is_empty() {
        "No one is here yet.".to_owned()
    } else {
        format!("No one matches “{}”.", search.trim())
    };
    view! {
        <Show
            when=move || rows.with(|rows| !rows.is_empty())
            fallback=move || view! { <p class="muted empty">{empty.clone()}</p> }
        >
            <ul class="user-list">
                // Keyed by the picture too: a row whose picture was removed is drawn anew.
                <For
                    each=move || rows.get()
                    key=|user| (user.id.clone(), user.picture_url.is_some())
                    children=row.clone()
                />
            </ul>
        </Show>
        {move || error.get().map(|message| view! { <p class="alert" role="alert">{message}</p> })}
        <Show when=move || next.with(Option::is_some)>
            <button
                type="button"
                class="secondary wide"
                disabled=move || loading.get()
                on:click=show_more.clone()
            >
                {move || if loading.get() { "Loading…" } else { "Show more" }}
            </button>
        </Show>
        <dialog
            node_ref=dialog
            class="dialog confirm-dialog"
            aria-labelledby="remove-picture-title"
            on:close=move |_| {
                target.set(None);
                dialog_error.set(None);
            }
        >
            <h2 id="remove-picture-title">"Remove this picture?"</h2>
            <p>
                {move || {
                    target
                        .with(|user| user.as_ref().map(|user| user.name.clone()))
                        .unwrap_or_default()
                }}
                "’s picture will be removed for everyone; they can upload a new one."
            </p>
            {move || {
                dialog_error.get().map(|message| view! { <p class="alert" role="alert">{message}</p> })
            }}
            <div class="dialog-actions">
                <button type="button" class="secondary" on:click=move |_| close_dialog()>
                    "Cancel"
                </button>
                <button
                    type="button"
                    class="danger"
                    disabled=move || removing.get()
                    on:click=confirm_removal
                >
                    "Remove"
                </button>
            </div>
        </dialog>
    }
}
