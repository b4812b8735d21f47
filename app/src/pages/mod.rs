mod login;
mod profile;
mod users;

pub use login::LoginPage;
pub use profile::ProfilePage;
pub use users::UsersPage;

use leptos::prelude::*;
use leptos_router::components::Redirect;

use crate::error::ApiError;

/// What a page shows when its data failed to load: the sign-in page for a missing session,
/// else the message.
pub(crate) fn load_error(error: ApiError) -> AnyView {
    if error.is_unauthenticated() {
        view! { <Redirect path="/login" /> }.into_any()
    } else {
        view! { <p class="alert" role="alert">{error.message}</p> }.into_any()
    }
}
