//! The release-shaped binary as an operator runs it: JSON logs, SIGTERM. These start the real
//! `portrait` executable, since signals and log output belong to the process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    /// Starts the binary on a free port and waits for its "listening" log line.
    fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// The same with more variables.
    fn start_with(data_dir: &std::path::Path, vars: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portrait"))
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_SITE_ROOT", data_dir.join("site"))
            .env("PORTRAIT_DATA_DIR", data_dir)
            .env("PORTRAIT_LOG_FORMAT", "json")
            // The default filter, plus tower-http's "started" lines the test synchronises on.
            .env(
                "RUST_LOG",
                "info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn,tower_http=debug",
            )
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            base: String::new(),
            lines,
            log: Vec::new(),
        };
        let listening = server.wait_for(|l| l["fields"]["message"] == "Portrait listening");
        let addr = listening["fields"]["addr"].as_str().unwrap().to_owned();
        server.base = format!("http://{addr}");
        server
    }

    /// Reads log lines until one matches; every line must be JSON.
    fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the awaited log line never came: {:#?}", self.log));
            let parsed: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
            self.log.push(line);
            if wanted(&parsed) {
                return parsed;
            }
        }
    }

    /// Everything logged until the process ends.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.log.push(line);
        }
    }

    /// Signs Ada in and returns her access token.
    async fn sign_in(&self, http: &reqwest::Client) -> String {
        let body = json!({ "email": "ada@example.com", "password": "portrait-demo" });
        let login = self.post(http, "/api/auth/login", None, body).await;
        login["accessToken"].as_str().unwrap().to_owned()
    }

    /// An upload URL for a JPEG of `length` bytes.
    async fn grant(&self, http: &reqwest::Client, token: &str, length: usize) -> Value {
        let body =
            json!({ "fileName": "me.jpg", "contentType": "image/jpeg", "contentLength": length });
        let path = "/api/auth/user/picture/upload-url";
        self.post(http, path, Some(token), body).await
    }

    /// POSTs JSON and returns the JSON answer.
    async fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let mut request = http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn jpeg() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 30, 90]))
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

