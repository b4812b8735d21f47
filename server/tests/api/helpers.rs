use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;

use app::domain::PhotoKey;
use app::service::ports::{Directory, ObjectStore};
use app::service::{AppState, MaintenanceReport};
use leptos::config::LeptosOptions;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use server::config::Config;
use server::embedded::issuer::DEMO_PASSWORD;
use server::embedded::s3::EmbeddedS3;
use server::startup::Application;

use crate::cognito::TestPool;

pub const ADA: &str = "ada@example.com";
pub const GRACE: &str = "grace@example.com";

pub struct TestApp {
    pub address: String,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub storage: Arc<dyn ObjectStore>,
    pub directory: Arc<dyn Directory>,
    pub embedded_s3: Option<Arc<EmbeddedS3>>,
    pub state: AppState,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The PostgreSQL database of this test, when the suite runs against PostgreSQL.
    pub postgres: Option<TestDatabase>,
    /// This test's Cognito user pool, when the suite runs against a Cognito stand-in.
    pub cognito: Option<TestPool>,
    /// The variables the server was configured with.
    env: HashMap<String, String>,
    /// The `portrait` process that answers at `address`, and its data directory, for a server
    /// started as one.
    process: Option<(tokio::process::Child, tempfile::TempDir)>,
}

/// A test's own PostgreSQL database, which the test can take offline.
#[derive(Clone)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    async fn admin(&self, sql: String) {
        use sqlx::Connection;
        let mut admin = sqlx::AnyConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    /// A real outage: new connections are refused and open ones are cut.
    pub async fn take_offline(&self) {
        let name = &self.name;
        self.admin(format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
        ))
        .await;
        self.admin(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    }

    pub async fn bring_back(&self) {
        self.admin(format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }
}

/// Whether a test server's `Application` is run, or only built for its state.
enum Serve {
    Yes,
    No,
}

/// What an upload URL response carries, typed for the tests.
pub struct Grant {
    pub photo_key: String,
    pub upload_url: String,
    pub headers: BTreeMap<String, String>,
}

impl Grant {
    /// Reads `{photoKey?, uploadUrl, headers}`.
    fn from_json(body: &Value) -> Self {
        Grant {
            photo_key: body["photoKey"].as_str().unwrap_or_default().to_owned(),
            upload_url: body["uploadUrl"].as_str().unwrap().to_owned(),
            headers: serde_json::from_value(body["headers"].clone()).unwrap(),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            server::telemetry::init(false);
        }
        let data_dir = tempfile::tempdir().expect("temp dir");
        // The set-up's storage first, so that a test's own variables win over it.
        let mut env: HashMap<String, String> = external_s3_vars().into_iter().collect();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // Tests that take a part down ask `/readyz` right after: each probe checks afresh, unless
        // the test is about the cache.
        env.entry("PORTRAIT_READINESS_CACHE_MS".into())
            .or_insert_with(|| "0".into());
        env.insert(
            "PORTRAIT_DATA_DIR".into(),
            data_dir.path().display().to_string(),
        );
        // `cargo xtask test` also runs this suite against PostgreSQL (twice: see the README).
        let postgres = match std::env::var("PORTRAIT_TEST_POSTGRES_URL") {
            Ok(admin_url) => {
                let database = fresh_postgres_database(&admin_url).await;
                env.insert("DATABASE_URL".into(), database.url());
                Some(database)
            }
            Err(_) => None,
        };
        // ...and a third time against Cognito (moto), Garage and PostgreSQL.
        let cognito = TestPool::for_test().await;
        if let Some(pool) = &cognito {
            env.extend(pool.vars());
        }
        Self::launch(env, data_dir, postgres, cognito, Serve::Yes).await
    }

