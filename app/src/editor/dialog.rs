//! The "Edit & Adjust Profile Image" dialog: a circular preview drawn by the Rust transform, with
//! drag, wheel, keyboard, sliders and buttons all editing one `Crop`.

use std::sync::Arc;

use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::{Clamped, JsCast};

use super::transform::{Crop, MAX_ZOOM, MIN_ZOOM};
use super::Photo;

/// Pixels of the preview canvas (it is scaled by CSS to fit small screens).
pub const PREVIEW_SIZE: u32 = 320;
/// Pixels of the small preview beside it: the people list's 44 CSS px avatar at a 2× display, so the
/// person sees how the picture will really look where it is seen most.
const AVATAR_PREVIEW_SIZE: u32 = 88;
/// Keyboard steps: arrows pan this many preview pixels (Shift for ten times as far).
const PAN_STEP: f32 = 4.0;
const ZOOM_STEP: f32 = 0.1;
const ROTATE_STEP: f32 = 1.0;

#[component]
pub fn ImageEditor(
    photo: Arc<Photo>,
    /// The label of the step under way while saving, e.g. "Uploading…".
    #[prop(into)]
    busy: Signal<Option<String>>,
    /// What went wrong with the last save.
    #[prop(into)]
    error: Signal<Option<String>>,
    #[prop(into)] on_cancel: Callback<()>,
    #[prop(into)] on_save: Callback<Crop>,
) -> impl IntoView {
    let (width, height) = photo.dimensions();
    let crop = RwSignal::new(Crop::default().clamped(width, height));
    let set_crop =
        move |f: &dyn Fn(Crop) -> Crop| crop.update(|c| *c = f(*c).clamped(width, height));
    let canvas = NodeRef::<html::Canvas>::new();
    let avatar_canvas = NodeRef::<html::Canvas>::new();

    // Repaint whenever the crop changes; rendering from a small level of the photo keeps this to
    // a few milliseconds (the avatar-sized one adds a fraction of that).
    let preview_photo = photo.clone();
    Effect::new(move |_| {
        let crop = crop.get();
        if let (Some(canvas), Some(avatar)) = (canvas.get(), avatar_canvas.get()) {
            draw(&canvas, &avatar, &preview_photo, crop);
        }
    });

    // Pointers down on the preview, with their last positions: one pans, two pinch-zoom.
    let pointers = StoredValue::new(Vec::<(i32, f64, f64)>::new());
    let view_size = move || {
        canvas
            .get_untracked()
            .map(|c| c.get_bounding_client_rect().width() as f32)
            .unwrap_or(PREVIEW_SIZE as f32)
    };
    let on_pointer_down = move |ev: web_sys::PointerEvent| {
        if let Some(canvas) = canvas.get_untracked() {
            let _ = canvas.set_pointer_capture(ev.pointer_id());
        }
        let down = (ev.pointer_id(), ev.client_x() as f64, ev.client_y() as f64);
        pointers.update_value(|p| p.push(down));
    };
    let on_pointer_move = move |ev: web_sys::PointerEvent| {
        let (id, x, y) = (ev.pointer_id(), ev.client_x() as f64, ev.client_y() as f64);
        let mut down = pointers.get_value();
        let Some(i) = down.iter().position(|p| p.0 == id) else {
            return;
        };
        let spread = |p: &[(i32, f64, f64)]| (p[0].1 - p[1].1).hypot(p[0].2 - p[1].2);
        let spread_before = (down.len() >= 2).then(|| spread(&down));
        let (dx, dy) = (x - down[i].1, y - down[i].2);
        down[i] = (id, x, y);
        let spread_after = (down.len() >= 2).then(|| spread(&down));
        pointers.set_value(down);
        match (spread_before, spread_after) {
            (None, _) => {
                let size = view_size();
                set_crop(&|c| c.dragged(dx as f32, dy as f32, size, width, height));
            }
            // Pinch: the zoom follows the distance between the two fingers.
            (Some(before), Some(after)) if before > 0.0 => {
                let ratio = (after / before) as f32;
                set_crop(&|c| Crop {
                    zoom: c.zoom * ratio,
                    ..c
                });
            }
            _ => {}
        }
    };
    let on_pointer_up = move |ev: web_sys::PointerEvent| {
        let id = ev.pointer_id();
        pointers.update_value(|p| p.retain(|q| q.0 != id));
    };
    let on_wheel = move |ev: web_sys::WheelEvent| {
        ev.prevent_default();
        let factor = (-ev.delta_y() as f32 * 0.002).exp();
        set_crop(&|c| Crop {
            zoom: c.zoom * factor,
            ..c
        });
    };
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let pan = if ev.shift_key() {
            PAN_STEP * 10.0
        } else {
            PAN_STEP
        };
        let size = view_size();
        let change: Option<Box<dyn Fn(Crop) -> Crop>> = match ev.key().as_str() {
            // Arrow keys move the photo the way the arrow points, like dragging it.
            "ArrowLeft" => Some(Box::new(move |c| c.dragged(-pan, 0.0, size, width, height))),
            "ArrowRight" => Some(Box::new(move |c| c.dragged(pan, 0.0, size, width, height))),
            "ArrowUp" => Some(Box::new(move |c| c.dragged(0.0, -pan, size, width, height))),
            "ArrowDown" => Some(Box::new(move |c| c.dragged(0.0, pan, size, width, height))),
            "+" | "=" => Some(Box::new(|c| Crop {
                zoom: c.zoom + ZOOM_STEP,
                ..c
            })),
            "-" | "_" => Some(Box::new(|c| Crop {
                zoom: c.zoom - ZOOM_STEP,
                ..c
            })),
            "]" => Some(Box::new(|c| rotate_by(c, ROTATE_STEP))),
            "[" => Some(Box::new(|c| rotate_by(c, -ROTATE_STEP))),
            "f" | "F" => Some(Box::new(Crop::flipped)),
            _ => None,
        };
        if let Some(change) = change {
            ev.prevent_default();
            set_crop(&*change);
        }
    };
    let dialog = NodeRef::<html::Div>::new();
    // Opening the dialog moves focus into it, onto the preview the keyboard edits.
    Effect::new(move |_| {
        if let Some(canvas) = canvas.get() {
            let _ = canvas.focus();
        }
    });
    let on_dialog_key = move |ev: web_sys::KeyboardEvent| match ev.key().as_str() {
        "Escape" if busy.get_untracked().is_none() => {
            ev.prevent_default();
            on_cancel.run(());
        }
        // A modal keeps focus inside: Tab from the last control wraps to the first, and
        // Shift+Tab from the first to the last.
        "Tab" => {
            if let Some(dialog) = dialog.get_untracked() {
                trap_focus(&dialog, &ev);
            }
        }
        _ => {}
    };

    let announcement = move || {
        let c = crop.get();
        format!(
            "Zoom {:.0}%, rotated {:.0}°{}",
            c.zoom * 100.0,
            c.rotation_deg,
            if c.mirrored { ", mirrored" } else { "" }
        )
    };
    let is_busy = move || busy.get().is_some();

    view! {
        <div class="dialog-backdrop">
            <div
                node_ref=dialog
                class="dialog"
                role="dialog"
                aria-modal="true"
                aria-labelledby="editor-title"
                on:keydown=on_dialog_key
            >
                <h2 id="editor-title">"Edit & Adjust Profile Image"</h2>
                <div class="crop-stage">
                    <canvas
                        node_ref=canvas
                        class="crop-canvas"
                        width=PREVIEW_SIZE
                        height=PREVIEW_SIZE
                        tabindex="0"
                        aria-label="Crop preview"
                        aria-describedby="crop-help"
                        on:pointerdown=on_pointer_down
                        on:pointermove=on_pointer_move
                        on:pointerup=on_pointer_up
                        on:pointercancel=on_pointer_up
                        on:wheel=on_wheel
                        on:keydown=on_key
                    ></canvas>
                    <div class="crop-ring" aria-hidden="true"></div>
                </div>
                <p id="crop-help" class="hint">
                    "Drag to move, scroll or pinch to zoom. Keyboard: arrows move, + and − zoom, [ and ] rotate, F flips."
                </p>
                <figure class="avatar-preview">
                    <canvas
                        node_ref=avatar_canvas
                        width=AVATAR_PREVIEW_SIZE
                        height=AVATAR_PREVIEW_SIZE
                        role="img"
                        aria-label="How your picture will look in lists"
                    ></canvas>
                    <figcaption>"In lists"</figcaption>
                </figure>
                <p class="visually-hidden" aria-live="polite">{announcement}</p>
                <div class="editor-controls">
                    <label for="zoom">"Zoom"</label>
                    <input
                        id="zoom"
                        type="range"
                        min=MIN_ZOOM
                        max=MAX_ZOOM
                        step="0.01"
                        prop:value=move || crop.get().zoom.to_string()
                        on:input=move |ev| {
                            let zoom = event_target_value(&ev).parse().unwrap_or(1.0);
                            set_crop(&|c| Crop { zoom, ..c });
                        }
                    />
                    <label for="rotate">"Rotate"</label>
                    <input
                        id="rotate"
                        type="range"
                        min="-180"
                        max="180"
                        step="1"
                        prop:value=move || crop.get().rotation_deg.to_string()
                        on:input=move |ev| {
                            let rotation_deg = event_target_value(&ev).parse().unwrap_or(0.0);
                            set_crop(&|c| Crop { rotation_deg, ..c });
                        }
                    />
                </div>
                <div class="editor-quick">
                    <button type="button" class="ghost" on:click=move |_| set_crop(&|c| rotate_by(c, -90.0))>
                        "Rotate left"
                    </button>
                    <button type="button" class="ghost" on:click=move |_| set_crop(&|c| rotate_by(c, 90.0))>
                        "Rotate right"
                    </button>
                    <button
                        type="button"
                        class="ghost"
                        aria-pressed=move || crop.get().mirrored.to_string()
                        on:click=move |_| set_crop(&Crop::flipped)
                    >
                        "Flip"
                    </button>
                    <button type="button" class="ghost" on:click=move |_| set_crop(&|_| Crop::default())>
                        "Reset"
                    </button>
                </div>
                {move || {
                    busy.get()
                        .map(|step| {
                            view! {
                                <div class="progress">
                                    <progress aria-label="Saving picture"></progress>
                                    <span>{step}</span>
                                </div>
                            }
                        })
                }}
                {move || error.get().map(|message| view! { <p class="alert" role="alert">{message}</p> })}
                <div class="dialog-actions">
                    <button type="button" class="secondary" disabled=is_busy on:click=move |_| on_cancel.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="button"
                        class="primary"
                        disabled=is_busy
                        on:click=move |_| on_save.run(crop.get_untracked())
                    >
                        "Save"
                    </button>
                </div>
            </div>
        </div>
    }
}

