use std::sync::Arc;

use leptos::html;
use leptos::prelude::*;
use leptos::task::{spawn_local, spawn_local_scoped_with_cancellation};
use wasm_bindgen::JsCast;

use super::load_error;
use crate::api::Profile;
use crate::components::Avatar;
use crate::editor::transform::Crop;
use crate::editor::{self, after_paint, open, Photo};
use crate::server_fns::{delete_picture, get_profile};
use crate::upload::upload_picture;

#[component]
pub fn ProfilePage() -> impl IntoView {
    let profile = Resource::new(|| (), |_| get_profile());
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading your profile…"</p> }>
            {move || Suspend::new(async move {
                match profile.await {
                    Ok(profile) => view! { <ProfileCard profile /> }.into_any(),
                    Err(e) => load_error(e),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ProfileCard(profile: Profile) -> impl IntoView {
    let profile = RwSignal::new(profile);
    // The photo being edited; Some while the dialog is open.
    let photo = RwSignal::new(None::<Arc<Photo>>);
    let busy = RwSignal::new(None::<String>);
    let save_error = RwSignal::new(None::<String>);
    let page_error = RwSignal::new(None::<String>);
    // True between choosing a file and the editor (or an error) appearing.
    let opening = RwSignal::new(false);
    let file_input = NodeRef::<html::Input>::new();
    let camera_input = NodeRef::<html::Input>::new();
    let pencil = NodeRef::<html::Button>::new();

    // The card's owner: work it starts that is pointless once the card is gone (a photo still
    // opening when the person navigates away) is cancelled with it.
    let owner = StoredValue::new(Owner::current().expect("a component runs under an owner"));

    let close_editor = move || {
        save_error.set(None);
        photo.set(None);
        // Give focus back to where the user started. (`try_`: a Save may finish after the
        // person has left the page, and the card with it.)
        if let Some(Some(pencil)) = pencil.try_get_untracked() {
            let _ = pencil.focus();
        }
    };

    // Every way a photo comes in (the file chooser, the camera, a drop, a paste) ends here.
    let open_photo = move |file: web_sys::File| {
        page_error.set(None);
        opening.set(true);
        let task = async move {
            let opened = open(&file).await;
            opening.set(false);
            match opened {
                Ok(decoded) => photo.set(Some(decoded)),
                Err(message) => page_error.set(Some(message)),
            }
        };
        owner.with_value(|owner| owner.with(|| spawn_local_scoped_with_cancellation(task)));
    };
    let on_file_chosen = move |ev: web_sys::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        // Clear the input so that choosing the same file again still fires `change`.
        input.set_value("");
        open_photo(file);
    };
    // Ignored while the editor is open or a photo is opening: one photo at a time.
    let can_take_photo = move || photo.get_untracked().is_none() && !opening.get_untracked();
    let dragging = RwSignal::new(false);
    let on_drag_over = move |ev: web_sys::DragEvent| {
        if carries_files(ev.data_transfer()) && can_take_photo() {
            // Without this the browser would open the photo itself instead of dropping it here.
            ev.prevent_default();
            dragging.set(true);
        }
    };
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = first_image(ev.data_transfer()).filter(|_| can_take_photo()) {
            editor::preload();
            open_photo(file);
        }
    };
    // Pasting an image (Ctrl/Cmd+V) anywhere on the profile page; text pastes are left alone.
    let paste = window_event_listener(leptos::ev::paste, move |ev| {
        if let Some(file) = first_image(ev.clipboard_data()).filter(|_| can_take_photo()) {
            ev.prevent_default();
            editor::preload();
            open_photo(file);
        }
    });
    on_cleanup(move || paste.remove());

    let on_save = move |crop: Crop| {
        let Some(current) = photo.get_untracked() else {
            return;
        };
        save_error.set(None);
        busy.set(Some("Preparing your picture…".into()));
        // Not cancelled with the card: a Save the person started completes even if they leave
        // the page meanwhile (what it touches afterwards tolerates a disposed card).
        spawn_local(async move {
            // Zoomed in deeply, the export decodes the photo again: show the step first. (Any
            // other export takes milliseconds; waiting for a paint would only add a frame.)
            if current.export_decodes(crop) {
                after_paint().await;
            }
            let result = match editor::export(current, crop).await {
                Ok(exported) => upload_picture(exported, |step| busy.set(Some(step.into()))).await,
                Err(message) => Err(message),
            };
            busy.set(None);
            match result {
                Ok(saved) => {
                    profile.set(saved.profile);
                    close_editor();
                }
                Err(message) => save_error.set(Some(message)),
            }
        });
    };

    let on_remove = move |_| {
        let confirmed = window()
            .confirm_with_message("Remove your profile picture?")
            .unwrap_or(false);
        if !confirmed {
            return;
        }
        page_error.set(None);
        spawn_local(async move {
            match delete_picture().await {
                Ok(removed) => profile.set(removed.profile),
                Err(e) => page_error.set(Some(e.message)),
            }
        });
    };

    // The dialog's inputs are made once, here, so that they live as long as the card. Made in
    // the closure that shows the dialog, they would be disposed when it closes while the
    // dialog's own effects still read them, and that panicked the WASM on Cancel and Save.
    let dialog_busy = Signal::from(busy);
    let dialog_error = Signal::from(save_error);
    let on_cancel = Callback::new(move |_| close_editor());
    let on_save = Callback::new(on_save);

    let field = |label: &'static str, value: String| {
        view! {
            <div class="field">
                <dt>{label}</dt>
                <dd>{value}</dd>
            </div>
        }
    };

    view! {
        <section
            class="card profile-card"
            class:drop-target=move || dragging.get()
            on:dragover=on_drag_over
            on:dragleave=move |_| dragging.set(false)
            on:drop=on_drop
        >
            <div class="avatar-wrap">
                {move || {
                    let p = profile.get();
                    view! { <Avatar name=p.name initials=p.initials picture_url=p.picture_url size="lg" /> }
                }}
                <button
                    node_ref=pencil
                    type="button"
                    class="avatar-edit"
                    aria-label="Change profile picture"
                    on:click=move |_| {
                        if let Some(input) = file_input.get_untracked() {
                            input.click();
                        }
                        // Fetch the editor's code while the person is still choosing a file.
                        editor::preload();
                    }
                >
                    <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
                        <path
                            fill="currentColor"
                            d="M3 17.25V21h3.75L17.81 9.94l-3.75-3.75L3 17.25zM20.71 7.04a1 1 0 0 0 0-1.41l-2.34-2.34a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75 1.83-1.83z"
                        />
                    </svg>
                </button>
                <input
                    node_ref=file_input
                    type="file"
                    accept="image/*"
                    class="visually-hidden"
                    tabindex="-1"
                    aria-hidden="true"
                    on:change=on_file_chosen
                />
                // Phones open the front camera straight away for this one.
                <input
                    node_ref=camera_input
                    type="file"
                    accept="image/*"
                    capture="user"
                    class="visually-hidden"
                    tabindex="-1"
                    aria-hidden="true"
                    data-testid="camera-input"
                    on:change=on_file_chosen
                />
            </div>
            <button
                type="button"
                class="link-button camera-button"
                on:click=move |_| {
                    if let Some(input) = camera_input.get_untracked() {
                        input.click();
                    }
                    editor::preload();
                }
            >
                "Take a photo"
            </button>
            <p class="hint">"Or drop a photo here, or paste one."</p>
            <h1 class="profile-name">{move || profile.get().name}</h1>
            <Show when=move || profile.get().picture_url.is_some()>
                <button type="button" class="link-button" on:click=on_remove>
                    "Remove picture"
                </button>
            </Show>
            <Show when=move || opening.get()>
                <p class="muted" role="status">"Opening your photo…"</p>
            </Show>
            {move || page_error.get().map(|message| view! { <p class="alert" role="alert">{message}</p> })}
            <div class="tabs" role="tablist" aria-label="Profile sections">
                <button
                    type="button"
                    role="tab"
                    id="tab-personal"
                    aria-selected="true"
                    aria-controls="panel-personal"
                >
                    "Personal Info"
                </button>
            </div>
            <div role="tabpanel" id="panel-personal" aria-labelledby="tab-personal">
                {move || {
                    let p = profile.get();
                    view! {
                        <dl class="fields">
                            {field("Email", p.email)}
                            {field("Phone", p.phone.unwrap_or_else(|| "—".into()))}
                            {field("Role", p.role)}
                            {field("Status", p.status)}
                            {field("Joined", p.joined_at)}
                        </dl>
                    }
                }}
            </div>
        </section>
        {move || {
            photo.get().map(|photo| {
                let dialog = editor::dialog(photo, dialog_busy, dialog_error, on_cancel, on_save);
                // Loaded already by the decode that made `photo`, so this resolves at once; its
                // own Suspense keeps the page's from ever showing its fallback over the profile.
                view! { <Suspense>{Suspend::new(dialog)}</Suspense> }
            })
        }}
    }
}

/// Whether a drag carries files (a photo from the desktop or another page), not text or a link.
fn carries_files(transfer: Option<web_sys::DataTransfer>) -> bool {
    transfer.is_some_and(|t| t.types().includes(&"Files".into(), 0))
}

/// The first image among the files of a drop or a paste.
fn first_image(transfer: Option<web_sys::DataTransfer>) -> Option<web_sys::File> {
    let files = transfer?.files()?;
    (0..files.length())
        .filter_map(|i| files.get(i))
        .find(|file| file.type_().starts_with("image/"))
}
