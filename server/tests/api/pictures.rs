use reqwest::StatusCode;
use serde_json::{json, Value};

use std::collections::BTreeMap;
use std::time::Duration;

use crate::helpers::{error_message, jpeg, key_in_url, png, TestApp, ADA, GRACE};

/// Well after every URL issued in a test expired: maintenance passes run "then".
const LATER: Duration = Duration::from_secs(2 * 3600);

#[tokio::test]
async fn sign_in_returns_tokens_and_an_http_only_cookie() {
    let app = TestApp::spawn().await;
    let response = app.login_response(ADA, "portrait-demo").await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("portrait_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 3600);
    assert!(body["idToken"].as_str().unwrap().split('.').count() == 3);

    // The cookie alone authenticates the browser app.
    let session = cookie.split(';').next().unwrap();
    let profile = app
        .http
        .get(app.url("/api/auth/user/profile"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_credentials_are_a_401() {
    let app = TestApp::spawn().await;
    for (email, password) in [(ADA, "wrong"), ("nobody@example.com", "portrait-demo")] {
        let message = error_message(
            app.login_response(email, password).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(message, "Incorrect email or password.");
    }
    let message = error_message(app.login_response("", "").await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("required"), "{message}");
}

#[tokio::test]
async fn the_profile_shows_the_seeded_user_with_initials_and_no_picture() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let profile = app.profile(&token).await;
    assert_eq!(profile["name"], "Ada Dev");
    assert_eq!(profile["email"], ADA);
    assert_eq!(profile["role"], "Admin");
    assert_eq!(profile["status"], "Active");
    assert_eq!(profile["initials"], "AD");
    assert!(profile["phone"].is_string() && profile["joinedAt"].is_string());
    assert!(profile["pictureUrl"].is_null());
    assert!(profile["pictureExpiresAtUtc"].is_null());
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token() {
    let app = TestApp::spawn().await;
    let body = json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": 10 });
    for token in [None, Some("not-a-jwt"), Some("a.b.c")] {
        for response in [
            app.get("/api/auth/user/profile", token).await,
            app.get("/api/users", token).await,
            app.post("/api/auth/user/picture/upload-url", token, &body)
                .await,
            app.post(
                "/api/auth/user/picture/uploaded",
                token,
                &json!({ "photoKey": "x" }),
            )
            .await,
            app.delete("/api/auth/user/picture", token).await,
        ] {
            assert_eq!(
                error_message(response, StatusCode::UNAUTHORIZED).await,
                "Please sign in."
            );
        }
    }
}

#[tokio::test]
async fn the_whole_flow_stores_serves_and_records_the_picture() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let picture = jpeg(64, 64);

    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    let user_id = app.profile(&token).await["id"].as_str().unwrap().to_owned();
    assert!(grant
        .photo_key
        .starts_with(&format!("users/{user_id}/profile_")));
    assert!(grant.photo_key.ends_with(".jpg"));
    assert_eq!(grant.headers["content-type"], "image/jpeg");
    assert_eq!(grant.headers["content-length"], picture.len().to_string());
    // No checksum pinned into the URL: it would be the checksum of an empty body.
    assert!(
        !grant.upload_url.to_lowercase().contains("x-amz-checksum"),
        "{}",
        grant.upload_url
    );

    let put = app.put(&grant, picture.clone()).await;
    assert_eq!(put.status(), StatusCode::OK);
    let confirm = app.confirm(&token, &grant.photo_key).await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let body: Value = confirm.json().await.unwrap();
    assert_eq!(body["message"], "Profile picture updated successfully.");
    let url = body["profile"]["pictureUrl"].as_str().expect("a read URL");
    assert!(body["profile"]["pictureExpiresAtUtc"].is_string());

    // The read URL serves exactly the bytes, as the image type.
    let served = app.http.get(url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.bytes().await.unwrap().to_vec(), picture);

    // The directory's picture attribute holds the key of the stored copy, which lives beside
    // the upload under the user's prefix; the upload itself is gone.
    let stored = key_in_url(url);
    assert!(stored.starts_with(&format!("users/{user_id}/picture_")));
    let id = app::domain::UserId::parse(user_id.clone()).unwrap();
    assert_eq!(app.picture_attribute(&id).await, Some(stored.clone()));
    assert_eq!(app.objects_of(&user_id).await, vec![stored]);
    // The profile and the user list show it from now on.
    assert!(app.profile(&token).await["pictureUrl"].is_string());
    let ada = app.listed(&token, "Ada Dev").await;
    assert!(ada.picture_url.is_some());
    assert_eq!(ada.initials, "AD");
}

#[tokio::test]
async fn a_new_picture_replaces_and_deletes_the_old_one() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (first, _) = app.upload_jpeg(&token, jpeg(32, 32)).await;
    assert!(app.stored(&first).await);
    let (second, body) = app.upload_jpeg(&token, jpeg(48, 48)).await;
    assert_ne!(first, second);
    assert!(!app.stored(&first).await, "the old object must be gone");
    assert!(app.stored(&second).await);
    assert!(body["profile"]["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&second));
}

#[tokio::test]
async fn confirming_the_same_key_twice_is_harmless() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let picture = jpeg(16, 16);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&grant, picture).await;
    let key = grant.photo_key;
    assert_eq!(app.confirm(&token, &key).await.status(), StatusCode::OK);
    let stored = app.picture_key(&token).await.unwrap();
    let again = app.confirm(&token, &key).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.picture_key(&token).await, Some(stored.clone()));
    assert!(app.stored(&stored).await);

    // Once replaced, the old key cannot be brought back by confirming it again.
    let (newer, _) = app.upload_jpeg(&token, jpeg(20, 20)).await;
    let message = error_message(app.confirm(&token, &key).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(message, "This upload was already used.");
    assert!(app.profile(&token).await["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&newer));
}

#[tokio::test]
async fn the_storage_refuses_a_put_that_differs_from_what_was_signed() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let picture = jpeg(32, 32);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;

    let wrong_type = app
        .http
        .put(&grant.upload_url)
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::FORBIDDEN);

    let mut longer = picture.clone();
    longer.push(0);
    assert_eq!(
        app.put(&grant, longer).await.status(),
        StatusCode::FORBIDDEN
    );

    let mut tampered = grant.upload_url.clone();
    tampered = tampered.replacen("/profile_", "/profile_9", 1);
    let forged = app
        .http
        .put(&tampered)
        .header("content-type", "image/jpeg")
        .body(picture.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Nothing was stored, so confirming finds nothing, and the user keeps having no picture.
    let message = error_message(
        app.confirm(&token, &grant.photo_key).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("not found"), "{message}");
    assert!(app.profile(&token).await["pictureUrl"].is_null());
}

#[tokio::test]
async fn content_that_is_not_the_announced_image_is_refused_and_deleted() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (kept, _) = app.upload_jpeg(&token, jpeg(20, 20)).await;

    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let grant = app.grant(&token, "image/png", html.len()).await;
    assert_eq!(app.put(&grant, html).await.status(), StatusCode::OK);
    let message = error_message(
        app.confirm(&token, &grant.photo_key).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("not a PNG"), "{message}");
    assert!(
        !app.stored(&grant.photo_key).await,
        "refused content must be deleted"
    );

    // The picture the user had is untouched.
    assert!(app.stored(&kept).await);
    assert!(app.profile(&token).await["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&kept));

    // A real PNG of the announced type goes through.
    let picture = png(10, 10);
    let grant = app.grant(&token, "image/png", picture.len()).await;
    app.put_ok(&grant, picture).await;
    assert_eq!(
        app.confirm(&token, &grant.photo_key).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_that_were_not_issued_to_this_user_are_refused() {
    let app = TestApp::spawn().await;
    let ada = app.token(ADA).await;
    let grace = app.token(GRACE).await;
    let grant = app.grant(&ada, "image/jpeg", 100).await;

    let message = error_message(
        app.confirm(&grace, &grant.photo_key).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(message.contains("another user"), "{message}");

    let grace_id = app.profile(&grace).await["id"].as_str().unwrap().to_owned();
    let unissued = format!("users/{grace_id}/profile_1700000000000_0123456789abcdef.jpg");
    let message = error_message(
        app.confirm(&grace, &unissued).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("Unknown photoKey"), "{message}");

    for hostile in [
        "".to_string(),
        "../../etc/passwd".into(),
        format!("users/{grace_id}/../x/profile_1_0123456789abcdef.jpg"),
        format!("/users/{grace_id}/profile_1_0123456789abcdef.jpg"),
        "x".repeat(10_000),
    ] {
        let message =
            error_message(app.confirm(&grace, &hostile).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(message, "Invalid photoKey.");
    }
}

#[tokio::test]
async fn bad_upload_requests_are_400_with_a_clear_message() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let cases = [
        (
            json!({ "fileName": "a.svg", "contentType": "image/svg+xml", "contentLength": 10 }),
            "Unsupported content type",
        ),
        (
            json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": 0 }),
            "empty",
        ),
        (
            json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": 6_000_000 }),
            "too large",
        ),
        (
            json!({ "fileName": "a".repeat(300), "contentType": "image/jpeg", "contentLength": 10 }),
            "too long",
        ),
        (
            json!({ "contentType": "image/jpeg" }),
            "Invalid request body",
        ),
        (
            json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": "ten" }),
            "Invalid request body",
        ),
    ];
    for (body, expected) in cases {
        let response = app
            .post("/api/auth/user/picture/upload-url", Some(&token), &body)
            .await;
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(expected), "{body}: {message}");
    }
    let garbage = app
        .http
        .post(app.url("/api/auth/user/picture/upload-url"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn removing_the_picture_clears_object_attribute_and_profile() {
    let app = TestApp::spawn().await;
    let token = app.token(GRACE).await;
    let (key, _) = app.upload_jpeg(&token, jpeg(24, 24)).await;

    let response = app.delete("/api/auth/user/picture", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Profile picture removed.");
    assert!(body["profile"]["pictureUrl"].is_null());
    assert!(!app.stored(&key).await);
    let id = app::domain::UserId::parse(body["profile"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(app.picture_attribute(&id).await, None);
    assert!(app.profile(&token).await["pictureUrl"].is_null());

    // Removing again is fine and says so.
    let again: Value = app
        .delete("/api/auth/user/picture", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["message"], "There was no profile picture to remove.");
}

#[tokio::test]
async fn the_storage_answers_the_browsers_cors_preflight_for_the_app_only() {
    let app = TestApp::spawn().await;
    // Only the embedded store's CORS rules are the app's: an external bucket has those of its
    // deployment (deploy/).
    if app.embedded_s3_or_skip().is_none() {
        return;
    }
    let token = app.token(ADA).await;
    let grant = app.grant(&token, "image/jpeg", 10).await;
    let preflight = |origin: String| {
        app.http
            .request(reqwest::Method::OPTIONS, &grant.upload_url)
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight(app.address.clone()).await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        app.address.as_str()
    );
    let foreign = preflight("https://evil.example".into()).await.unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// A real 1×1 PNG whose header claims 30000×30000: tiny on disk, 3.6 GB once decoded.
fn png_bomb() -> Vec<u8> {
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&30000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&30000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    bomb
}

#[tokio::test]
async fn hostile_content_is_refused_deleted_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token(GRACE).await;
    let mut truncated = jpeg(64, 64);
    truncated.truncate(120);
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#.to_vec();
    let cases = [
        ("image/png", png_bomb(), "30000×30000"),
        ("image/jpeg", truncated, "damaged or truncated"),
        ("image/png", svg.clone(), "not a PNG"),
        ("image/webp", svg, "not a WEBP"),
    ];
    for (content_type, bytes, expected) in cases {
        let grant = app.grant(&token, content_type, bytes.len()).await;
        assert_eq!(app.put(&grant, bytes).await.status(), StatusCode::OK);
        let message = error_message(
            app.confirm(&token, &grant.photo_key).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(expected), "{content_type}: {message}");
        assert!(
            !app.stored(&grant.photo_key).await,
            "refused content must not stay stored"
        );
    }
    assert!(app.profile(&token).await["pictureUrl"].is_null());
}

#[tokio::test]
async fn the_presigned_put_carries_the_real_bytes_to_motos_s3_as_well() {
    // The whole flow with real bytes against a third S3 implementation. moto checks neither
    // signatures nor checksums, so this proves only that the URL and headers we hand out work
    // and the bytes arrive whole; the rejections are proven against the embedded store and
    // Garage, and the URL's equality with the SDK's presigner in storage.rs's unit tests.
    let Some(moto) = crate::cognito::moto_endpoint() else {
        eprintln!("skipped: needs moto's server");
        return;
    };
    let bucket = format!("portrait-{}", uuid::Uuid::new_v4().simple());
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .endpoint_url(&moto)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let app = TestApp::spawn_with(&[
        ("S3_BUCKET", &bucket),
        ("S3_ENDPOINT_URL", &moto),
        ("S3_FORCE_PATH_STYLE", "true"),
    ])
    .await;
    let token = app.token(ADA).await;
    let picture = jpeg(48, 40);
    let (key, body) = app.upload_jpeg(&token, picture.clone()).await;
    assert!(body["profile"]["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&key));
    let stored = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        stored.as_ref(),
        picture.as_slice(),
        "the bytes arrived whole"
    );
}

/// Exactly what a client written from the SRS sends: `{fileName, contentType}`, then a PUT with
/// only `Content-Type` (and the length any HTTP client adds), then `{photoKey}`.
#[tokio::test]
async fn an_srs_client_uploads_with_only_file_name_and_content_type() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let response = app
        .post(
            "/api/auth/user/picture/upload-url",
            Some(&token),
            &json!({ "fileName": "profile.jpg", "contentType": "image/jpeg" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let grant: Value = response.json().await.unwrap();
    let photo_key = grant["photoKey"].as_str().unwrap();
    assert!(photo_key.starts_with("users/") && photo_key.ends_with(".jpg"));
    assert!(grant["expiresAtUtc"].as_str().unwrap().ends_with('Z'));
    // The headers say exactly what to send, and that is what the SRS's client sends.
    let headers: BTreeMap<String, String> =
        serde_json::from_value(grant["headers"].clone()).unwrap();
    assert_eq!(
        headers,
        BTreeMap::from([("content-type".to_owned(), "image/jpeg".to_owned())])
    );

    let picture = jpeg(40, 40);
    let put = |content_type: &'static str| {
        app.http
            .put(grant["uploadUrl"].as_str().unwrap())
            .header("Content-Type", content_type)
            .body(picture.clone())
            .send()
    };
    assert_eq!(put("image/jpeg").await.unwrap().status(), StatusCode::OK);
    // The signed type still holds without a length.
    assert_eq!(
        put("image/png").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let confirm = app.confirm(&token, photo_key).await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let body: Value = confirm.json().await.unwrap();
    assert_eq!(body["message"], "Profile picture updated successfully.");
    assert_eq!(app.picture_bytes(&token).await, picture);
}

/// Without a signed length the size is bounded at the confirm (and, on the embedded store, by
/// the upload itself).
#[tokio::test]
async fn an_oversized_srs_upload_is_refused_deleted_and_the_old_picture_kept() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let kept = jpeg(20, 20);
    let (kept_key, body) = app.upload_jpeg(&token, kept.clone()).await;
    let user_id = body["profile"]["id"].as_str().unwrap().to_owned();

    let grant = app.srs_grant(&token, "image/jpeg").await;
    // A real JPEG header, then padding past the limit.
    let mut oversized = jpeg(16, 16);
    oversized.resize(app::domain::MAX_PICTURE_BYTES as usize + 1, 0);
    let put = app.put(&grant, oversized).await;
    let confirm = app.confirm(&token, &grant.photo_key).await;
    if put.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The embedded store bounds the body itself; nothing was stored to confirm.
        eprintln!("the store refused the oversized body itself (413); the confirm finds nothing");
        assert!(
            app.embedded_s3.is_some(),
            "only the embedded store has a body limit"
        );
        let message = error_message(confirm, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("not found"), "{message}");
        // The confirm's own bound, as a store without a body limit would need it: a small
        // upload, grown past the limit where the embedded store keeps its files.
        assert_eq!(app.put(&grant, jpeg(16, 16)).await.status(), StatusCode::OK);
        let file = app
            .data_dir
            .path()
            .join("objects/portrait")
            .join(&grant.photo_key);
        let grown = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        grown.set_len(app::domain::MAX_PICTURE_BYTES + 1).unwrap();
        let message = error_message(
            app.confirm(&token, &grant.photo_key).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains("too large"), "{message}");
    } else {
        assert_eq!(put.status(), StatusCode::OK, "the store took the body");
        let message = error_message(confirm, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("too large"), "{message}");
    }
    assert!(
        !app.stored(&grant.photo_key).await,
        "the oversized object is deleted"
    );
    assert_eq!(app.objects_of(&user_id).await, vec![kept_key.clone()]);
    assert_eq!(app.picture_key(&token).await, Some(kept_key));
    assert_eq!(app.picture_bytes(&token).await, kept);
}

/// The upload URL stays valid after the confirm, but what it writes is the upload's key, never
/// the checked copy: the picture's bytes cannot change, and what was written goes away.
#[tokio::test]
async fn a_confirmed_picture_cannot_be_overwritten_through_its_upload_url() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let user_id = app.profile(&token).await["id"].as_str().unwrap().to_owned();
    let picture = jpeg(32, 32);
    for srs in [false, true] {
        let grant = match srs {
            false => app.grant(&token, "image/jpeg", picture.len()).await,
            true => app.srs_grant(&token, "image/jpeg").await,
        };
        assert_eq!(
            app.put(&grant, picture.clone()).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            app.confirm(&token, &grant.photo_key).await.status(),
            StatusCode::OK
        );
        let stored = app.picture_key(&token).await.unwrap();

        // Other bytes of the same length, as HTML: the storage takes them (the URL is valid)...
        let mut html = b"<html><script>alert(1)</script>".to_vec();
        html.resize(picture.len(), b' ');
        assert_eq!(app.put(&grant, html).await.status(), StatusCode::OK);
        // ...but the picture is unchanged, and so is what the profile points at.
        assert_eq!(app.picture_bytes(&token).await, picture, "srs: {srs}");
        assert_eq!(app.picture_key(&token).await, Some(stored.clone()));
        // Confirming again does not bring the new bytes in either.
        assert_eq!(
            app.confirm(&token, &grant.photo_key).await.status(),
            StatusCode::OK
        );
        assert_eq!(app.picture_bytes(&token).await, picture);

        // Once the URL expired, the prefix audit removes what it wrote.
        let report = app.maintenance_after(LATER).await;
        assert_eq!(report.orphans_removed, 1, "srs: {srs}");
        assert_eq!(app.objects_of(&user_id).await, vec![stored]);
    }
}

#[tokio::test]
async fn a_put_to_a_replaced_or_removed_pictures_url_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    let token = app.token(GRACE).await;
    let user_id = app.profile(&token).await["id"].as_str().unwrap().to_owned();
    let (first, second) = (jpeg(16, 16), jpeg(24, 24));
    let replaced = app.grant(&token, "image/jpeg", first.len()).await;
    app.put_ok(&replaced, first.clone()).await;
    app.confirm(&token, &replaced.photo_key).await;
    let removed = app.srs_grant(&token, "image/jpeg").await;
    app.put_ok(&removed, second.clone()).await;
    app.confirm(&token, &removed.photo_key).await;
    assert_eq!(
        app.delete("/api/auth/user/picture", Some(&token))
            .await
            .status(),
        StatusCode::OK
    );
    assert!(app.objects_of(&user_id).await.is_empty());

    // Both URLs still work, and write objects the database knows nothing about.
    assert_eq!(app.put(&replaced, first).await.status(), StatusCode::OK);
    assert_eq!(app.put(&removed, second).await.status(), StatusCode::OK);
    assert_eq!(app.objects_of(&user_id).await.len(), 2);
    assert!(app.profile(&token).await["pictureUrl"].is_null());

    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.orphans_removed, 2);
    assert!(app.objects_of(&user_id).await.is_empty(), "no orphan left");
    // Audited once: a later pass has nothing to do for these URLs.
    assert_eq!(app.maintenance_after(LATER).await.orphans_removed, 0);
}
