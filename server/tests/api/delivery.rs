//! What the browser may keep: pictures under URLs that stay the same for a while.

use reqwest::StatusCode;

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
    let listed = app.listed(&token, "Ada Dev").await.picture_url;
    let again = app.profile(&token).await["pictureUrl"].clone();
    assert!(
        url == profile["pictureUrl"] || profile["pictureUrl"] == again,
        "{url} / {}",
        profile["pictureUrl"]
    );
    let listed = serde_json::Value::from(listed);
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

/// A built site of one WebAssembly file (compressible, as real ones are) under `pkg/`, named
/// `name`, with a brotli file beside it when `precompressed` (its bytes are a marker: the test
/// checks that they are sent as they are, not made on the fly).
fn site(name: &str, precompressed: bool) -> (tempfile::TempDir, Vec<u8>) {
    let site = tempfile::tempdir().unwrap();
    let pkg = site.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let wasm: Vec<u8> = b"\0asm\x01\0\0\0"
        .iter()
        .copied()
        .chain((0..20_000u32).flat_map(|i| (i % 97).to_le_bytes()))
        .collect();
    std::fs::write(pkg.join(name), &wasm).unwrap();
    if precompressed {
        std::fs::write(pkg.join(format!("{name}.br")), b"precompressed").unwrap();
    }
    (site, wasm)
}

#[tokio::test]
async fn a_release_build_is_kept_for_a_year_and_sent_precompressed() {
    let (site, _) = site("portrait.Zk3x9Qw2.wasm", true);
    let root = site.path().display().to_string();
    let app = TestApp::spawn_with(&[
        ("LEPTOS_SITE_ROOT", root.as_str()),
        ("LEPTOS_HASH_FILES", "true"),
    ])
    .await;
    let served = app
        .http
        .get(app.url("/pkg/portrait.Zk3x9Qw2.wasm"))
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let headers = served.headers().clone();
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["content-type"], "application/wasm");
    assert_eq!(served.bytes().await.unwrap().as_ref(), b"precompressed");
}

#[tokio::test]
async fn a_development_build_is_asked_for_each_time_and_compressed_on_the_fly() {
    let (site, wasm) = site("portrait.wasm", false);
    let root = site.path().display().to_string();
    let app = TestApp::spawn_with(&[("LEPTOS_SITE_ROOT", root.as_str())]).await;
    let url = app.url("/pkg/portrait.wasm");

    let compressed = app
        .http
        .get(&url)
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.status(), StatusCode::OK);
    assert_eq!(compressed.headers()["cache-control"], "no-cache");
    assert_eq!(compressed.headers()["content-encoding"], "br");
    let modified = compressed.headers()["last-modified"].clone();
    let body = compressed.bytes().await.unwrap();
    assert!(
        body.len() < wasm.len() / 4,
        "{} of {} bytes",
        body.len(),
        wasm.len()
    );

    // A client that takes no compression gets the file as it is; an unchanged one is a 304.
    let plain = app.http.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.bytes().await.unwrap().to_vec(), wasm);
    let unchanged = app
        .http
        .get(&url)
        .header("if-modified-since", modified)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.headers()["cache-control"], "no-cache");
}
