//! Token verification, attacked with tokens that are each wrong in exactly one way.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::embedded::issuer::{DEMO_PASSWORD, LOCAL_CLIENT_ID};

use crate::helpers::{cookie_pair, error_message, TestApp, ADA};

struct Forge {
    key: EncodingKey,
    kid: String,
    claims: Value,
}

impl Forge {
    /// Starts from a genuine access token: the real signing key (read from the data dir, as an
    /// attacker who stole it could not, but as we need to vary one thing at a time) and its claims.
    /// `None` when the provider's key is not at hand (the test then has nothing to forge with).
    async fn from(app: &TestApp) -> Option<Self> {
        let token = app.token(ADA).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        let Some(pem) = app.signing_key_pem() else {
            eprintln!("skipped: the identity provider's signing key is not available");
            return None;
        };
        Some(Self {
            key: EncodingKey::from_rsa_pem(&pem).unwrap(),
            kid: header.kid.unwrap(),
            claims,
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    fn with(&self, field: &str, value: Value) -> String {
        let mut claims = self.claims.clone();
        claims[field] = value;
        self.sign(&claims)
    }
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let response = app.get("/api/auth/user/profile", Some(token)).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "accepted a token with {why}"
    );
    assert_eq!(
        error_message(response, StatusCode::UNAUTHORIZED).await,
        "Please sign in."
    );
}

#[tokio::test]
async fn a_genuine_token_re_signed_unchanged_is_accepted() {
    // The control: proves the forging below changes only what each case says.
    let app = TestApp::spawn().await;
    let Some(forge) = Forge::from(&app).await else {
        return;
    };
    let token = forge.sign(&forge.claims);
    assert_eq!(
        app.get("/api/auth/user/profile", Some(&token))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_wrong_in_one_claim_are_refused() {
    let app = TestApp::spawn().await;
    let Some(forge) = Forge::from(&app).await else {
        return;
    };
    let an_hour_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 3600;
    assert_refused(
        &app,
        &forge.with("exp", json!(an_hour_ago)),
        "an expired exp",
    )
    .await;
    assert_refused(
        &app,
        &forge.with(
            "iss",
            json!("https://cognito-idp.us-east-1.amazonaws.com/other"),
        ),
        "another issuer",
    )
    .await;
    assert_refused(
        &app,
        &forge.with("client_id", json!("another-client")),
        "another client",
    )
    .await;
    assert_refused(&app, &forge.with("token_use", json!("id")), "token_use id").await;
    assert_refused(
        &app,
        &forge.with("sub", json!("../../etc")),
        "a hostile sub",
    )
    .await;
    let mut no_exp = forge.claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(&app, &forge.sign(&no_exp), "no exp").await;
}

#[tokio::test]
async fn nbf_and_iat_are_checked_with_a_small_leeway() {
    let app = TestApp::spawn().await;
    let Some(forge) = Forge::from(&app).await else {
        return;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_refused(
        &app,
        &forge.with("nbf", json!(now + 600)),
        "nbf in ten minutes",
    )
    .await;
    assert_refused(
        &app,
        &forge.with("iat", json!(now + 600)),
        "iat in ten minutes",
    )
    .await;
    let mut no_iat = forge.claims.clone();
    no_iat.as_object_mut().unwrap().remove("iat");
    assert_refused(&app, &forge.sign(&no_iat), "no iat").await;
    // A few seconds of clock skew between the provider and us is tolerated.
    let mut skewed = forge.claims.clone();
    skewed["nbf"] = json!(now + 10);
    skewed["iat"] = json!(now + 10);
    let response = app
        .get("/api/auth/user/profile", Some(&forge.sign(&skewed)))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_id_token_is_not_an_access_token() {
    let app = TestApp::spawn().await;
    let body: Value = app
        .login_response(ADA, "portrait-demo")
        .await
        .json()
        .await
        .unwrap();
    let id_token = body["idToken"].as_str().unwrap();
    assert_refused(&app, id_token, "token_use id (the id token)").await;
}

#[tokio::test]
async fn tokens_not_signed_by_the_issuer_are_refused() {
    let app = TestApp::spawn().await;
    let Some(forge) = Forge::from(&app).await else {
        return;
    };

    // Signed by another RSA key that claims the real key id.
    let other = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    use aws_lc_rs::encoding::AsDer;
    let der = other.as_der().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref())
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(forge.kid.clone());
    let foreign = jsonwebtoken::encode(
        &header,
        &forge.claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_refused(&app, &foreign, "a foreign signature").await;

    // HS256 keyed with something public, the classic algorithm-confusion attack.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(forge.kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &forge.claims,
        &EncodingKey::from_secret(forge.kid.as_bytes()),
    )
    .unwrap();
    assert_refused(&app, &confused, "alg HS256").await;

    // alg none: a header and payload with an empty signature.
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "kid": forge.kid })),
        b64(&forge.claims)
    );
    assert_refused(&app, &unsigned, "alg none").await;

    // An unknown key id.
    let mut unknown = Header::new(Algorithm::RS256);
    unknown.kid = Some("no-such-key".into());
    let token = jsonwebtoken::encode(&unknown, &forge.claims, &forge.key).unwrap();
    assert_refused(&app, &token, "an unknown kid").await;
    let client_id = app
        .cognito
        .as_ref()
        .map_or(LOCAL_CLIENT_ID, |pool| pool.client_id.as_str());
    assert_eq!(forge.claims["client_id"], client_id);
}

#[tokio::test]
async fn a_valid_token_for_a_user_without_a_row_gets_nothing() {
    let app = TestApp::spawn().await;
    let Some(forge) = Forge::from(&app).await else {
        return;
    };
    let stranger = forge.with("sub", json!("9b2f6c1e-0000-4000-8000-000000000000"));
    assert_refused(&app, &stranger, "a user without a row").await;
    let body = json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": 10 });
    let response = app
        .post("/api/auth/user/picture/upload-url", Some(&stranger), &body)
        .await;
    assert_eq!(
        error_message(response, StatusCode::UNAUTHORIZED).await,
        "Please sign in."
    );
}

#[tokio::test]
async fn genuine_tokens_of_another_client_or_pool_are_refused() {
    let app = TestApp::spawn().await;
    let Some(pool) = &app.cognito else {
        // The embedded issuer has one client and one issuer; forged claims cover it above.
        eprintln!("skipped: needs a Cognito stand-in");
        return;
    };
    // Both are real tokens, signed by the provider's real key.
    let other_client = pool.token_for_another_client(ADA).await;
    assert_refused(&app, &other_client, "another app client").await;
    let other_pool = pool.token_from_another_pool(ADA).await;
    assert_refused(&app, &other_pool, "another user pool").await;
    // The control: the same user through the app's own client is accepted.
    assert_eq!(
        app.get("/api/auth/user/profile", Some(&app.token(ADA).await))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_refresh_token_buys_new_tokens_and_nothing_else_does() {
    let app = TestApp::spawn().await;
    let login = app.login_body(ADA).await;
    let refresh_token = login["refreshToken"].as_str().expect("a refresh token");

    let response = app
        .post(
            "/api/auth/refresh",
            None,
            &json!({ "refreshToken": refresh_token }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed: Value = response.json().await.unwrap();
    let access = refreshed["accessToken"].as_str().unwrap();
    assert_eq!(app.profile(access).await["email"], ADA);
    assert!(refreshed["expiresIn"].as_u64().unwrap() > 0);

    for (wrong, why) in [
        ("not-a-token", "garbage"),
        (access, "an access token"),
        (login["idToken"].as_str().unwrap(), "an id token"),
    ] {
        let response = app
            .post("/api/auth/refresh", None, &json!({ "refreshToken": wrong }))
            .await;
        assert_eq!(
            error_message(response, StatusCode::UNAUTHORIZED).await,
            "Please sign in.",
            "refreshed with {why}"
        );
    }
    let nothing = app.post("/api/auth/refresh", None, &json!({})).await;
    assert_eq!(nothing.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_browser_refreshes_with_its_strict_refresh_cookie() {
    let app = TestApp::spawn().await;
    let login = app.login_response(ADA, DEMO_PASSWORD).await;
    let cookies: Vec<String> = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let refresh_cookie = cookies
        .iter()
        .find(|c| c.starts_with("portrait_refresh="))
        .expect("a refresh cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/;"] {
        assert!(refresh_cookie.contains(attribute), "{refresh_cookie}");
    }
    let pair = refresh_cookie.split(';').next().unwrap();

    let response = app
        .http
        .post(app.url("/api/auth/refresh"))
        .header(reqwest::header::COOKIE, pair)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = cookie_pair(&response, "portrait_session");
    let profile = app
        .http
        .get(app.url("/api/auth/user/profile"))
        .header(reqwest::header::COOKIE, session)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), StatusCode::OK);

    // Signing out clears both cookies.
    let logout = app.post("/api/auth/logout", None, &json!({})).await;
    let cleared: Vec<&str> = logout
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|c| c.contains("Max-Age=0"))
        .collect();
    for name in ["portrait_session=;", "portrait_refresh=;"] {
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with(name) && c.contains("Path=/;")),
            "{name} {cleared:?}"
        );
    }
}

#[tokio::test]
async fn an_account_on_a_temporary_password_is_told_what_is_missing() {
    let app = TestApp::spawn().await;
    let Some(pool) = &app.cognito else {
        eprintln!("skipped: needs a Cognito stand-in (the embedded accounts have no challenges)");
        return;
    };
    pool.add_user_with_temporary_password("new@example.com")
        .await;
    let response = app.login_response("new@example.com", DEMO_PASSWORD).await;
    let message = error_message(response, StatusCode::FORBIDDEN).await;
    assert!(message.contains("administrator"), "{message}");
    // A wrong password is still just wrong, and says nothing about the account.
    let response = app.login_response("new@example.com", "not it").await;
    assert_eq!(
        error_message(response, StatusCode::UNAUTHORIZED).await,
        "Incorrect email or password."
    );
}