/// Wraps Tab focus around the dialog's enabled controls.
fn trap_focus(dialog: &web_sys::HtmlDivElement, ev: &web_sys::KeyboardEvent) {
    let Ok(controls) = dialog.query_selector_all("button:not([disabled]), input, canvas[tabindex]")
    else {
        return;
    };
    let (Some(first), Some(last)) = (
        controls.get(0),
        controls
            .length()
            .checked_sub(1)
            .and_then(|i| controls.get(i)),
    ) else {
        return;
    };
    let active = document().active_element();
    let at = |node: &web_sys::Node| active.as_ref().is_some_and(|a| a.is_same_node(Some(node)));
    let target = if ev.shift_key() && at(&first) {
        last
    } else if !ev.shift_key() && at(&last) {
        first
    } else {
        return;
    };
    if let Ok(element) = target.dyn_into::<web_sys::HtmlElement>() {
        ev.prevent_default();
        let _ = element.focus();
    }
}

/// Rotates, wrapping around so that ±180 stay reachable from either side.
fn rotate_by(c: Crop, degrees: f32) -> Crop {
    let mut rotation = c.rotation_deg + degrees;
    if rotation > 180.0 {
        rotation -= 360.0;
    } else if rotation < -180.0 {
        rotation += 360.0;
    }
    Crop {
        rotation_deg: rotation,
        ..c
    }
}

