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
    let body = json!({ "fileName": "me.jpg", "contentType": "image/jpeg", "contentLength": picture.len() });
    let grant = server
        .post(
            &http,
            "/api/auth/user/picture/upload-url",
            Some(&token),
            body,
        )
        .await;
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
    let key = grant["photoKey"].as_str().unwrap();
    assert!(profile["pictureUrl"].as_str().unwrap().contains(key));
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
