//! What the browser may keep: pictures under URLs that stay the same for a while.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{jpeg, TestApp, ADA};

#[tokio::test]
async fn read_urls_stay_the_same_for_a_while_and_let_the_browser_keep_the_picture() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (_, confirmed) = app.upload_jpeg(&token, jpeg(32, 32)).await;
    let url = confirmed["profile"]["pictureUrl"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every view within the window gets the same URL: the profile, again, and the user list.
    // (The window is 450 s; should this test straddle its end, the later views agree.)
    let profile = app.profile(&token).await;
    let users: Value = app
        .get("/api/users", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let listed = users
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["id"] == profile["id"])
        .expect("Ada is listed")["pictureUrl"]
        .clone();
    let again = app.profile(&token).await["pictureUrl"].clone();
    assert!(
        url == profile["pictureUrl"] || profile["pictureUrl"] == again,
        "{url} / {}",
        profile["pictureUrl"]
    );
    assert!(
        listed == profile["pictureUrl"] || listed == again,
        "{listed}"
    );

    // The store serves it for the browser to keep, privately, for the read URL's lifetime
    // (15 minutes by default), and the URL lives at least that long.
    let served = app.http.get(&url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["cache-control"], "private, max-age=900");
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    let expires: &str = confirmed["profile"]["pictureExpiresAtUtc"]
        .as_str()
        .unwrap();
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left >= time::Duration::seconds(895), "{left} left");

    // The cache lifetime is signed: a URL that asks for longer is refused by the store.
    let stretched = url.replace("max-age%3D900", "max-age%3D31536000");
    assert_ne!(stretched, url);
    let refused = app.http.get(&stretched).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // A new picture is a new key, so a new URL: never hidden behind the one the browser kept.
    let (_, replaced) = app.upload_jpeg(&token, jpeg(40, 40)).await;
    assert_ne!(replaced["profile"]["pictureUrl"].as_str().unwrap(), url);
}
