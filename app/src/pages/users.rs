use leptos::prelude::*;

use super::load_error;
use crate::components::Avatar;
use crate::server_fns::list_users;

#[component]
pub fn UsersPage() -> impl IntoView {
    let users = Resource::new(|| (), |_| list_users());
    view! {
        <section class="card">
            <h1>"People"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading people…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(users) => view! {
                            <ul class="user-list">
                                {users
                                    .into_iter()
                                    .map(|u| view! {
                                        <li class="user-row">
                                            <Avatar name=u.name.clone() initials=u.initials picture_url=u.picture_url />
                                            <span class="user-name">{u.name}</span>
                                        </li>
                                    })
                                    .collect_view()}
                            </ul>
                        }
                        .into_any(),
                        Err(e) => load_error(e),
                    }
                })}
            </Suspense>
        </section>
    }
}