// Multi-threaded: the test blocks on log lines while the request it spawned must progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_with_request_ids_and_no_secrets_and_sigterm_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path());
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);

    let token = server.sign_in(&http).await;
    let picture = jpeg();
    let grant = server.grant(&http, &token, picture.len()).await;
    let put = http
        .put(grant["uploadUrl"].as_str().unwrap())
        .header("content-type", "image/jpeg")
        .body(picture)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // The confirm is in flight when SIGTERM arrives: its headers are sent, its body is not.
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let mut body = json!({ "photoKey": grant["photoKey"] })
        .to_string()
        .into_bytes();
    let rest = body.split_off(1);
    let length = body.len() + rest.len();
    // The first byte goes at once (the client sends nothing before it has some body), the rest
    // only after the signal.
    body_tx.send(Ok(body)).await.unwrap();
    let confirm = tokio::spawn(
        http.post(url("/api/auth/user/picture/uploaded"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("content-length", length)
            .body(reqwest::Body::wrap_stream(futures::stream::unfold(
                body_rx,
                |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
            )))
            .send(),
    );
    // Wait until the server has the request (its headers are in) before signalling.
    server.wait_for(|l| {
        l["fields"]["message"] == "started processing request"
            && l["span"]["path"] == "/api/auth/user/picture/uploaded"
    });
    server.terminate();
    server.wait_for(|l| l["fields"]["message"] == "shutting down");
    body_tx.send(Ok(rest)).await.unwrap();
    drop(body_tx);
    let confirmed = confirm
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(
        confirmed.status(),
        200,
        "graceful shutdown finished the confirm"
    );
    // The stored picture: a checked copy of the upload, under a key of its own.
    let confirmed: Value = confirmed.json().await.unwrap();
    let stored = confirmed["profile"]["pictureUrl"].as_str().unwrap();
    let stored = stored.split('?').next().unwrap();
    let key = &stored[stored.find("users/").unwrap()..];
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    server.drain();

    // No secret in any line; every request line carries its request id.
    let log = server.log.join("\n");
    assert!(!log.contains(&token), "the access token was logged");
    assert!(!log.contains("portrait-demo"), "the password was logged");
    assert!(
        !log.contains("X-Amz-Signature"),
        "a presigned signature was logged"
    );
    let finished: Vec<Value> = server
        .log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "finished processing request")
        .collect();
    assert!(finished.len() >= 3, "one line per request: {log}");
    for line in &finished {
        assert_eq!(
            line["span"]["request_id"].as_str().unwrap().len(),
            36,
            "{line}"
        );
    }

    // Restarted on the same data, the picture is there.
    let server = Server::start(data.path());
    let token = server.sign_in(&http).await;
    let profile: Value = http
        .get(format!("{}/api/auth/user/profile", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(profile["pictureUrl"].as_str().unwrap().contains(key));
}

/// How long a test waits for what the server must do after a configured second or two: a
/// watchdog against hanging, never a measurement.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A peer that accepts every connection and never answers (nor closes).
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// Credentials and region for the SDK, so that it never looks further (no instance metadata).
const STATIC_AWS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "AKIDPORTRAITTEST"),
    ("AWS_SECRET_ACCESS_KEY", "portrait-test-secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

async fn message(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["message"].as_str().unwrap().to_owned())
}

/// The server with one part pointed at a peer that never answers (`part` gets the peer's URL
/// and names the variables), outbound timeouts of a second, and static AWS credentials; and a
/// client that gives up only at the watchdog.
async fn start_against_black_hole(
    part: impl FnOnce(&str) -> Vec<(&'static str, String)>,
) -> (tempfile::TempDir, Server, reqwest::Client) {
    let data = tempfile::tempdir().unwrap();
    let mut vars = part(&black_hole().await);
    vars.extend(
        [
            ("PORTRAIT_OUTBOUND_TIMEOUT_SECS", "1"),
            ("PORTRAIT_CONNECT_TIMEOUT_SECS", "1"),
        ]
        .into_iter()
        .chain(STATIC_AWS)
        .map(|(name, value)| (name, value.to_owned())),
    );
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let server = Server::start_with(data.path(), &vars);
    let http = reqwest::Client::builder()
        .timeout(WATCHDOG)
        .build()
        .unwrap();
    (data, server, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_accepts_and_never_answers_is_a_503_naming_it() {
    let (_data, server, http) = start_against_black_hole(|endpoint| {
        vec![
            ("S3_BUCKET", "portrait".into()),
            ("S3_ENDPOINT_URL", endpoint.into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            // The embedded issuer beside external storage, asked for by name.
            ("PORTRAIT_IDENTITY", "embedded".into()),
        ]
    })
    .await;
    let token = server.sign_in(&http).await;
    // Issuing a URL needs no round trip to the storage; confirming it does.
    let grant = server.grant(&http, &token, 100).await;
    let confirm = http
        .post(format!("{}/api/auth/user/picture/uploaded", server.base))
        .bearer_auth(&token)
        .json(&json!({ "photoKey": grant["photoKey"] }))
        .send()
        .await
        .expect("an answer, not a hung request");
    assert_eq!(
        message(confirm).await,
        (
            503,
            "The storage is unavailable right now; nothing was changed. Please try again.".into()
        )
    );
}

/// Sends `request`, which must be answered (not hang) with a 503 that names the directory.
async fn assert_a_503_naming_the_directory(request: reqwest::RequestBuilder) {
    let response = request.send().await.expect("an answer, not a hung request");
    let (status, text) = message(response).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("directory"), "{text}");
}

/// Cognito configured with `endpoint` standing in for it.
fn cognito_at(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("COGNITO_USER_POOL_ID", "us-east-1_BlackHole".into()),
        ("COGNITO_CLIENT_ID", "portrait".into()),
        ("COGNITO_ENDPOINT_URL", endpoint.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cognito_that_accepts_and_never_answers_is_a_503_naming_the_directory() {
    let (_data, server, http) = start_against_black_hole(cognito_at).await;
    let login = http
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({ "email": "ada@example.com", "password": "portrait-demo" }));
    assert_a_503_naming_the_directory(login).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_accepts_and_never_answers_is_a_503_naming_the_directory() {
    // The JWKS is the stand-in's too: `{COGNITO_ENDPOINT_URL}/{pool}/.well-known/jwks.json`.
    let (_data, server, http) = start_against_black_hole(cognito_at).await;
    // Shaped like a provider's token (RS256, a `kid`): with no keys to hold it against, the
    // server cannot tell a forgery from a real one, and must not send the user to sign in.
    let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6InBvcnRyYWl0LXRlc3QifQ.e30.c2lnbmF0dXJl";
    let profile = http
        .get(format!("{}/api/auth/user/profile", server.base))
        .bearer_auth(token);
    assert_a_503_naming_the_directory(profile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_does_not_hold_the_process_past_the_shutdown_grace() {
    use tokio::io::AsyncWriteExt;
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        data.path(),
        &[
            ("PORTRAIT_SHUTDOWN_GRACE_SECS", "1"),
            ("PORTRAIT_REQUEST_TIMEOUT_SECS", "600"),
        ],
    );
    // A request whose body never comes: only the grace period can end it.
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: portrait\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    server.wait_for(|l| {
        l["fields"]["message"] == "started processing request"
            && l["span"]["path"] == "/api/auth/login"
    });
    server.terminate();
    server.wait_for(|l| {
        l["fields"]["message"]
            == "requests still running at the end of the shutdown grace period are dropped"
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < WATCHDOG,
            "the process is still running after the grace period"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    drop(stream);
}

/// The binary with `vars` on a fresh data directory and nothing else configured, run to its end.
fn run_to_exit(data_dir: &std::path::Path, vars: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portrait"));
    for name in [
        "DATABASE_URL",
        "S3_BUCKET",
        "COGNITO_USER_POOL_ID",
        "COGNITO_CLIENT_ID",
        "PORTRAIT_IDENTITY",
    ] {
        command.env_remove(name);
    }
    command
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("PORTRAIT_DATA_DIR", data_dir)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the server binary runs")
}

#[test]
fn an_external_part_without_an_identity_provider_stops_start_up_naming_what_is_missing() {
    for (name, value) in [
        ("S3_BUCKET", "portrait-pictures"),
        ("DATABASE_URL", "postgres://portrait@127.0.0.1:1/portrait"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let output = run_to_exit(data.path(), &[(name, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} alone started the server");
        for named in [
            "COGNITO_USER_POOL_ID",
            "COGNITO_CLIENT_ID",
            name,
            "PORTRAIT_IDENTITY",
        ] {
            assert!(stderr.contains(named), "{named} not named: {stderr}");
        }
        // It stopped before anything was created: no database, no seeded demo account.
        assert!(
            std::fs::read_dir(data.path()).unwrap().next().is_none(),
            "{name}: the data directory is not empty"
        );
    }
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_the_database_are_private_to_the_server_user() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("var/portrait");
    let server = Server::start(&data);
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    // Every directory the server created, and every file it keeps there.
    assert_eq!(mode(&root.path().join("var")), 0o700);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("portrait.db")), 0o600);
    assert_eq!(mode(&data.join("issuer-key.pem")), 0o600);
    // SQLite's companions, open while the server runs in WAL mode.
    assert_eq!(mode(&data.join("portrait.db-wal")), 0o600);
    assert_eq!(mode(&data.join("portrait.db-shm")), 0o600);
    drop(server);
}

#[test]
fn a_site_and_its_file_names_that_do_not_match_stop_start_up() {
    // Hashed names wanted, but no hash file beside the binary (a debug build writes none).
    let data = tempfile::tempdir().unwrap();
    let output = run_to_exit(data.path(), &[("LEPTOS_HASH_FILES", "true")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started without its hash file");
    assert!(
        stderr.contains("LEPTOS_HASH_FILES") && stderr.contains("hash.txt"),
        "{stderr}"
    );

    // A site built with hashed names, served without them.
    let site = data.path().join("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("pkg/portrait.Zk3x9Qw2.js"), "export default 1").unwrap();
    let site = site.display().to_string();
    let output = run_to_exit(data.path(), &[("LEPTOS_SITE_ROOT", site.as_str())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "served a hashed site by plain names"
    );
    assert!(stderr.contains("set LEPTOS_HASH_FILES=true"), "{stderr}");
}
