//! Several servers of one organisation, each an operating-system process of its own: one
//! database, one bucket, one identity provider.

use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{stream, StreamExt};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{jpeg, key_in_url, TestApp, ADA};

const LATER: Duration = Duration::from_secs(2 * 3600);

/// What a test of several servers needs: one database that both can reach.
fn skip_without_postgres(app: &TestApp) -> bool {
    if app.postgres.is_none() {
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        eprintln!(
            "{test}: skipped, several servers share a PostgreSQL database (SQLite is one server's)"
        );
    }
    app.postgres.is_none()
}

/// Asks for `n` upload URLs as one user, alternately at each server, 64 at a time: how many
/// were granted (every other answer a 429), and how long it took.
async fn ask_for_urls(servers: [&TestApp; 2], n: usize) -> (usize, Duration) {
    let tokens = [servers[0].token(ADA).await, servers[1].token(ADA).await];
    assert_eq!(
        servers[0].profile(&tokens[0]).await["id"],
        servers[1].profile(&tokens[1]).await["id"]
    );
    let body = json!({ "fileName": "me.jpg", "contentType": "image/jpeg", "contentLength": 100 });
    let started = Instant::now();
    let requests = (0..n).map(|i| {
        let (app, token, body) = (servers[i % 2], &tokens[i % 2], &body);
        async move {
            app.post("/api/auth/user/picture/upload-url", Some(token), body)
                .await
                .status()
        }
    });
    let statuses: Vec<StatusCode> = stream::iter(requests).buffer_unordered(64).collect().await;
    let elapsed = started.elapsed();
    let granted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(granted + refused, n, "{statuses:?}");
    (granted, elapsed)
}

