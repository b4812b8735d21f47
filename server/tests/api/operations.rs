//! What operators and browsers rely on beyond the contract: health, request ids, headers,
//! and the guards in front of the API.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_message, TestApp, ADA};

#[tokio::test]
async fn health_and_readiness_report_the_parts() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({ "status": "ok" })
    );

    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["checks"],
        json!({ "database": "ok", "storage": "ok", "identity": "ok" })
    );

    // Storage down: not ready, but still alive.
    let Some(s3) = app.embedded_s3_or_skip() else {
        return;
    };
    s3.stop().await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"], "ok");
    assert_ne!(body["checks"]["storage"], "ok");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);

    s3.restart().await.unwrap();
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let first = app.get("/healthz", None).await;
    let second = app.get("/api/auth/user/profile", None).await;
    let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id(&first).len(), 36, "a UUID");
    assert_ne!(id(&first), id(&second));
}

#[tokio::test]
async fn pages_carry_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    let page = app.get("/login", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
    assert!(
        !csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    // The inline hydration script carries the nonce the policy names.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the page's scripts lack the nonce"
    );
    // And the storage, where pictures and uploads go, is the one other origin admitted.
    let endpoint = app.storage_endpoint();
    assert!(
        csp.contains(&format!("connect-src 'self' {endpoint}")),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("img-src 'self' data: blob: {endpoint}")),
        "{csp}"
    );
}

#[tokio::test]
async fn under_cargo_leptos_watch_pages_may_open_the_reload_websocket() {
    async fn policy(app: &TestApp) -> String {
        let page = app.get("/login", None).await;
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned()
    }
    // Served normally, no websocket anywhere.
    let app = TestApp::spawn().await;
    let csp = policy(&app).await;
    assert!(!csp.contains("ws:") && !csp.contains("wss:"), "{csp}");

    // `cargo leptos watch` sets LEPTOS_WATCH, and Leptos's reload script then connects to the
    // page's host on the reload port (3001 in the test's Leptos options), which 'self' does
    // not cover: exactly that is admitted.
    let app = TestApp::spawn_with(&[("LEPTOS_WATCH", "ON")]).await;
    let csp = policy(&app).await;
    let endpoint = app.storage_endpoint();
    assert!(
        csp.contains(&format!(
            "connect-src 'self' {endpoint} ws://127.0.0.1:3001 wss://127.0.0.1:3001;"
        )),
        "{csp}"
    );
}

#[tokio::test]
async fn the_api_takes_only_json() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    // What a cross-site HTML form can send: it must not reach the handler, cookie or not.
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data",
    ] {
        let response = app
            .http
            .post(app.url("/api/auth/user/picture/uploaded"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(r#"{"photoKey":"x"}"#)
            .send()
            .await
            .unwrap();
        let message = error_message(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert!(message.contains("application/json"), "{message}");
    }
    let response = app.get("/api/auth/user/profile", Some(&token)).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn oversized_bodies_are_a_json_413() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let huge =
        json!({ "fileName": "a".repeat(20_000), "contentType": "image/jpeg", "contentLength": 10 });
    let response = app
        .post("/api/auth/user/picture/upload-url", Some(&token), &huge)
        .await;
    let message = error_message(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(message, "The request body is too large.");
}

/// The value of one sample line of a Prometheus text exposition, if it is there: a series that
/// is missing fails the comparison instead of reading as 0.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_follow_the_flow_on_their_own_listener_only() {
    let app = TestApp::spawn_with(&[("PORTRAIT_METRICS_ADDR", "127.0.0.1:0")]).await;
    let scrape = || async {
        let url = format!("http://{}/metrics", app.metrics_addr.unwrap());
        app.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let token = app.token(ADA).await;

    // The whole flow, with the browser's PUT figures.
    let picture = crate::helpers::jpeg(32, 32);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&grant, picture.clone()).await;
    let body = json!({ "photoKey": grant.photo_key, "putMillis": 120, "putBytes": picture.len() });
    assert_eq!(
        app.post("/api/auth/user/picture/uploaded", Some(&token), &body)
            .await
            .status(),
        StatusCode::OK
    );
    // And a refused confirm.
    let unknown = format!("{}x", &grant.photo_key[..grant.photo_key.len() - 4]);
    app.confirm(&token, &format!("{unknown}.jpg")).await;
    app.delete("/api/auth/user/picture", Some(&token)).await;

    let metrics = scrape().await;
    assert_eq!(
        sample(&metrics, "portrait_upload_urls_issued_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "portrait_upload_confirms_total{outcome=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "portrait_upload_confirms_total{outcome=\"invalid_key\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "portrait_picture_deletes_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "portrait_upload_put_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "portrait_upload_put_seconds_sum"),
        Some(0.12)
    );
    assert_eq!(
        sample(&metrics, "portrait_upload_put_bytes_sum"),
        Some(picture.len() as f64)
    );
    assert_eq!(sample(&metrics, "portrait_queue_depth"), Some(0.0));
    let upload_url_requests = "portrait_http_request_duration_seconds_count{method=\"POST\",\
        endpoint=\"/api/auth/user/picture/upload-url\",status=\"200\"}";
    assert_eq!(
        sample(&metrics, upload_url_requests),
        Some(1.0),
        "{metrics}"
    );

    // The public listener does not serve them.
    assert_eq!(
        app.get("/metrics", None).await.status(),
        StatusCode::NOT_FOUND
    );
}
