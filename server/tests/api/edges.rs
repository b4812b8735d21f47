//! The edges of the server as an attacker or a careless deployment meets them: the demo door,
//! headers and cookies, cross-site requests, and what a flood of odd requests can and cannot do.

use reqwest::StatusCode;
use serde_json::{json, Value};
use server::embedded::issuer::DEMO_PASSWORD;

use crate::helpers::{TestApp, ADA};

/// Variables that switch Cognito on with a pool nothing answers for: enough for everything that
/// needs no call to it (pages, cookies, guards).
const UNREACHABLE_COGNITO: [(&str, &str); 3] = [
    ("COGNITO_USER_POOL_ID", "us-east-1_nowhere"),
    ("COGNITO_CLIENT_ID", "nobody"),
    ("COGNITO_ENDPOINT_URL", "http://127.0.0.1:9"),
];

async fn demo_accounts(app: &TestApp) -> Vec<Value> {
    let response = app.get("/api/auth/demo-accounts", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_sign_in_page_shows_demo_accounts_only_when_they_exist() {
    let app = TestApp::spawn().await;
    let page = app.get("/login", None).await.text().await.unwrap();
    if app.cognito.is_none() {
        // The embedded issuer seeded them: shown, and they work.
        assert!(page.contains("Demo accounts"), "{page}");
        assert!(page.contains(ADA) && page.contains(DEMO_PASSWORD), "{page}");
        assert_eq!(demo_accounts(&app).await.len(), 2);
        app.token(ADA).await;
    }

    // With an identity provider there are none, and the page says nothing about them.
    let app = TestApp::spawn_with(&UNREACHABLE_COGNITO).await;
    let page = app.get("/login", None).await.text().await.unwrap();
    assert!(page.contains("Sign in to Portrait"), "{page}");
    assert!(!page.contains("Demo accounts"), "{page}");
    assert!(!page.contains(DEMO_PASSWORD), "{page}");
    assert!(demo_accounts(&app).await.is_empty());
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `name=value` part of the `Set-Cookie` whose name is `name`.
fn cookie_pair(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {cookies:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn behind_https_cookies_are_host_prefixed_and_browsers_are_told_to_stay_on_https() {
    let app = TestApp::spawn_with(&[("PORTRAIT_SECURE_COOKIES", "true")]).await;
    let login = app.login_response(ADA, DEMO_PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(
        login.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let cookies = set_cookies(&login);
    for name in ["__Host-portrait_session", "__Host-portrait_refresh"] {
        let cookie = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {cookies:?}"));
        // What the prefix demands of the cookie, or browsers drop it.
        for attribute in ["; Path=/;", "; Secure", "; HttpOnly"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
    }

    // The prefixed cookies are the ones that count; an unprefixed one (which a sibling
    // subdomain or plain HTTP could have planted) is ignored.
    let session = cookie_pair(&cookies, "__Host-portrait_session");
    let profile = |cookie: String| {
        app.http
            .get(app.url("/api/auth/user/profile"))
            .header(reqwest::header::COOKIE, cookie)
            .send()
    };
    assert_eq!(
        profile(session.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let planted = session.trim_start_matches("__Host-").to_owned();
    assert_eq!(
        profile(planted).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .http
        .post(app.url("/api/auth/refresh"))
        .header(
            reqwest::header::COOKIE,
            cookie_pair(&cookies, "__Host-portrait_refresh"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::OK);
    cookie_pair(&set_cookies(&refresh), "__Host-portrait_session");
}

#[tokio::test]
async fn without_https_there_is_no_hsts_and_cookies_keep_their_plain_names() {
    let app = TestApp::spawn().await;
    let login = app.login_response(ADA, DEMO_PASSWORD).await;
    assert!(login.headers().get("strict-transport-security").is_none());
    let cookies = set_cookies(&login);
    cookie_pair(&cookies, "portrait_session");
    cookie_pair(&cookies, "portrait_refresh");
}

#[tokio::test]
async fn pages_are_never_stored_and_may_use_the_camera_but_no_other_device() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let signed_in = app
        .http
        .get(app.url("/profile"))
        .header(reqwest::header::COOKIE, format!("portrait_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let html = signed_in.headers()["content-type"].to_str().unwrap();
    assert!(html.starts_with("text/html"), "{html}");
    for page in [
        signed_in,
        app.get("/users", None).await,
        app.get("/login", None).await,
    ] {
        let headers = page.headers();
        assert_eq!(headers["cache-control"], "no-store", "{}", page.url());
        let policy = headers["permissions-policy"].to_str().unwrap();
        assert!(policy.starts_with("camera=(self),"), "{policy}");
        for denied in ["microphone=()", "geolocation=()", "usb=()", "payment=()"] {
            assert!(policy.contains(denied), "{policy}");
        }
    }
}

/// A state-changing API request as a browser would send it from a page with these headers.
async fn from_page(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .http
        .delete(app.url("/api/auth/user/picture"))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn state_changing_requests_from_other_sites_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (key, _) = app.upload_jpeg(&token, crate::helpers::jpeg(16, 16)).await;
    let own_origin = app.address.clone();

    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")],
        // Same host name, another port: another origin.
        &[("origin", "http://127.0.0.1:1")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        // The browser's own word wins over an Origin that looks right.
        &[("sec-fetch-site", "cross-site"), ("origin", &own_origin)],
    ] {
        let response = from_page(&app, &token, headers).await;
        let message = crate::helpers::error_message(response, StatusCode::FORBIDDEN).await;
        assert_eq!(
            message, "Requests from other sites are not accepted.",
            "{headers:?}"
        );
    }
    // A cross-site sign-in attempt is refused before any password is checked.
    let login = app
        .http
        .post(app.url("/api/auth/login"))
        .header("origin", "https://evil.example")
        .json(&json!({ "email": ADA, "password": DEMO_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
    assert!(
        app.profile(&token).await["pictureUrl"]
            .as_str()
            .unwrap()
            .contains(&key),
        "the picture is still there"
    );
    // Reads are not state-changing: a cross-site GET gets its answer (CORS keeps it from the page).
    let read = app
        .http
        .get(app.url("/api/auth/user/profile"))
        .bearer_auth(&token)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    // The app's own pages, and clients that are not browsers (no such headers), pass.
    for headers in [
        &[("sec-fetch-site", "same-origin"), ("origin", &own_origin)][..],
        &[("origin", &own_origin)],
        &[],
    ] {
        let response = from_page(&app, &token, headers).await;
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
    }
}

#[tokio::test]
async fn a_client_request_id_is_kept_only_when_short_and_plain() {
    let app = TestApp::spawn().await;
    let answered_id = |sent: String| {
        let request = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", sent);
        async move {
            let response = request.send().await.unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    for kept in ["client-42", "a.b_c-1", &"x".repeat(64)] {
        assert_eq!(answered_id(kept.to_owned()).await, kept);
    }
    for replaced in [
        "x".repeat(65),
        "two words".to_owned(),
        "id\"with\"quotes".to_owned(),
        "{\"level\":\"ERROR\"}".to_owned(),
    ] {
        let answered = answered_id(replaced.clone()).await;
        assert_ne!(answered, replaced);
        assert_eq!(answered.len(), 36, "a UUID instead of {replaced}");
    }
}

#[tokio::test]
async fn made_up_methods_share_one_metrics_label() {
    let app = TestApp::spawn().await;
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{n}").as_bytes()).unwrap();
        let response = app
            .http
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let metrics = app.state.metrics.encode();
    assert!(!metrics.contains("BREW"), "{metrics}");
    let series = "portrait_http_request_duration_seconds_count{method=\"OTHER\",\
                  endpoint=\"/healthz\",status=\"405\"} 20";
    assert!(metrics.contains(series), "{metrics}");
}

#[tokio::test]
async fn a_flood_of_readiness_probes_checks_the_parts_about_once_a_second() {
    use futures::StreamExt;
    // The production default, which the other tests turn off.
    let app = TestApp::spawn_with(&[("PORTRAIT_READINESS_CACHE_MS", "1000")]).await;
    let probes = 1000;
    let started = std::time::Instant::now();
    let statuses: Vec<StatusCode> = futures::stream::iter(0..probes)
        .map(|_| async { app.get("/readyz", None).await.status() })
        .buffer_unordered(50)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let checks = app.state.metrics.readiness_checks.get();
    // One round of checks per second the flood lasted (and one to start), not one per probe.
    let most = seconds.ceil() as u64 + 1;
    assert!(
        (1..=most).contains(&checks),
        "{checks} checks for {probes} probes in {seconds:.1} s"
    );
}

/// Removes the user's row, and what refers to it, as an operator would.
async fn delete_user_row(app: &TestApp, id: &str) {
    for table in ["uploads", "outbox", "local_accounts"] {
        app.sql(&format!("DELETE FROM {table} WHERE user_id = '{id}'"))
            .await;
    }
    app.sql(&format!("DELETE FROM users WHERE id = '{id}'"))
        .await;
}

#[tokio::test]
async fn a_valid_token_whose_user_row_is_gone_is_signed_out_everywhere() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (key, body) = app.upload_jpeg(&token, crate::helpers::jpeg(16, 16)).await;
    let id = body["profile"]["id"].as_str().unwrap().to_owned();
    let grant = app.grant(&token, "image/jpeg", 1000).await;
    delete_user_row(&app, &id).await;

    let upload =
        json!({ "fileName": "me.jpg", "contentType": "image/jpeg", "contentLength": 1000 });
    for (what, response) in [
        (
            "profile",
            app.get("/api/auth/user/profile", Some(&token)).await,
        ),
        ("users", app.get("/api/users", Some(&token)).await),
        (
            "upload-url",
            app.post("/api/auth/user/picture/upload-url", Some(&token), &upload)
                .await,
        ),
        ("uploaded", app.confirm(&token, &grant.photo_key).await),
        ("uploaded, old key", app.confirm(&token, &key).await),
        (
            "delete",
            app.delete("/api/auth/user/picture", Some(&token)).await,
        ),
    ] {
        let message = crate::helpers::error_message(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(message, "Please sign in.", "{what}");
    }
}
