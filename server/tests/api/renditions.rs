//! Small renditions: a picture uploaded with its 128×128 rendition is listed with the small one
//! and shown in full on the profile; both are checked like one, and removed together.

use reqwest::StatusCode;
use serde_json::json;

use std::time::Duration;

use crate::helpers::{error_message, jpeg, key_in_url, png, TestApp, ADA, GRACE};

/// Well after every URL issued in a test expired: maintenance passes run "then".
const LATER: Duration = Duration::from_secs(2 * 3600);

/// A signed-in person: the app, their token, id and name.
async fn grace() -> (TestApp, String, String, String) {
    let app = TestApp::spawn().await;
    let token = app.token(GRACE).await;
    let profile = app.profile(&token).await;
    let id = profile["id"].as_str().unwrap().to_owned();
    let name = profile["name"].as_str().unwrap().to_owned();
    (app, token, id, name)
}

/// The editor's upload: the picture and its small rendition, PUT and confirmed. Returns the
/// stored picture's key.
async fn upload_with_small(app: &TestApp, token: &str, picture: &[u8], small: &[u8]) -> String {
    let (grant, small_grant) = app
        .grant_with_small(token, picture.len(), small.len())
        .await;
    app.put_ok(&grant, picture.to_vec()).await;
    app.put_ok(&small_grant, small.to_vec()).await;
    let confirm = app.confirm(token, &grant.photo_key).await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let body: serde_json::Value = confirm.json().await.unwrap();
    key_in_url(body["profile"]["pictureUrl"].as_str().unwrap())
}

fn small_of(key: &str) -> String {
    app::domain::PhotoKey::parse(key)
        .unwrap()
        .small()
        .to_string()
}

async fn served(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn lists_show_the_small_rendition_and_the_profile_the_picture() {
    let (app, token, id, name) = grace().await;
    let (picture, small) = (jpeg(512, 512), jpeg(128, 128));
    let key = upload_with_small(&app, &token, &picture, &small).await;
    assert_eq!(app.picture_bytes(&token).await, picture);

    let listed = app.listed(&token, &name).await;
    let url = listed.picture_url.expect("a listed picture");
    assert_eq!(key_in_url(&url), small_of(&key));
    assert_eq!(served(&url).await, small);

    // Both renditions are kept under the picture's key; the uploads are gone.
    let mut kept = vec![key.clone(), small_of(&key)];
    kept.sort();
    assert_eq!(app.objects_of(&id).await, kept);
    // ...and nothing is taken for an orphan once the URLs expired.
    assert_eq!(app.maintenance_after(LATER).await.orphans_removed, 0);
    assert_eq!(app.objects_of(&id).await, kept);
}

#[tokio::test]
async fn a_picture_without_a_small_rendition_is_shown_in_full_everywhere() {
    let (app, token, _, name) = grace().await;
    // As the SRS uploads: no small rendition asked for.
    let (key, _) = app.upload_jpeg(&token, jpeg(64, 64)).await;
    let listed = app.listed(&token, &name).await;
    assert_eq!(key_in_url(&listed.picture_url.unwrap()), key);

    // One asked for but never PUT: the picture is kept without it.
    let picture = jpeg(80, 80);
    let (grant, _) = app.grant_with_small(&token, picture.len(), 1000).await;
    app.put_ok(&grant, picture.clone()).await;
    assert_eq!(
        app.confirm(&token, &grant.photo_key).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.picture_bytes(&token).await, picture);
    let listed = app.listed(&token, &name).await;
    let url = listed.picture_url.unwrap();
    assert_eq!(Some(key_in_url(&url)), app.picture_key(&token).await);
    assert_eq!(served(&url).await, picture);
}

#[tokio::test]
async fn a_bad_small_rendition_refuses_the_upload_and_keeps_the_picture_there_was() {
    let (app, token, id, _) = grace().await;
    let kept = upload_with_small(&app, &token, &jpeg(512, 512), &jpeg(128, 128)).await;
    let mut objects = vec![kept.clone(), small_of(&kept)];
    objects.sort();

    let not_small = jpeg(512, 512);
    let disguised = png(128, 128);
    for (small, expected) in [
        (not_small, "The small image is 512×512 pixels"),
        (disguised, "not a JPG image"),
    ] {
        let picture = jpeg(256, 256);
        let (grant, small_grant) = app
            .grant_with_small(&token, picture.len(), small.len())
            .await;
        app.put_ok(&grant, picture).await;
        app.put_ok(&small_grant, small).await;
        let refused = app.confirm(&token, &grant.photo_key).await;
        let message = error_message(refused, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(expected), "{message}");
        // Nothing is lost, and nothing is left behind: not the uploads, not their copies.
        assert_eq!(app.picture_key(&token).await, Some(kept.clone()));
        assert_eq!(app.objects_of(&id).await, objects);
    }
}

#[tokio::test]
async fn a_small_rendition_must_be_announced_small() {
    let (app, token, _, _) = grace().await;
    for (length, expected) in [
        (
            300_000,
            "The small image is too large: the limit is 256 KB.",
        ),
        (0, "The small image is empty."),
    ] {
        let body = json!({ "fileName": "me.jpg", "contentType": "image/jpeg",
            "contentLength": 1000, "smallContentLength": length });
        let response = app
            .post("/api/auth/user/picture/upload-url", Some(&token), &body)
            .await;
        assert_eq!(
            error_message(response, StatusCode::BAD_REQUEST).await,
            expected
        );
    }
    // Its length is signed: the storage refuses another body.
    let (_, small_grant) = app.grant_with_small(&token, 1000, 500).await;
    let put = app.put(&small_grant, vec![0xFF; 600]).await;
    assert!(put.status().is_client_error(), "PUT: {}", put.status());
}

#[tokio::test]
async fn replacing_or_removing_a_picture_removes_both_renditions() {
    let (app, token, id, _) = grace().await;
    upload_with_small(&app, &token, &jpeg(512, 512), &jpeg(128, 128)).await;
    let second = upload_with_small(&app, &token, &jpeg(500, 500), &jpeg(125, 125)).await;
    let mut objects = vec![second.clone(), small_of(&second)];
    objects.sort();
    assert_eq!(app.objects_of(&id).await, objects);

    // By its owner...
    let removed = app.delete("/api/auth/user/picture", Some(&token)).await;
    assert_eq!(removed.status(), StatusCode::OK);
    assert!(app.objects_of(&id).await.is_empty());

    // ...and by an administrator.
    upload_with_small(&app, &token, &jpeg(512, 512), &jpeg(128, 128)).await;
    let admin = app.token(ADA).await;
    let path = format!("/api/users/picture?id={id}");
    assert_eq!(
        app.delete(&path, Some(&admin)).await.status(),
        StatusCode::OK
    );
    assert!(app.objects_of(&id).await.is_empty());
}

#[tokio::test]
async fn an_abandoned_upload_is_swept_with_its_small_rendition() {
    let (app, token, id, _) = grace().await;
    let (picture, small) = (jpeg(512, 512), jpeg(128, 128));
    let (grant, small_grant) = app
        .grant_with_small(&token, picture.len(), small.len())
        .await;
    app.put_ok(&grant, picture).await;
    app.put_ok(&small_grant, small).await;
    assert_eq!(app.objects_of(&id).await.len(), 2);

    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.uploads_swept, 1);
    assert!(app.objects_of(&id).await.is_empty(), "both swept");
}
