//! Small pieces shared by the pages.

use leptos::prelude::*;

/// A round avatar: the picture when there is one, else the initials. Either way it is an image
/// named "Profile picture of {name}" for assistive technology.
#[component]
pub fn Avatar(
    name: String,
    initials: String,
    picture_url: Option<String>,
    /// "lg" on the profile page, "md" in lists.
    #[prop(default = "md")]
    size: &'static str,
) -> impl IntoView {
    let label = format!("Profile picture of {name}");
    let class = format!("avatar avatar-{size}");
    match picture_url {
        Some(url) => view! { <img class=class src=url alt=label /> }.into_any(),
        None => view! {
            <span class=format!("{class} avatar-initials") role="img" aria-label=label>
                {initials}
            </span>
        }
        .into_any(),
    }
}
