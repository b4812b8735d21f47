//! `cargo xtask bench [seconds] [postgres] [directory]`: the server's speed and memory on this
//! machine.
//!
//! Builds the release binary, starts it on a fresh data directory (embedded default, SQLite)
//! with 100,000 synthetic people, signs in, and drives `POST /api/auth/user/picture/upload-url`
//! with `wrk` at 32 and 64 connections, sampling the server's RSS through the run. Then it
//! times the confirm step over real uploads and counts the bytes that pass through the app
//! server per upload. Last, the directory: `GET /api/users?limit=50` and a search, at 32
//! connections, with the size of the page's JSON. With `directory`, only that last part runs.
//! Figures are printed; the README quotes them. Nothing here asserts a timing.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, StatusOk};

/// Where the release server under test listens (the editor benchmark points the browser here).
pub(crate) const ADDR: &str = "127.0.0.1:3400";

pub fn run(root: &Path, args: &[String]) -> Result {
    let seconds: u64 = args
        .iter()
        .find(|a| a.chars().all(|c| c.is_ascii_digit()))
        .map_or(Ok(30), |s| s.parse())
        .map_err(|e| format!("seconds: {e}"))?;
    // With `postgres`, the same run against a throwaway PostgreSQL cluster instead of SQLite.
    let postgres = if args.iter().any(|a| a == "postgres") {
        Some(crate::services::Postgres::start()?)
    } else {
        None
    };
    let directory_only = args.iter().any(|a| a == "directory");
    ensure_wrk()?;
    crate::cargo_free(Command::new("cargo"))
        .args(["build", "--release", "-p", "server", "--bin", "portrait"])
        .current_dir(root)
        .status_ok()?;

    let data = root.join("target/bench-data");
    let _ = std::fs::remove_dir_all(&data);
    let database = postgres.as_ref().map(crate::services::Postgres::url);
    let mut server = Server::start(root, &data, database.clone(), Site::None, &[])?;
    let token = server.sign_in()?;
    println!(
        "machine: {} cores, {}; database: {}",
        cores(),
        cpu_model(),
        if postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    if !directory_only {
        for connections in [32, 64] {
            let rss_before = rss_kib(server.child.id());
            let sampler = RssSampler::start(server.child.id());
            let report = wrk(root, &token, &UPLOAD_URL, connections, seconds)?;
            let rss = sampler.stop();
            println!(
                "upload-url, {connections} connections, {seconds} s: {report}\n  RSS KiB: before \
                 {rss_before}, during min {} max {}, after {}",
                rss.iter().min().unwrap_or(&0),
                rss.iter().max().unwrap_or(&0),
                rss_kib(server.child.id())
            );
        }
        confirm_figures(&token)?;
    }
    // The directory's people are seeded by a second start on the same database, so that the
    // figures above are taken on the database they always were. The database then analyses
    // the new rows in the background (PostgreSQL's autovacuum), which is given 10 s first.
    server.stop();
    let people = DIRECTORY_PEOPLE.to_string();
    let seeded = [("PORTRAIT_SEED_PEOPLE", people.as_str())];
    let mut server = Server::start(root, &data, database, Site::None, &seeded)?;
    let token = server.sign_in()?;
    std::thread::sleep(Duration::from_secs(10));
    directory_figures(root, &token, seconds, server.child.id())?;
    server.stop();
    Ok(())
}

/// People in the directory during the benchmark, half of them with a picture.
const DIRECTORY_PEOPLE: usize = 100_000;

/// One page of the directory, and one search (a prefix thousands of the synthetic names
/// share), each at 32 connections; and how big the page's JSON is.
fn directory_figures(root: &Path, token: &str, seconds: u64, pid: u32) -> Result {
    for path in ["/api/users?limit=50", "/api/users?q=ali&limit=50"] {
        let (status, body) = http("GET", path, Some(token), "")?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        let load = Load {
            method: "GET",
            path,
            body: None,
        };
        let sampler = RssSampler::start(pid);
        let report = wrk(root, token, &load, 32, seconds)?;
        let rss = sampler.stop();
        println!(
            "GET {path} ({DIRECTORY_PEOPLE} people), 32 connections, {seconds} s: {report}\n  \
             page JSON: {} bytes, {} people, {} with a picture URL; RSS KiB max {}",
            body.len(),
            body.matches("\"initials\"").count(),
            body.matches("\"pictureUrl\":\"").count(),
            rss.iter().max().unwrap_or(&0),
        );
    }
    Ok(())
}

fn ensure_wrk() -> Result {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    Command::new("apt-get")
        .args(["update", "-qq"])
        .status_ok()?;
    Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status_ok()
}

/// The release binary on a fresh data directory, embedded default, with the per-user limits
/// lifted. It serves whatever `target/site` holds.
pub(crate) struct Server {
    child: Child,
}

/// Which site a benchmarked server serves.
pub(crate) enum Site {
    Release,
    None,
}

impl Server {
    /// The release binary on a fresh data directory, with `site` (the release build's, from
    /// `build-release`: hashed names) or none (the API alone), and `vars`: more of the server's
    /// configuration.
    pub(crate) fn start(
        root: &Path,
        data: &Path,
        database_url: Option<String>,
        site: Site,
        vars: &[(&str, &str)],
    ) -> Result<Self> {
        // Measuring whatever else answers there would be worse than not measuring.
        if TcpStream::connect(ADDR).is_ok() {
            return Err(format!(
                "{ADDR} is already in use: stop what listens there first"
            ));
        }
        let mut command = Command::new(root.join("target/release/portrait"));
        if let Some(url) = database_url {
            // PostgreSQL with the embedded issuer: that mix runs only when asked for by name.
            command
                .env("DATABASE_URL", url)
                .env("PORTRAIT_IDENTITY", "embedded");
        }
        match site {
            Site::Release => command
                .env("LEPTOS_SITE_ROOT", root.join("target/site"))
                .env("LEPTOS_HASH_FILES", "true"),
            Site::None => command.env("LEPTOS_SITE_ROOT", data.join("no-site")),
        };
        let child = command
            .env("LEPTOS_SITE_ADDR", ADDR)
            .env("PORTRAIT_DATA_DIR", data)
            // The load is one user asking many times: lift the per-user limits for it. (With the
            // cap on, each request also counts that user's pending uploads, at most 10 rows.)
            .env("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "100000000")
            .env("PORTRAIT_MAX_PENDING_UPLOADS", "unlimited")
            .env("PORTRAIT_LOG_FORMAT", "json")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start server: {e}"))?;
        // Seeding 100,000 people takes a few seconds before the server answers.
        let deadline = Instant::now() + Duration::from_secs(180);
        while http("GET", "/readyz", None, "").map(|r| r.0) != Ok(200) {
            if Instant::now() > deadline {
                return Err("the server did not become ready".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { child })
    }

    fn sign_in(&mut self) -> Result<String> {
        let body = r#"{"email":"ada@example.com","password":"portrait-demo"}"#;
        let (status, response) = http("POST", "/api/auth/login", None, body)?;
        if status != 200 {
            return Err(format!("sign-in failed: {status} {response}"));
        }
        json_field(&response, "accessToken").ok_or_else(|| "no accessToken".into())
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A request to the server under test, as the browser's API calls make it.
fn http(method: &str, path: &str, token: Option<&str>, body: &str) -> Result<(u16, String)> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    crate::services::http(ADDR, method, path, &headers, body)
}

fn json_field(json: &str, field: &str) -> Option<String> {
    let start = json.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let end = json[start..].find('"')? + start;
    Some(json[start..end].to_owned())
}

/// One request, which `wrk` repeats.
struct Load<'a> {
    method: &'a str,
    path: &'a str,
    /// A JSON body.
    body: Option<&'a str>,
}

const UPLOAD_URL: Load = Load {
    method: "POST",
    path: "/api/auth/user/picture/upload-url",
    body: Some(r#"{"fileName":"me.jpg","contentType":"image/jpeg","contentLength":48213}"#),
};

fn wrk(root: &Path, token: &str, load: &Load, connections: u32, seconds: u64) -> Result<String> {
    let script = root.join("target/bench-wrk.lua");
    let body = load.body.map_or(String::new(), |body| {
        format!("wrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n")
    });
    std::fs::write(
        &script,
        format!(
            r#"wrk.method = "{}"
{body}wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d requests, %d errors\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
"#,
            load.method
        ),
    )
    .map_err(|e| e.to_string())?;
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://{ADDR}{}", load.path))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(str::to_owned)
        .ok_or_else(|| format!("wrk printed no result:\n{text}"))
}

/// Samples the process's resident memory twice a second until stopped.
struct RssSampler {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while stopped.recv_timeout(Duration::from_millis(500)).is_err() {
                samples.push(rss_kib(pid));
            }
            samples
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<u64> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Times the confirm step over real uploads (grant and PUT are not timed), and counts the
/// bytes of JSON that cross the app server for one whole upload.
fn confirm_figures(token: &str) -> Result {
    let jpeg = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-picture.jpg"))
        .map_err(|e| format!("bench picture: {e}"))?;
    let mut times = Vec::new();
    let mut bytes_through_app = 0;
    for _ in 0..200 {
        let grant_body = format!(
            r#"{{"fileName":"me.jpg","contentType":"image/jpeg","contentLength":{}}}"#,
            jpeg.len()
        );
        let (status, grant) = http(
            "POST",
            "/api/auth/user/picture/upload-url",
            Some(token),
            &grant_body,
        )?;
        if status != 200 {
            return Err(format!("upload-url: {status} {grant}"));
        }
        let url = json_field(&grant, "uploadUrl").ok_or("no uploadUrl")?;
        let key = json_field(&grant, "photoKey").ok_or("no photoKey")?;
        let put = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "-X",
                "PUT",
                "-H",
                "Content-Type: image/jpeg",
                "--data-binary",
            ])
            .arg(format!(
                "@{}",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("bench-picture.jpg")
                    .display()
            ))
            .arg(url.replace("\\u0026", "&"))
            .status()
            .map_err(|e| e.to_string())?;
        if !put.success() {
            return Err("PUT to storage failed".into());
        }
        let confirm_body = format!(r#"{{"photoKey":"{key}"}}"#);
        let started = Instant::now();
        let (status, confirmed) = http(
            "POST",
            "/api/auth/user/picture/uploaded",
            Some(token),
            &confirm_body,
        )?;
        times.push(started.elapsed());
        if status != 200 {
            return Err(format!("confirm: {status} {confirmed}"));
        }
        bytes_through_app = grant_body.len() + grant.len() + confirm_body.len() + confirmed.len();
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "uploaded (confirm), {} sequential: p50 {:.2} ms, p99 {:.2} ms",
        times.len(),
        at(0.5),
        at(0.99)
    );
    println!(
        "bytes through the app server per upload (JSON bodies of both calls): {bytes_through_app} \
         for a {}-byte picture",
        jpeg.len()
    );
    Ok(())
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

pub(crate) fn cpu_model() -> String {
    std::fs::File::open("/proc/cpuinfo")
        .ok()
        .and_then(|f| {
            BufReader::new(f)
                .lines()
                .map_while(std::result::Result::ok)
                .find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
                })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
