//! The directory: `GET /api/users` in pages, its search, and administrators removing someone's
//! picture.

use std::collections::HashSet;
use std::time::Duration;

use app::api::{RemovedPicture, UserSummary};
use app::domain::{search_key, ImageContentType, KeyKind, PhotoKey, UserId};
use reqwest::StatusCode;

use crate::helpers::{error_message, jpeg, TestApp, ADA, GRACE};

/// Well after every URL issued in a test expired: maintenance passes run "then".
const LATER: Duration = Duration::from_secs(2 * 3600);

/// Adds people straight to the database, as the directory's sign-ins would have (whatever
/// the set-up's identity provider): `(name, email, with a picture key)`. Their ids, in order.
async fn add_people(app: &TestApp, people: &[(&str, &str, bool)]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for (name, email, picture) in people {
        let id = format!("t{}", uuid::Uuid::new_v4().simple());
        let key = picture.then(|| {
            let owner = UserId::parse(id.clone()).unwrap();
            PhotoKey::generate(&owner, KeyKind::Picture, ImageContentType::Jpeg, 1, 2).to_string()
        });
        let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
        rows.push(format!(
            "({}, {}, {}, {}, {}, {}, '2025-01-01')",
            quote(&id),
            quote(email),
            quote(name),
            quote(&search_key(name)),
            quote(&search_key(email)),
            key.as_deref().map_or("NULL".to_owned(), quote),
        ));
        ids.push(id);
    }
    for chunk in rows.chunks(200) {
        app.sql(&format!(
            "INSERT INTO users (id, email, name, name_key, email_key, photo_key, joined_at) \
             VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
    ids
}

/// One page: its rows, and the path of the next one from the `Link` header.
async fn page(app: &TestApp, token: &str, path: &str) -> (Vec<UserSummary>, Option<String>) {
    let response = app.get(path, Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let next = response.headers().get("link").map(|link| {
        let link = link.to_str().unwrap();
        let target = link
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("a next link: {link}"));
        target.to_owned()
    });
    (response.json().await.unwrap(), next)
}

/// Every page from `path` on, following the links.
async fn walk(app: &TestApp, token: &str, path: &str) -> (Vec<UserSummary>, usize) {
    let (mut all, mut next) = page(app, token, path).await;
    let mut pages = 1;
    while let Some(path) = next {
        let (rows, following) = page(app, token, &path).await;
        assert!(!rows.is_empty(), "a page behind a link has rows");
        all.extend(rows);
        next = following;
        pages += 1;
    }
    (all, pages)
}

/// A server, and the tokens of its administrator (Ada) and of a member (Grace). Both have
/// signed in, so both are in the directory in every set-up (with Cognito a person's row is made
/// at their first sign-in).
async fn admin_and_member() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let admin = app.token(ADA).await;
    let member = app.token(GRACE).await;
    (app, admin, member)
}

fn names(rows: &[UserSummary]) -> Vec<&str> {
    rows.iter().map(|row| row.name.as_str()).collect()
}

#[tokio::test]
async fn pages_of_fifty_visit_everyone_once_in_name_order() {
    let (app, _, token) = admin_and_member().await;
    // Few names for many people: ties, settled by id, and names differing only in case.
    let mut people = Vec::new();
    for n in 0..118 {
        let name = ["Ann Lee", "ann lee", "Zed", "Émile Zola", "Bob", "bob"][n % 6];
        people.push((name, "someone@example.com", n % 2 == 0));
    }
    let added: HashSet<String> = add_people(&app, &people).await.into_iter().collect();

    let (first, next) = page(&app, &token, "/api/users").await;
    assert_eq!(first.len(), 50, "50 by default");
    let next = next.expect("a next page");
    assert!(next.starts_with("/api/users?limit=50&cursor="), "{next}");

    let (all, pages) = walk(&app, &token, "/api/users").await;
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 120, "everyone, the two demo users too");
    let ids: HashSet<&str> = all.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids.len(), 120, "nobody twice");
    assert!(added.iter().all(|id| ids.contains(id.as_str())));
    // The order: folded name, then id.
    let keys: Vec<(String, &str)> = all
        .iter()
        .map(|row| (search_key(&row.name), row.id.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Rows keep the SRS's list shape, pictures signed whether or not the object exists.
    let grace = all.iter().find(|row| row.name == "Grace Hopper").unwrap();
    assert_eq!(grace.initials, "GH");
    let pictured = all.iter().filter(|row| row.picture_url.is_some()).count();
    assert_eq!(pictured, 59);
}

#[tokio::test]
async fn the_limit_defaults_caps_and_refuses_nonsense() {
    let (app, token, _) = admin_and_member().await;
    let people: Vec<_> = (0..230)
        .map(|_| ("Person", "p@example.com", false))
        .collect();
    add_people(&app, &people).await;

    let (rows, next) = page(&app, &token, "/api/users?limit=200").await;
    assert_eq!(rows.len(), 200);
    let next = next.expect("more than 200");
    assert!(next.starts_with("/api/users?limit=200&cursor="), "{next}");
    let (rest, last) = page(&app, &token, &next).await;
    assert_eq!((rest.len(), last), (32, None));

    let (one, next) = page(&app, &token, "/api/users?limit=1").await;
    assert_eq!((one.len(), one[0].name.as_str()), (1, "Ada Dev"));
    assert!(next.is_some());

    // `limit=` with no value is no limit given (the query parser reads it as absent).
    let (rows, _) = page(&app, &token, "/api/users?limit=").await;
    assert_eq!(rows.len(), 50);
    for bad in ["0", "201", "-1", "ten", "2.5", "1e2"] {
        let response = app
            .get(&format!("/api/users?limit={bad}"), Some(&token))
            .await;
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            message, "Invalid limit: use a whole number from 1 to 200.",
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn the_last_page_has_no_link_and_a_tampered_cursor_is_refused() {
    let (app, token, _) = admin_and_member().await;
    let (rows, next) = page(&app, &token, "/api/users").await;
    assert_eq!(
        (names(&rows), next),
        (vec!["Ada Dev", "Grace Hopper"], None)
    );

    let (_, next) = page(&app, &token, "/api/users?limit=1").await;
    let next = next.unwrap();
    let cursor = next.split("cursor=").nth(1).unwrap();
    let (rows, last) = page(&app, &token, &next).await;
    assert_eq!((names(&rows), last), (vec!["Grace Hopper"], None));

    let truncated = &cursor[..cursor.len() - 1];
    // Valid hex, but no id and name inside.
    let no_separator = "616461";
    let bad_id = "2f2e2e0061"; // "/.." then the name "a"
    for bad in [truncated, no_separator, bad_id, "not-hex", "%00"] {
        let response = app
            .get(&format!("/api/users?cursor={bad}"), Some(&token))
            .await;
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert!(message.starts_with("Invalid cursor"), "{bad}: {message}");
    }
}

#[tokio::test]
async fn search_finds_name_and_email_prefixes_whatever_the_case() {
    let (app, token, _) = admin_and_member().await;
    add_people(
        &app,
        &[
            ("Alice Smith", "asmith@corp.example", true),
            ("ALICIA Jones", "ajones@corp.example", false),
            ("Bob Stone", "Ali.Stone@corp.example", false),
            ("Malik Ali", "mali@corp.example", false),
            ("100% Real", "real@corp.example", false),
            ("10_0 Under", "under@corp.example", false),
            ("Ålvaro Ñúñez", "alvaro@corp.example", false),
        ],
    )
    .await;
    let search = |q: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let (rows, next) = page(app, token, &format!("/api/users?q={q}")).await;
            assert_eq!(next, None, "{q}: one page");
            names(&rows)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    let ali = ["Alice Smith", "ALICIA Jones", "Bob Stone"];
    assert_eq!(search("ali").await, ali, "names and emails, in name order");
    assert_eq!(search("ALI").await, ali);
    assert_eq!(search("%20aLi%20").await, ali, "blanks around are ignored");
    assert_eq!(search("alice%20s").await, ["Alice Smith"]);
    assert_eq!(search("asmith").await, ["Alice Smith"], "an email prefix");
    assert_eq!(
        search("corp").await,
        Vec::<String>::new(),
        "only the prefix"
    );
    assert_eq!(search("smith").await, Vec::<String>::new());
    assert_eq!(search("%C3%A5LV").await, ["Ålvaro Ñúñez"], "beyond ASCII");
    // `%` and `_` are characters, not wildcards.
    assert_eq!(search("100%25").await, ["100% Real"]);
    assert_eq!(search("10_").await, ["10_0 Under"]);
    assert_eq!(search("%25").await, Vec::<String>::new());
    assert_eq!(search("_").await, Vec::<String>::new());
    assert_eq!(search("zzz").await, Vec::<String>::new());
    // An empty search is no search.
    assert_eq!(search("").await.len(), 9);

    // A search comes in pages too; the link keeps it.
    let (rows, next) = page(&app, &token, "/api/users?q=ALI&limit=2").await;
    assert_eq!(names(&rows), ["Alice Smith", "ALICIA Jones"]);
    let next = next.unwrap();
    assert!(
        next.starts_with("/api/users?limit=2&q=ali&cursor="),
        "{next}"
    );
    let (rows, last) = page(&app, &token, &next).await;
    assert_eq!((names(&rows), last), (vec!["Bob Stone"], None));

    let long = "a".repeat(101);
    let response = app.get(&format!("/api/users?q={long}"), Some(&token)).await;
    error_message(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn an_admin_removes_someones_picture_as_safely_as_its_owner_would() {
    let (app, admin, member) = admin_and_member().await;
    let (key, body) = app.upload_jpeg(&member, jpeg(24, 24)).await;
    let grace = body["profile"]["id"].as_str().unwrap().to_owned();
    let grace_id = UserId::parse(grace.clone()).unwrap();
    assert_eq!(app.picture_attribute(&grace_id).await, Some(key.clone()));

    let path = format!("/api/users/picture?id={grace}");
    let response = app.delete(&path, Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let removed: RemovedPicture = response.json().await.unwrap();
    assert_eq!(removed.message, "Picture removed.");
    assert_eq!(
        (removed.user.id.as_str(), removed.user.name.as_str()),
        (grace.as_str(), "Grace Hopper")
    );
    assert_eq!(removed.user.picture_url, None);

    // Gone from her profile and the list at once; the object and the attribute as after her
    // own removal, at the latest after a maintenance pass.
    assert!(app.profile(&member).await["pictureUrl"].is_null());
    let (rows, _) = page(&app, &admin, "/api/users").await;
    let row = rows.iter().find(|row| row.id == grace).unwrap();
    assert_eq!(row.picture_url, None);
    app.maintenance_after(LATER).await;
    assert!(!app.stored(&key).await);
    assert_eq!(app.picture_attribute(&grace_id).await, None);
    assert_eq!(app.objects_of(&grace).await, Vec::<String>::new());

    // Again: nothing to remove, and it says so.
    let again: RemovedPicture = app.delete(&path, Some(&admin)).await.json().await.unwrap();
    assert_eq!(again.message, "There was no picture to remove.");
}

#[tokio::test]
async fn members_unknown_people_and_strangers_are_refused() {
    let (app, admin, member) = admin_and_member().await;
    let (key, body) = app.upload_jpeg(&admin, jpeg(20, 20)).await;
    let ada = body["profile"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/users/picture?id={ada}");

    let response = app.delete(&path, Some(&member)).await;
    let message = error_message(response, StatusCode::FORBIDDEN).await;
    assert_eq!(
        message,
        "Only administrators can remove another person's picture."
    );
    assert!(app.stored(&key).await, "a member's attempt changes nothing");
    assert!(app.profile(&admin).await["pictureUrl"].is_string());

    let unknown = format!("/api/users/picture?id={}", uuid::Uuid::new_v4());
    let response = app.delete(&unknown, Some(&admin)).await;
    error_message(response, StatusCode::NOT_FOUND).await;

    for token in [None, Some("not-a-jwt")] {
        let response = app.delete(&path, token).await;
        assert_eq!(
            error_message(response, StatusCode::UNAUTHORIZED).await,
            "Please sign in."
        );
        let response = app.get("/api/users?q=ada", token).await;
        error_message(response, StatusCode::UNAUTHORIZED).await;
    }
    assert!(app.stored(&key).await);
}

#[tokio::test]
async fn synthetic_people_are_seeded_once_and_listed_like_anyone() {
    if crate::cognito::moto_endpoint().is_some() {
        eprintln!("skipped: synthetic people are made only beside the embedded issuer");
        return;
    }
    let app = TestApp::spawn_with(&[("PORTRAIT_SEED_PEOPLE", "1500")]).await;
    let token = app.token(GRACE).await;
    let (all, _) = walk(&app, &token, "/api/users?limit=200").await;
    assert_eq!(all.len(), 1502);
    let pictured = all.iter().filter(|row| row.picture_url.is_some()).count();
    assert_eq!(pictured, 750, "half of them with a picture");
    let (alis, _) = walk(&app, &token, "/api/users?q=ali&limit=200").await;
    assert!(alis.iter().all(|row| row.name.starts_with("Ali")));
    assert!(!alis.is_empty());

    // Starting again on the same database adds no one.
    let db = server::db::connect(&app.database_url()).await.unwrap();
    server::embedded::people::seed_people(&db.write, 1500)
        .await
        .unwrap();
    let (again, _) = walk(&app, &token, "/api/users?limit=200").await;
    assert_eq!(again.len(), 1502);
}
