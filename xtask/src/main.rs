//! Project tasks, so that a fresh machine needs exactly two commands:
//!
//! - `cargo xtask run`: installs what is missing and serves the app on the embedded default.
//! - `cargo xtask test`: installs what is missing and runs every test.
//! - `cargo xtask build-release`: installs what is missing (wasm-opt too) and builds a release.
//!
//! Tools are installed once into a cache outside the checkout (`$PORTRAIT_TOOLS_DIR`, default
//! `~/.cache/portrait/tools`); nothing a test checks depends on that cache.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

mod bench;
mod editor_bench;
mod reload_bench;
mod services;

use services::{Garage, Moto, Postgres};

const CARGO_LEPTOS_VERSION: &str = "0.3.10";
/// Every `cargo leptos` build of ours passes this: the picture editor is then a WASM module of
/// its own, fetched on first use, which keeps it off the first load (`app/src/editor/lazy.rs`).
/// A build without it is correct too (the editor compiled in); `test` checks both.
pub(crate) const SPLIT: &str = "--split";

fn main() {
    let task = env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    env::set_current_dir(&root).expect("workspace root");
    let result = match task.as_str() {
        "run" => run(&root),
        "test" => test(&root),
        "build-release" => build_release(&root),
        "tools" => Tools::ensure(&root, Needs::Everything).map(|_| ()),
        "peers" => peers(&root),
        "bench" => bench::run(&root, &env::args().skip(2).collect::<Vec<_>>()),
        "bench-editor" => editor_bench::run(&root),
        "bench-reload" => reload_bench::run(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <run|test|build-release|bench [seconds] [postgres]|bench-editor|bench-reload|tools|peers>"
            );
            exit(2);
        }
    };
    if let Err(message) = result {
        eprintln!("xtask {task}: {message}");
        exit(1);
    }
}

pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// Builds the site and serves it on http://127.0.0.1:3000 with everything embedded.
fn run(root: &Path) -> Result {
    let tools = Tools::ensure(root, Needs::Build)?;
    tools.cmd("cargo", &["leptos", "serve", SPLIT]).status_ok()
}

/// The release build that is deployed: `target/release/portrait` and `target/site`. cargo-leptos
/// downloads wasm-opt when it is not on PATH, which fails offline; this puts npm's `binaryen`
/// (pinned in `end2end/package-lock.json`) first on PATH instead. Never Debian's: its wasm-opt
/// 108 makes a WASM that Chromium refuses at start-up (`WebAssembly.Table.set()`).
pub(crate) fn build_release(root: &Path) -> Result {
    let mut build = Tools::ensure(root, Needs::Release)?.cmd("cargo", &["leptos", "build"]);
    build.args(RELEASE).envs(RELEASE_ENV).status_ok()
}

/// What a release build adds to `cargo leptos build`: the editor split off, and every file
/// compressed (brotli and gzip beside it, served as they are: see `server/src/http.rs`).
const RELEASE: [&str; 3] = ["--release", SPLIT, "--precompress"];
/// ...and file names that carry their content's hash, so browsers keep them for a year. The
/// names are in `target/release/hash.txt`, which ships beside the binary; the server is run with
/// the same variable (cargo-leptos passes it on to the server it runs).
const RELEASE_ENV: [(&str, &str); 1] = [("LEPTOS_HASH_FILES", "true")];

