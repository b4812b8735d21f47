//! Sign-in cannot be used to attack accounts or the server: throttled guesses, locks that look
//! like wrong passwords, password checks off the async workers, sign-out that revokes, and
//! disabled users shut out.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::api::LoginRequest;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::embedded::issuer::DEMO_PASSWORD;

use crate::helpers::{cookie_pair, error_message, TestApp, ADA, GRACE};

const INCORRECT: &str = "Incorrect email or password.";

async fn login_from(
    app: &TestApp,
    email: &str,
    password: &str,
    forwarded: &str,
) -> reqwest::Response {
    app.http
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_passwords_are_slowed_down_per_account_with_retry_after() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        let response = app.login_response(ADA, "wrong").await;
        assert_eq!(
            error_message(response, StatusCode::UNAUTHORIZED).await,
            INCORRECT
        );
    }
    // The sixth at once has to wait, and so does the right password: the throttle does not
    // say whether a guess was right.
    for password in ["wrong", DEMO_PASSWORD] {
        let response = app.login_response(ADA, password).await;
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
        let message = error_message(response, StatusCode::TOO_MANY_REQUESTS).await;
        assert!(message.contains("Too many sign-in attempts"), "{message}");
    }
    // Another account from the same address is not held back.
    assert_eq!(
        app.login_response(GRACE, DEMO_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_locked_account_answers_exactly_like_a_wrong_password_until_the_lock_ends() {
    let app = TestApp::spawn().await;
    let client = Some(IpAddr::from([192, 0, 2, 1]));
    let attempt = |password: &str, at: Instant| {
        let req = LoginRequest {
            email: ADA.into(),
            password: password.into(),
        };
        let state = app.state.clone();
        async move { state.sign_in_at(req, client, at).await }
    };
    // Wrong passwords, waiting out each delay (time is stepped, not slept), until the lock.
    let mut now = Instant::now();
    let mut wrong = None;
    for _ in 0..10 {
        let error = loop {
            match attempt("wrong", now).await {
                Err(e) if e.status == 429 => now += Duration::from_secs(e.retry_after.unwrap()),
                Err(e) => break e,
                Ok(_) => panic!("a wrong password signed in"),
            }
        };
        assert_eq!((error.status, error.message.as_str()), (401, INCORRECT));
        wrong = Some(error);
    }
    // Locked: the right password gets the very answer a wrong one gets, however long the
    // caller waits within the lock.
    now += Duration::from_secs(60);
    let locked = attempt(DEMO_PASSWORD, now).await.unwrap_err();
    assert_eq!(Some(locked.clone()), wrong);
    assert_eq!(locked.retry_after, None);
    now += Duration::from_secs(10 * 60);
    assert_eq!(attempt(DEMO_PASSWORD, now).await.unwrap_err(), locked);
    // The lock lasts a quarter of an hour.
    now += Duration::from_secs(6 * 60);
    assert!(attempt(DEMO_PASSWORD, now).await.is_ok());
}

#[tokio::test]
async fn unknown_emails_and_wrong_passwords_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let unknown = app.login_response("nobody@example.com", "wrong").await;
    let wrong = app.login_response(ADA, "wrong").await;
    assert_eq!(
        error_message(unknown, StatusCode::UNAUTHORIZED).await,
        INCORRECT
    );
    assert_eq!(
        error_message(wrong, StatusCode::UNAUTHORIZED).await,
        INCORRECT
    );
}

#[tokio::test]
async fn the_client_address_is_the_peer_unless_a_proxy_is_trusted() {
    // No trusted proxy: X-Forwarded-For is the client's own claim and changes nothing, so 20
    // guesses at 20 accounts from one peer use up that address's allowance.
    let app = TestApp::spawn().await;
    for n in 0..20 {
        let response = login_from(
            &app,
            &format!("u{n}@example.com"),
            "x",
            &format!("203.0.113.{n}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = login_from(&app, "u99@example.com", "x", "203.0.113.99").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // Behind one trusted proxy the client is the entry it appended (the rightmost); what the
    // client wrote left of it is still ignored.
    let app = TestApp::spawn_with(&[("PORTRAIT_TRUSTED_PROXY_HOPS", "1")]).await;
    for n in 0..20 {
        let forwarded = format!("198.51.100.{n}, 203.0.113.7");
        let response = login_from(&app, &format!("u{n}@example.com"), "x", &forwarded).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = login_from(&app, "u99@example.com", "x", "198.51.100.99, 203.0.113.7").await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = login_from(&app, "u99@example.com", "x", "203.0.113.8").await;
    assert_eq!(
        other.status(),
        StatusCode::UNAUTHORIZED,
        "another client is not held back"
    );
}

#[tokio::test]
async fn password_checks_do_not_hold_up_other_requests() {
    // This test runs on a current-thread runtime: the app's requests and this client share
    // one async worker. If password checks ran on it, /healthz could only be answered between
    // them; since they run on the blocking pool, it is answered while they are under way.
    let app = TestApp::spawn_with(&[("PORTRAIT_TRUSTED_PROXY_HOPS", "1")]).await;
    if app.cognito.is_some() {
        eprintln!("skipped: Cognito checks the passwords (the embedded issuer is not running)");
        return;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let logins = tokio::spawn({
        let (http, url, done) = (app.http.clone(), app.url("/api/auth/login"), done.clone());
        async move {
            let logins = (0..200u32).map(|n| {
                let (http, url, done) = (http.clone(), url.clone(), done.clone());
                async move {
                    // Each from its own address, for its own unknown account: none throttled,
                    // every one a full password check.
                    let status = http
                        .post(url)
                        .header("x-forwarded-for", format!("10.9.{}.{}", n / 256, n % 256))
                        .json(&json!({ "email": format!("guess{n}@example.com"), "password": "x" }))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    done.fetch_add(1, Ordering::SeqCst);
                    status
                }
            });
            join_all(logins).await
        }
    });
    // Once checks are under way...
    while done.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let health = app.get("/healthz", None).await;
    let finished = done.load(Ordering::SeqCst);
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        finished < 200,
        "/healthz waited for all 200 password checks"
    );
    let statuses = logins.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    eprintln!("/healthz answered with {finished} of 200 password checks done");
}

#[tokio::test]
async fn signing_out_revokes_the_refresh_token() {
    let app = TestApp::spawn().await;
    if app.cognito.is_some() {
        // Checked in moto 5.2.5's source and against its server: RevokeToken is missing, and
        // it answers 500. Against Cognito the same call is `CognitoDirectory::revoke`.
        eprintln!("skipped: the Cognito stand-in (moto) does not implement RevokeToken");
        return;
    }
    let refresh = |body: Value, cookie: Option<String>| {
        let mut request = app.http.post(app.url("/api/auth/refresh")).json(&body);
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        async move { request.send().await.unwrap().status() }
    };

    // An API client: the token in the body.
    let login = app.login_body(ADA).await;
    let token = login["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(
        refresh(json!({ "refreshToken": token }), None).await,
        StatusCode::OK
    );
    let logout = app
        .post("/api/auth/logout", None, &json!({ "refreshToken": token }))
        .await;
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(
        refresh(json!({ "refreshToken": token }), None).await,
        StatusCode::UNAUTHORIZED
    );

    // The browser: the refresh cookie, which signing out also receives.
    let login = app.login_response(ADA, DEMO_PASSWORD).await;
    let cookie = cookie_pair(&login, "portrait_refresh");
    assert_eq!(
        refresh(json!({}), Some(cookie.clone())).await,
        StatusCode::OK
    );
    let logout = app
        .http
        .post(app.url("/api/auth/logout"))
        .header(reqwest::header::COOKIE, &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(
        refresh(json!({}), Some(cookie)).await,
        StatusCode::UNAUTHORIZED
    );

    // Another session of the same user is not touched.
    let other = app.login_body(ADA).await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        refresh(json!({ "refreshToken": other }), None).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_disabled_user_is_shut_out_at_the_next_request() {
    // The status is read on every request here; by default it may be remembered for 30 s
    // (PORTRAIT_USER_STATUS_CACHE_SECS, at most 60).
    let app = TestApp::spawn_with(&[("PORTRAIT_USER_STATUS_CACHE_SECS", "0")]).await;
    let token = app.token(ADA).await;
    let id = app.profile(&token).await["id"].as_str().unwrap().to_owned();

    app.sql(&format!(
        "UPDATE users SET status = 'Disabled' WHERE id = '{id}'"
    ))
    .await;
    for response in [
        app.get("/api/auth/user/profile", Some(&token)).await,
        app.get("/api/users", Some(&token)).await,
        app.delete("/api/auth/user/picture", Some(&token)).await,
    ] {
        assert_eq!(
            error_message(response, StatusCode::UNAUTHORIZED).await,
            "Please sign in."
        );
    }
    // Signing in again does not help, and says why once the password is right.
    let message = error_message(
        app.login_response(ADA, DEMO_PASSWORD).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(message.contains("disabled"), "{message}");
    assert_eq!(
        error_message(
            app.login_response(ADA, "wrong").await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        INCORRECT
    );

    app.sql(&format!(
        "UPDATE users SET status = 'Active' WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(
        app.get("/api/auth/user/profile", Some(&token))
            .await
            .status(),
        StatusCode::OK
    );
}