#[tokio::test]
async fn two_servers_together_grant_no_more_upload_urls_than_the_limit() {
    const PER_MINUTE: usize = 4;
    let a = TestApp::spawn_with(&[
        ("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "4"),
        ("PORTRAIT_MAX_PENDING_UPLOADS", "unlimited"),
    ])
    .await;
    if skip_without_postgres(&a) {
        return;
    }
    let b = a.spawn_process_beside().await;
    let (granted, elapsed) = ask_for_urls([&a, &b], 4 * PER_MINUTE).await;
    // The allowance refills one URL every 15 s: all the time the requests took can add. Each
    // server counting alone would grant twice the limit.
    let refilled = (elapsed.as_secs() / 15) as usize;
    assert!(
        (PER_MINUTE..=PER_MINUTE + refilled).contains(&granted),
        "{granted} granted by two servers in {elapsed:?}"
    );
}

#[tokio::test]
async fn leased_allowances_still_add_up_to_the_limit_across_servers() {
    // 1,200 a minute (20 a second): each server leases up to 19 URLs ahead of need.
    const PER_MINUTE: usize = 1_200;
    const MOST_AHEAD: usize = 19;
    let a = TestApp::spawn_with(&[
        ("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "1200"),
        ("PORTRAIT_MAX_PENDING_UPLOADS", "unlimited"),
    ])
    .await;
    if skip_without_postgres(&a) {
        return;
    }
    let b = a.spawn_process_beside().await;
    let (granted, elapsed) = ask_for_urls([&a, &b], PER_MINUTE + 400).await;
    // Never more than the limit and its refill (one URL every 50 ms); fewer only by what a
    // server's lease can hold when the allowance runs out, since both keep being asked.
    let refilled = (elapsed.as_millis() / 50) as usize + 1;
    assert!(
        (PER_MINUTE - 2 * MOST_AHEAD..=PER_MINUTE + refilled).contains(&granted),
        "{granted} granted by two servers in {elapsed:?}"
    );
}

#[tokio::test]
async fn confirms_deletes_and_sweeps_racing_across_two_servers_leave_one_consistent_picture() {
    let a = TestApp::spawn_with(&[
        ("PORTRAIT_MAX_PENDING_UPLOADS", "100"),
        ("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "1000"),
    ])
    .await;
    if skip_without_postgres(&a) {
        return;
    }
    if a.embedded_s3.is_some() {
        eprintln!(
            "confirms_deletes_and_sweeps_racing_across_two_servers: skipped, needs a store both \
             servers share (the storage is each server's embedded one)"
        );
        return;
    }
    let b = a.spawn_process_beside().await;
    let servers = [(&a, a.token(ADA).await), (&b, b.token(ADA).await)];
    let user_id = a.profile(&servers[0].1).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = app::domain::UserId::parse(user_id.clone()).unwrap();

    // Every upload is granted and PUT first, alternately at each server: a sweep dates itself
    // hours ahead, so a PUT after it would be one that only a URL outliving its expiry could
    // make. Then, all at once on both servers: confirms at the server that did not grant the
    // upload, removals, and maintenance passes (retries and sweeps; the second server's are run
    // beside its process, by its configuration's state in this one); three uploads are never
    // confirmed, for the sweeps.
    let puts = (0..15u32).map(|n| {
        let (here, token) = (servers[n as usize % 2].0, &servers[n as usize % 2].1);
        async move {
            let picture = jpeg(8 + n, 8);
            let grant = here.grant(token, "image/jpeg", picture.len()).await;
            assert!(here.put(&grant, picture).await.status().is_success());
            grant.photo_key
        }
    });
    let keys = join_all(puts).await;
    enum Step {
        Confirm(String),
        Remove,
        Maintain,
    }
    let mut steps: Vec<Step> = keys.into_iter().skip(3).map(Step::Confirm).collect();
    steps.extend((0..4).map(|_| Step::Remove));
    steps.extend((0..4).map(|_| Step::Maintain));
    let runs = steps.into_iter().enumerate().map(|(i, step)| {
        let servers = &servers;
        async move {
            let (here, token) = (servers[i % 2].0, &servers[i % 2].1);
            match step {
                Step::Confirm(key) => {
                    // 400 when a racing sweep took the upload first; 503 when the sweep
                    // deleted the object between the confirm's HEAD and its read of the first
                    // bytes (the GET's NoSuchKey is not told apart from an outage there).
                    let status = here.confirm(token, &key).await.status();
                    assert!(
                        [
                            StatusCode::OK,
                            StatusCode::BAD_REQUEST,
                            StatusCode::SERVICE_UNAVAILABLE
                        ]
                        .contains(&status),
                        "confirm: {status}"
                    );
                }
                Step::Remove => {
                    let removed = here.delete("/api/auth/user/picture", Some(token)).await;
                    assert_eq!(removed.status(), StatusCode::OK);
                }
                Step::Maintain => {
                    here.maintenance_after(LATER).await;
                }
            }
        }
    });
    join_all(runs).await;
    settle(&a, &b).await;
    assert_consistent(&a, &b, &id).await;

    // And a last upload, granted at one server and confirmed at the other, is the one picture.
    let picture = jpeg(30, 30);
    let grant = b.grant(&servers[1].1, "image/jpeg", picture.len()).await;
    assert!(b.put(&grant, picture).await.status().is_success());
    let confirmed = a.confirm(&servers[0].1, &grant.photo_key).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    // The confirm keeps a copy under a key of its own, which no upload URL can write.
    let body: serde_json::Value = confirmed.json().await.unwrap();
    let stored = key_in_url(
        body["profile"]["pictureUrl"]
            .as_str()
            .expect("a picture URL"),
    );
    settle(&a, &b).await;
    assert_eq!(
        assert_consistent(&a, &b, &id).await,
        Some(stored),
        "the last upload is the picture"
    );
}

/// Maintenance passes on both servers until the shared queue is empty (attribute syncs that
/// raced stay queued until a pass finds the directory in agreement; a user's deletions wait
/// for them, so this can take a few passes). Each pass dates itself a day later than the one
/// before, past the back-off of tasks that failed while the servers raced.
async fn settle(a: &TestApp, b: &TestApp) {
    for day in 1..=5 {
        if a.state.users.queue_depth().await.unwrap() == 0 {
            return;
        }
        let later = Duration::from_secs(day * 24 * 3600);
        a.maintenance_after(later).await;
        b.maintenance_after(later).await;
    }
    assert_eq!(
        a.state.users.queue_depth().await.unwrap(),
        0,
        "the queue drains"
    );
}

/// Both servers see the same picture, which is the only object under the user's prefix and
/// what the directory's attribute says. Returns that picture.
async fn assert_consistent(a: &TestApp, b: &TestApp, id: &app::domain::UserId) -> Option<String> {
    let key = |app: &TestApp| {
        let id = id.clone();
        let users = app.state.users.clone();
        async move {
            users
                .get(&id)
                .await
                .unwrap()
                .unwrap()
                .photo_key
                .map(|k| k.to_string())
        }
    };
    let current = key(a).await;
    assert_eq!(current, key(b).await, "both servers see the same picture");
    let objects = a.objects_of(id.as_str()).await;
    assert_eq!(
        objects,
        current.iter().cloned().collect::<Vec<_>>(),
        "no orphan object"
    );
    assert_eq!(
        a.picture_attribute(id).await,
        current,
        "the directory agrees"
    );
    assert_eq!(b.picture_attribute(id).await, current);
    current
}