    async fn beside(&self, serve: Serve) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut env = self.env.clone();
        env.insert(
            "PORTRAIT_DATA_DIR".into(),
            data_dir.path().display().to_string(),
        );
        let (postgres, cognito) = (self.postgres.clone(), self.cognito.clone());
        Self::launch(env, data_dir, postgres, cognito, serve).await
    }

    /// A second server of the same organisation, as an operating-system process of its own: the
    /// `portrait` binary, with this server's configuration (database, external storage and
    /// identity provider) and a data directory of its own, answering at `address`. It shares no
    /// memory with this one. (Embedded parts are each server's own: an embedded store is not
    /// shared, and an embedded issuer is a different issuer, so a user signs in at each one.) What the tests read beside HTTP (`state` for maintenance passes
    /// and the queue, `storage`, `directory`) is an `Application` of the same configuration in
    /// this process that is never run (no listener served, no maintenance loop of its own): a
    /// third party on the same database, bucket and pool when a test runs a pass with it.
    pub async fn spawn_process_beside(&self) -> Self {
        let mut beside = self.beside(Serve::No).await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // The process inherits this one's environment (the SDK's AWS_* variables among it),
        // then the server's own configuration.
        let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_portrait"))
            .envs(&self.env)
            .env("PORTRAIT_DATA_DIR", data_dir.path())
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("LEPTOS_SITE_ROOT", data_dir.path().join("site"))
            .env("LEPTOS_OUTPUT_NAME", "portrait")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        beside.address = format!("http://127.0.0.1:{port}");
        beside.process = Some((process, data_dir));
        for _ in 0..300 {
            let ready = beside
                .http
                .get(format!("{}/readyz", beside.address))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return beside;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the second server process never became ready");
    }

    async fn launch(
        mut env: HashMap<String, String>,
        data_dir: tempfile::TempDir,
        postgres: Option<TestDatabase>,
        cognito: Option<TestPool>,
        serve: Serve,
    ) -> Self {
        // The embedded issuer runs beside an external part only when asked for by name: the
        // mixed set-up (PostgreSQL with the embedded issuer) asks.
        if postgres.is_some() && !env.contains_key("COGNITO_USER_POOL_ID") {
            env.entry("PORTRAIT_IDENTITY".into())
                .or_insert_with(|| "embedded".into());
        }
        // The site: the one `cargo leptos` builds, unless a test brings its own.
        let site_root = env
            .get("LEPTOS_SITE_ROOT")
            .map_or("target/site", String::as_str);
        let leptos = LeptosOptions::builder()
            .output_name("portrait")
            .site_root(site_root)
            .hash_files(env.get("LEPTOS_HASH_FILES").is_some_and(|v| v == "true"))
            .site_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .build();
        let config = Config::from_vars(&env, leptos).expect("valid test configuration");
        let app = Application::build(config).await.expect("the app starts");
        let address = format!("http://{}", app.addr);
        let storage = app.storage.clone();
        let directory = app.directory.clone();
        let embedded_s3 = app.embedded_s3.clone();
        let state = app.state.clone();
        let metrics_addr = app.metrics_addr;
        if let Serve::Yes = serve {
            tokio::spawn(app.run_until_stopped());
        }
        Self {
            address,
            data_dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            storage,
            directory,
            embedded_s3,
            state,
            metrics_addr,
            postgres,
            cognito,
            env,
            process: None,
        }
    }

    /// The identity provider's private signing key as PEM, for tests that forge tokens: the
    /// embedded issuer's from the data dir, or the stand-in's (moto signs with a key it ships;
    /// `cargo xtask test` exports it). `None` when the stand-in's key is not at hand.
    pub fn signing_key_pem(&self) -> Option<Vec<u8>> {
        match &self.cognito {
            None => Some(std::fs::read(self.data_dir.path().join("issuer-key.pem")).unwrap()),
            Some(_) => std::env::var_os("PORTRAIT_TEST_COGNITO_SIGNING_KEY")
                .map(|path| std::fs::read(path).expect("the stand-in's signing key")),
        }
    }

    /// Runs one maintenance pass as if it were `later` from now (no waiting in tests).
    pub async fn maintenance_after(&self, later: std::time::Duration) -> MaintenanceReport {
        self.state
            .maintenance_pass(time::OffsetDateTime::now_utc() + later)
            .await
            .expect("a maintenance pass")
    }

    /// Runs a statement on the app's database from outside the app, as an operator would.
    pub async fn sql(&self, statement: &str) {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&self.database_url())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap();
    }

    /// The URL of the app's database.
    pub fn database_url(&self) -> String {
        match &self.postgres {
            Some(database) => database.url(),
            None => format!(
                "sqlite://{}",
                self.data_dir.path().join("portrait.db").display()
            ),
        }
    }

    /// Every object stored under the user's prefix.
    pub async fn objects_of(&self, user_id: &str) -> Vec<String> {
        let id = app::domain::UserId::parse(user_id).unwrap();
        let listed = self.storage.list(&PhotoKey::user_prefix(&id)).await;
        listed.unwrap().into_iter().map(|o| o.key).collect()
    }

    /// The key of the user's stored picture, read off the profile's read URL.
    pub async fn picture_key(&self, token: &str) -> Option<String> {
        let profile = self.profile(token).await;
        profile["pictureUrl"].as_str().map(key_in_url)
    }

    /// The directory's `picture` attribute of the user.
    pub async fn picture_attribute(&self, id: &app::domain::UserId) -> Option<String> {
        self.directory
            .picture(id)
            .await
            .expect("the directory answers")
    }

    /// The embedded storage, for tests that take it down. None when the suite runs against an
    /// external S3 service, which a test cannot stop: the test then returns early, and says so.
    pub fn embedded_s3_or_skip(&self) -> Option<&EmbeddedS3> {
        if self.embedded_s3.is_none() {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let storage = self.storage_endpoint();
            eprintln!("{test}: skipped, needs the embedded store (the storage is {storage})");
        }
        self.embedded_s3.as_deref()
    }

    /// Where presigned URLs point: the embedded store, or the external S3 service.
    pub fn storage_endpoint(&self) -> String {
        match &self.embedded_s3 {
            Some(s3) => s3.endpoint.clone(),
            None => std::env::var(S3_ENDPOINT).expect("storage is embedded or external"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn login_response(&self, email: &str, password: &str) -> Response {
        self.http
            .post(self.url("/api/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Signs in with the demo password and returns the whole response body (the tokens).
    pub async fn login_body(&self, email: &str) -> Value {
        let response = self.login_response(email, DEMO_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Signs in and returns the access token.
    pub async fn token(&self, email: &str) -> String {
        self.login_body(email).await["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.http.delete(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn profile(&self, token: &str) -> Value {
        let response = self.get("/api/auth/user/profile", Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn grant(&self, token: &str, content_type: &str, length: usize) -> Grant {
        let body =
            json!({ "fileName": "me.jpg", "contentType": content_type, "contentLength": length });
        self.grant_for(token, &body).await
    }

    /// An upload URL asked for exactly as the SRS does: `{fileName, contentType}`, no length.
    pub async fn srs_grant(&self, token: &str, content_type: &str) -> Grant {
        let body = json!({ "fileName": "profile.jpg", "contentType": content_type });
        self.grant_for(token, &body).await
    }

    /// An upload URL for a JPEG of `length` bytes and one for its small rendition of `small`
    /// bytes, as the editor asks: the picture's grant, and the small one's (under the small
    /// rendition's key).
    pub async fn grant_with_small(
        &self,
        token: &str,
        length: usize,
        small: usize,
    ) -> (Grant, Grant) {
        let body = json!({ "fileName": "me.jpg", "contentType": "image/jpeg",
            "contentLength": length, "smallContentLength": small });
        let response = self
            .post("/api/auth/user/picture/upload-url", Some(token), &body)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let grant = Grant::from_json(&body);
        let small_key = PhotoKey::parse(&grant.photo_key).unwrap().small();
        let small = Grant {
            photo_key: small_key.to_string(),
            ..Grant::from_json(&body["small"])
        };
        (grant, small)
    }

    async fn grant_for(&self, token: &str, body: &Value) -> Grant {
        let response = self
            .post("/api/auth/user/picture/upload-url", Some(token), body)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert!(
            body.get("small").is_none(),
            "no small rendition was asked for"
        );
        Grant::from_json(&body)
    }

    /// How the user list shows the person named `name` (on its first page).
    pub async fn listed(&self, token: &str, name: &str) -> app::api::UserSummary {
        let listed = self.get("/api/users", Some(token)).await;
        assert_eq!(listed.status(), StatusCode::OK);
        let users: Vec<app::api::UserSummary> = listed.json().await.unwrap();
        users
            .into_iter()
            .find(|user| user.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"))
    }

    /// The same PUT, which the storage must take.
    pub async fn put_ok(&self, grant: &Grant, body: Vec<u8>) {
        let put = self.put(grant, body).await;
        assert!(put.status().is_success(), "PUT failed: {}", put.status());
    }

    /// PUTs straight to the storage, as the browser does, with exactly the granted headers
    /// (reqwest, like a browser, sets Content-Length from the body itself).
    pub async fn put(&self, grant: &Grant, body: Vec<u8>) -> Response {
        let mut request = self.http.put(&grant.upload_url);
        for (name, value) in &grant.headers {
            if name != "content-length" {
                request = request.header(name, value);
            }
        }
        request.body(body).send().await.unwrap()
    }

    pub async fn confirm(&self, token: &str, photo_key: &str) -> Response {
        self.post(
            "/api/auth/user/picture/uploaded",
            Some(token),
            &json!({ "photoKey": photo_key }),
        )
        .await
    }

    /// The whole three-step flow for a JPEG; returns the key of the stored picture (not the
    /// upload's: the confirm keeps a copy under a key of its own) and the confirm's body.
    pub async fn upload_jpeg(&self, token: &str, jpeg: Vec<u8>) -> (String, Value) {
        let grant = self.grant(token, "image/jpeg", jpeg.len()).await;
        self.put_ok(&grant, jpeg).await;
        let confirm = self.confirm(token, &grant.photo_key).await;
        assert_eq!(confirm.status(), StatusCode::OK);
        let body: Value = confirm.json().await.unwrap();
        let url = body["profile"]["pictureUrl"].as_str().expect("a read URL");
        (key_in_url(url), body)
    }

    /// The bytes the read URL of the user's picture serves.
    pub async fn picture_bytes(&self, token: &str) -> Vec<u8> {
        let profile = self.profile(token).await;
        let url = profile["pictureUrl"].as_str().expect("a picture");
        let served = self.http.get(url).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        served.bytes().await.unwrap().to_vec()
    }

    /// Whether the storage holds `key`, asked through the S3 API.
    pub async fn stored(&self, key: &str) -> bool {
        let key = PhotoKey::parse(key).unwrap();
        self.storage.head(&key).await.unwrap().is_some()
    }
}

/// Set by `cargo xtask test` for its production-shaped run: the base URL of a real S3 service
/// (Garage), whose bucket is `PORTRAIT_TEST_S3_BUCKET`.
const S3_ENDPOINT: &str = "PORTRAIT_TEST_S3_ENDPOINT";

/// What points the app at the external S3 service, when there is one. Its credentials and
/// region are the process's `AWS_*` variables, read by the SDK as in production. Tests can share
/// the bucket: each test's users are fresh UUIDs, and every object lives under `users/{id}/`.
fn external_s3_vars() -> Vec<(String, String)> {
    let Ok(endpoint) = std::env::var(S3_ENDPOINT) else {
        return Vec::new();
    };
    let bucket = std::env::var("PORTRAIT_TEST_S3_BUCKET")
        .unwrap_or_else(|_| panic!("{S3_ENDPOINT} needs PORTRAIT_TEST_S3_BUCKET"));
    [
        ("S3_BUCKET", bucket),
        ("S3_ENDPOINT_URL", endpoint),
        // A local service answers on one host name, not on one per bucket.
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// Creates an empty database for one test on the PostgreSQL server at `admin_url`.
async fn fresh_postgres_database(admin_url: &str) -> TestDatabase {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("portrait_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(admin_url)
        .await
        .expect("the test PostgreSQL server answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("a fresh test database");
    TestDatabase {
        admin_url: admin_url.to_owned(),
        name,
    }
}

impl TestDatabase {
    fn url(&self) -> String {
        let (server, _) = self
            .admin_url
            .rsplit_once('/')
            .expect("a URL with a database name");
        format!("{server}/{}", self.name)
    }
}

pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encode(width, height, image::ImageFormat::Jpeg)
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    encode(width, height, image::ImageFormat::Png)
}

fn encode(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 3) as u8, 99])
    });
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// The `name=value` part of the response's `Set-Cookie` for `name`, as a browser sends it back.
pub fn cookie_pair(response: &Response, name: &str) -> String {
    let prefix = format!("{name}=");
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with(&prefix))
        .unwrap_or_else(|| panic!("a {name} cookie"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The object key a presigned URL points at (path-style or virtual-hosted alike).
pub fn key_in_url(url: &str) -> String {
    let path = url.split('?').next().unwrap();
    path[path.find("users/").expect("a key under users/")..].to_owned()
}

/// Asserts the status and that the body is `{"message": ...}`; returns the message.
pub async fn error_message(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("a JSON error body");
    body["message"]
        .as_str()
        .expect("an error message")
        .to_owned()
}
