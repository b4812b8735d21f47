//! `cargo xtask bench-reload`: edit → reload in `cargo leptos watch`, measured in a browser.
//!
//! Starts `cargo leptos watch` as a developer types it (no flags; on free ports and a fresh data
//! directory, so that it disturbs nothing else), waits for its first build, then runs
//! `end2end/bench/reload.bench.ts`: a few times over, it changes a text of the sign-in page's
//! component and times until the open page has reloaded itself with the new text and hydrated.
//! The file is restored afterwards. Figures are printed; nothing asserts a timing.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::services::{free_ports, http};
use crate::{Needs, Result, StatusOk, Tools};

/// The component edited, and a text of it that /login shows.
const FILE: &str = "app/src/pages/login.rs";
const TEXT: &str = "Your profile, your picture.";
/// The first build of a fresh checkout takes minutes; later ones are incremental.
const FIRST_BUILD: Duration = Duration::from_secs(20 * 60);

pub fn run(root: &Path) -> Result {
    let tools = Tools::ensure(root, Needs::Everything)?;
    let [site, reload] = free_ports::<2>()?;
    let site = format!("127.0.0.1:{site}");
    let data = root.join("target/bench-reload-data");
    let _ = std::fs::remove_dir_all(&data);
    let log_path = root.join("target/bench-reload-watch.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    println!(
        "starting cargo leptos watch on {site} (its output: {})",
        log_path.display()
    );
    let child = tools
        .cmd("cargo", &["leptos", "watch"])
        .env("LEPTOS_SITE_ADDR", &site)
        .env("LEPTOS_RELOAD_PORT", reload.to_string())
        .env("PORTRAIT_DATA_DIR", &data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        // Its own process group: cargo-leptos runs cargo and the server as its children, and
        // all of them are stopped together.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cargo leptos watch: {e}"))?;
    let watch = Watch(child);

    let started = Instant::now();
    while http(&site, "GET", "/readyz", &[], "").map(|r| r.0) != Ok(200) {
        if started.elapsed() > FIRST_BUILD {
            return Err(format!(
                "the watch loop served nothing after {FIRST_BUILD:?}; see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("first build served after {:.0?}", started.elapsed());

    let result = tools
        .browser_bench("reload.bench", &format!("http://{site}"))
        .env("PORTRAIT_RELOAD_FILE", root.join(FILE))
        .env("PORTRAIT_RELOAD_TEXT", TEXT)
        .status_ok();
    drop(watch);
    result
}

/// The watch loop's process group, interrupted as Ctrl-C would, killed if it lingers.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let signal = |name: &str| {
            let _ = std::process::Command::new("kill")
                .args([name, "--", &group])
                .status();
        };
        signal("-INT");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                // The children may outlive cargo-leptos by a moment.
                signal("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-KILL");
        let _ = self.0.wait();
    }
}