/// Every test: unit and integration tests, the wasm dependency check, and the browser tests.
fn test(root: &Path) -> Result {
    let tools = Tools::ensure(root, Needs::Everything)?;
    // The frontend is left out: with it, feature unification would build `app` with both `ssr`
    // and `hydrate`. Its code is `app`'s, which is tested here with `ssr`.
    cargo_test(
        &tools,
        "every crate's tests; the API suite embedded: SQLite + in-process S3 + local issuer",
        &["--workspace", "--exclude", "frontend"],
        Vec::new(),
    )?;
    // The same black-box suite twice more. The "mixed" set-up: PostgreSQL with the embedded S3.
    let postgres = Postgres::start()?;
    let database = ("PORTRAIT_TEST_POSTGRES_URL", postgres.url());
    api_suite(
        &tools,
        "mixed: PostgreSQL + embedded S3",
        vec![database.clone()],
    )?;
    // The production-shaped set-up: every peer a separate service speaking the real protocol,
    // none of them ours. (Each test gets its own database in the same cluster.)
    let garage = Garage::start(&tools)?;
    let moto = Moto::start(&tools)?;
    let mut peers = vec![database];
    peers.extend(garage.test_env());
    peers.extend(moto.test_env());
    api_suite(
        &tools,
        "production-shaped: PostgreSQL + Garage (S3) + moto (Cognito)",
        peers,
    )?;
    drop((moto, garage, postgres));
    check_wasm_dependencies(&tools)?;
    lint_deployment(&tools)?;
    end_to_end(&tools, Build::Release)?;
    // The command as a Leptos developer types it must give a working site as well: a debug build
    // without `--split`, served to the one spec that checks hydration and the editor.
    end_to_end(&tools, Build::Plain)
}

/// How the site is built for the browser tests; the specs are told which WASM they get
/// (`PORTRAIT_E2E_BUILD`).
#[derive(Clone, Copy)]
enum Build {
    /// What ships, as `build-release` makes it (release, `--split`, wasm-opt): the whole suite.
    Release,
    /// `cargo leptos end-to-end` exactly as typed: `end2end/tests/build.spec.ts` alone.
    Plain,
}

/// `cargo leptos end-to-end` on a server with a fresh data directory: the demo accounts as
/// seeded, nothing left over from a previous run or from `cargo xtask run`.
fn end_to_end(tools: &Tools, build: Build) -> Result {
    let mut command = tools.cmd("cargo", &["leptos", "end-to-end"]);
    let name = match build {
        Build::Release => {
            command.args(RELEASE).envs(RELEASE_ENV);
            "split"
        }
        Build::Plain => "plain",
    };
    println!("Browser tests, {name} build");
    let data = tools.root.join("target/e2e-data");
    let _ = std::fs::remove_dir_all(&data);
    command
        .env("PORTRAIT_DATA_DIR", &data)
        .env("PORTRAIT_E2E_BUILD", name)
        // More people than one page of the directory holds (end2end/tests/users.spec.ts).
        .env("PORTRAIT_SEED_PEOPLE", "60")
        .status_ok()
}

/// Starts the production-shaped peers and prints the variables that point the API suite at
/// them, to run single tests by hand; Enter stops them.
fn peers(root: &Path) -> Result {
    let tools = Tools::ensure(root, Needs::Nothing)?;
    let postgres = Postgres::start()?;
    let garage = Garage::start(&tools)?;
    let moto = Moto::start(&tools)?;
    let mut vars = vec![("PORTRAIT_TEST_POSTGRES_URL", postgres.url())];
    vars.extend(garage.test_env());
    vars.extend(moto.test_env());
    for (name, value) in vars {
        println!("export {name}='{value}'");
    }
    println!("# then: cargo test -p server --test api [name]. Press Enter to stop the peers.");
    std::io::stdin()
        .read_line(&mut String::new())
        .map_err(|e| e.to_string())?;
    drop((moto, garage, postgres));
    Ok(())
}

/// The black-box API suite (`server/tests/api`) with `peers` in its environment.
fn api_suite(tools: &Tools, set_up: &str, peers: Vec<(&str, String)>) -> Result {
    let what = format!("the API suite, {set_up}");
    cargo_test(tools, &what, &["-p", "server", "--test", "api"], peers)
}

/// `cargo test` with exactly `peers` for the API suite to find, so that each run is the set-up
/// it names.
fn cargo_test(tools: &Tools, what: &str, args: &[&str], peers: Vec<(&str, String)>) -> Result {
    println!("Testing {what}");
    let mut cmd = tools.cmd("cargo", &["test", "--no-fail-fast"]);
    services::without_callers_peers(cmd.args(args))
        .envs(peers)
        .status_ok()
}