/// Paints the previews. Each repaint is a User Timing measure named `portrait-preview` (visible
/// in the browser's performance panel; `cargo xtask bench-editor` reads them).
fn draw(
    canvas: &web_sys::HtmlCanvasElement,
    avatar: &web_sys::HtmlCanvasElement,
    photo: &Photo,
    crop: Crop,
) {
    let performance = window().performance();
    if let Some(performance) = &performance {
        let _ = performance.mark(PREVIEW_MARK);
    }
    paint(canvas, photo, crop, PREVIEW_SIZE);
    paint(avatar, photo, crop, AVATAR_PREVIEW_SIZE);
    if let Some(performance) = &performance {
        // Only the latest is kept in the timeline (observers still see every one), so a long
        // editing session does not pile up entries.
        performance.clear_measures_with_measure_name(PREVIEW_MEASURE);
        let _ = performance.measure_with_start_mark(PREVIEW_MEASURE, PREVIEW_MARK);
    }
}

const PREVIEW_MARK: &str = "portrait-preview-start";
const PREVIEW_MEASURE: &str = "portrait-preview";

fn paint(canvas: &web_sys::HtmlCanvasElement, photo: &Photo, crop: Crop, size: u32) {
    let picture = photo.preview(crop, size);
    // Opaque RGBA for the canvas: the alpha bytes are set once, the colours copied in.
    let mut rgba = vec![255u8; (size * size * 4) as usize];
    for (to, from) in rgba
        .chunks_exact_mut(4)
        .zip(picture.as_raw().chunks_exact(3))
    {
        // Byte by byte: a three-byte `copy_from_slice` is a memcpy call at opt-level "z".
        to[0] = from[0];
        to[1] = from[1];
        to[2] = from[2];
    }
    let context = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok());
    let data = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), size, size);
    if let (Some(context), Ok(data)) = (context, data) {
        let _ = context.put_image_data(&data, 0.0, 0.0);
    }
}
