//! `cargo xtask bench-editor`: the picture editor's Save job, natively and in the browser.
//!
//! First `cargo bench -p app --bench editor` (the pipeline in native code), then a release
//! build served as `cargo xtask bench` serves it, and the Playwright benchmark in
//! `end2end/bench/` against it in headless Chromium: our WASM pipeline through the real UI,
//! Chromium's canvas pipeline on the same photos, and the first load's transfer size.
//! Figures are printed; the README quotes them. Nothing here asserts a timing.

use std::path::Path;

use crate::bench::{cores, cpu_model, Server, Site, ADDR};
use crate::{build_release, Needs, Result, StatusOk, Tools};

pub fn run(root: &Path) -> Result {
    let tools = Tools::ensure(root, Needs::Everything)?;
    println!("machine: {} cores, {}", cores(), cpu_model());
    tools
        .cmd("cargo", &["bench", "-p", "app", "--bench", "editor"])
        .status_ok()?;

    build_release(root)?;
    let data = root.join("target/bench-editor-data");
    let _ = std::fs::remove_dir_all(&data);
    let server = Server::start(root, &data, None, Site::Release, &[])?;
    let browser = tools
        .browser_bench("editor.bench", &format!("http://{ADDR}"))
        .status_ok();
    server.stop();
    browser
}