/// The CloudFormation in `deploy/` is checked with cfn-lint (PyPI).
fn lint_deployment(tools: &Tools) -> Result {
    let lint = tools.ensure_python_tool("cfn-lint", "cfn-lint")?;
    let mut templates: Vec<PathBuf> = std::fs::read_dir(tools.root.join("deploy"))
        .map_err(|e| format!("deploy/: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    templates.sort();
    if templates.is_empty() {
        return Err("no templates in deploy/".into());
    }
    Command::new(&lint).args(&templates).status_ok()
}

/// Server-only crates must never reach the browser bundle: it would bloat it, and most of them
/// do not even work there.
fn check_wasm_dependencies(tools: &Tools) -> Result {
    const FORBIDDEN: [&str; 7] = [
        "sqlx",
        "aws-sdk-s3",
        "aws-sdk-cognitoidentityprovider",
        "aws-config",
        "jsonwebtoken",
        "tokio",
        "s3s",
    ];
    let output = tools
        .cmd(
            "cargo",
            &[
                "tree",
                "-p",
                "frontend",
                "--target",
                "wasm32-unknown-unknown",
                "-e",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ],
        )
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let has = |name: &str| {
        tree.lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };
    // A check that saw nothing would pass vacuously: the graph must hold what the bundle uses.
    if !has("leptos") || !has("image") {
        return Err(format!(
            "cargo tree did not show the frontend's graph:\n{tree}"
        ));
    }
    let found: Vec<&str> = FORBIDDEN.into_iter().filter(|name| has(name)).collect();
    if found.is_empty() {
        println!("wasm dependency check: none of {FORBIDDEN:?} in the frontend build");
        Ok(())
    } else {
        Err(format!("server-only crates in the wasm build: {found:?}"))
    }
}

#[derive(PartialEq, PartialOrd)]
enum Needs {
    /// Nothing up front: the test peers install what they need themselves.
    Nothing,
    /// Enough to build and serve the site.
    Build,
    /// Also wasm-opt, for release builds (npm's `binaryen`, from the npm packages of `end2end/`).
    Release,
    /// Also the browser for the end-to-end tests.
    Everything,
}

pub(crate) struct Tools {
    /// Where installed tools live, outside the checkout.
    cache: PathBuf,
    bin: PathBuf,
    root: PathBuf,
}

impl Tools {
    fn ensure(root: &Path, needs: Needs) -> Result<Self> {
        let cache = env::var_os("PORTRAIT_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".cache/portrait/tools"));
        let tools = Self {
            bin: cache.join("bin"),
            cache,
            root: root.to_path_buf(),
        };
        if needs >= Needs::Build {
            tools.ensure_wasm_target()?;
            tools.ensure_cargo_tool("cargo-leptos", CARGO_LEPTOS_VERSION, true)?;
            let bindgen = locked_version(root, "wasm-bindgen")?;
            // Not --locked: one of its locked dependencies is no longer on the registry.
            tools.ensure_cargo_tool("wasm-bindgen-cli", &bindgen, false)?;
        }
        if needs >= Needs::Release {
            tools.ensure_npm_packages()?;
        }
        if needs >= Needs::Everything {
            tools.ensure_chromium()?;
        }
        Ok(tools)
    }

    /// A command with the tool cache and the npm binaries (wasm-opt) first on PATH.
    pub(crate) fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut path = vec![
            self.bin.clone(),
            self.root.join("end2end/node_modules/.bin"),
        ];
        path.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
        let mut cmd = cargo_free(Command::new(program));
        cmd.args(args)
            .env("PATH", env::join_paths(path).expect("valid PATH"))
            .current_dir(&self.root);
        cmd
    }

    /// One of the browser benchmarks in `end2end/bench/` (`spec`, a file name's start), against
    /// the server at `base_url`; they have a Playwright config of their own, out of the tests.
    pub(crate) fn browser_bench(&self, spec: &str, base_url: &str) -> Command {
        let mut cmd = self.cmd(
            "npx",
            &[
                "playwright",
                "test",
                "--config",
                "bench/playwright.config.ts",
                spec,
            ],
        );
        cmd.current_dir(self.root.join("end2end"))
            .env("PORTRAIT_BASE_URL", base_url);
        cmd
    }

    fn ensure_wasm_target(&self) -> Result {
        let installed = self
            .cmd("rustup", &["target", "list", "--installed"])
            .output();
        if installed
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        {
            return Ok(());
        }
        self.cmd("rustup", &["target", "add", "wasm32-unknown-unknown"])
            .status_ok()
    }

    pub(crate) fn ensure_cargo_tool(&self, krate: &str, version: &str, locked: bool) -> Result {
        let binary = match krate {
            "wasm-bindgen-cli" => "wasm-bindgen",
            other => other,
        };
        let current = Command::new(self.bin.join(binary))
            .arg("--version")
            .output();
        if current.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version)) {
            return Ok(());
        }
        println!(
            "installing {krate} {version} into {} (once)",
            self.cache.display()
        );
        let root = self.cache.display().to_string();
        let mut args = vec![
            "install",
            krate,
            "--version",
            version,
            "--root",
            &root,
            "--force",
        ];
        if locked {
            args.push("--locked");
        }
        self.cmd("cargo", &args)
            .env("CARGO_TARGET_DIR", self.cache.join("build"))
            .status_ok()
    }

    /// A PyPI package installed once into a virtualenv in the tool cache, so that it never
    /// touches the system's Python; returns the path of its `binary`.
    pub(crate) fn ensure_python_tool(&self, requirement: &str, binary: &str) -> Result<PathBuf> {
        let venv = self.cache.join("venv");
        let path = venv.join("bin").join(binary);
        if !path.exists() {
            println!("installing {requirement} into {}", venv.display());
            if !venv.join("bin/pip").exists() {
                self.cmd("python3", &["-m", "venv"])
                    .arg(&venv)
                    .status_ok()?;
            }
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", requirement])
                .status_ok()?;
        }
        Ok(path)
    }

    fn ensure_chromium(&self) -> Result {
        if Path::new("/usr/bin/chromium").exists() || env::var_os("CHROMIUM_PATH").is_some() {
            return Ok(());
        }
        println!("installing Debian's chromium for the browser tests");
        self.cmd("apt-get", &["update", "-qq"]).status_ok()?;
        self.cmd("apt-get", &["install", "-y", "-qq", "chromium"])
            .status_ok()
    }

    fn ensure_npm_packages(&self) -> Result {
        let dir = self.root.join("end2end");
        let stamp = dir.join("node_modules/.package-lock.json");
        let fresh = modified(&stamp).is_some_and(|installed| {
            modified(&dir.join("package-lock.json")).is_some_and(|lock| lock <= installed)
        });
        if fresh {
            return Ok(());
        }
        let mut npm = self.cmd("npm", &["ci", "--no-audit", "--no-fund"]);
        npm.current_dir(&dir);
        npm.status_ok()
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    path.metadata().ok()?.modified().ok()
}

/// The version of `krate` in Cargo.lock (the CLI must match the crate exactly).
fn locked_version(root: &Path, krate: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).map_err(|e| e.to_string())?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{krate}\"") {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                return Ok(version.trim_matches('"').to_owned());
            }
        }
    }
    Err(format!("{krate} is not in Cargo.lock"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn home() -> PathBuf {
    env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

pub(crate) trait StatusOk {
    fn status_ok(&mut self) -> Result;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result {
        let status = self
            .status()
            .map_err(|e| format!("{:?}: {e}", self.get_program()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?} failed: {status}",
                self.get_program(),
                self.get_args().collect::<Vec<_>>()
            ))
        }
    }
}

/// `cmd` without the variables `cargo run` gave this xtask about itself. A cargo started with
/// them hands them on, and a build script that watches one sees a change against a build
/// started from a shell: a release build from `cargo xtask` after a plain `cargo build
/// --release` (or the other way round) was seen to rebuild from the C crypto libraries up.
pub(crate) fn cargo_free(mut cmd: Command) -> Command {
    for (name, _) in env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd
}
