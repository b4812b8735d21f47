//! Nothing lost, nothing left behind: real outages of the storage, races, abandoned uploads.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{error_message, jpeg, TestApp, ADA};

const LATER: Duration = Duration::from_secs(2 * 3600);

#[tokio::test]
async fn storage_down_at_confirm_is_a_503_and_the_old_picture_stays() {
    let app = TestApp::spawn().await;
    let Some(s3) = app.embedded_s3_or_skip() else {
        return;
    };
    let token = app.token(ADA).await;
    let (kept, _) = app.upload_jpeg(&token, jpeg(16, 16)).await;

    let picture = jpeg(24, 24);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&grant, picture).await;
    s3.stop().await;
    let message = error_message(
        app.confirm(&token, &grant.photo_key).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(
        message,
        "The storage is unavailable right now; nothing was changed. Please try again."
    );
    // Presigning needs no round trip, so the profile still shows the picture the user had.
    assert!(app.profile(&token).await["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&kept));

    // Once the storage is back, the same confirm goes through and the old object goes away.
    s3.restart().await.unwrap();
    assert_eq!(
        app.confirm(&token, &grant.photo_key).await.status(),
        StatusCode::OK
    );
    let user_id = app.profile(&token).await["id"].as_str().unwrap().to_owned();
    let stored = app.picture_key(&token).await.unwrap();
    assert_ne!(stored, kept);
    assert_eq!(app.objects_of(&user_id).await, vec![stored]);
}

#[tokio::test]
async fn storage_down_at_removal_queues_the_deletion_until_it_is_back() {
    let app = TestApp::spawn().await;
    let Some(s3) = app.embedded_s3_or_skip() else {
        return;
    };
    let token = app.token(ADA).await;
    let (key, body) = app.upload_jpeg(&token, jpeg(16, 16)).await;
    let user_id = body["profile"]["id"].as_str().unwrap().to_owned();

    s3.stop().await;
    let removed = app.delete("/api/auth/user/picture", Some(&token)).await;
    assert_eq!(removed.status(), StatusCode::OK);
    assert!(app.profile(&token).await["pictureUrl"].is_null());
    assert_eq!(
        app.state.users.queue_depth().await.unwrap(),
        1,
        "the deletion is queued"
    );

    // A pass while the storage is still down fails and keeps the task.
    let report = app.maintenance_after(LATER).await;
    assert_eq!((report.tasks_done, report.tasks_failed), (0, 1));

    s3.restart().await.unwrap();
    assert!(app.stored(&key).await, "still there until the queue drains");
    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.tasks_done, 1);
    assert_eq!(app.state.users.queue_depth().await.unwrap(), 0);
    assert!(app.objects_of(&user_id).await.is_empty(), "no orphan left");
}

#[tokio::test]
async fn abandoned_uploads_are_swept_after_expiry_and_confirmed_ones_never() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (kept, body) = app.upload_jpeg(&token, jpeg(16, 16)).await;
    let user_id = body["profile"]["id"].as_str().unwrap().to_owned();

    let picture = jpeg(20, 20);
    let abandoned = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&abandoned, picture).await;

    // Not before the URL expired (and the grace passed): the user may still confirm.
    assert_eq!(app.maintenance_after(Duration::ZERO).await.uploads_swept, 0);
    assert!(app.stored(&abandoned.photo_key).await);

    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.uploads_swept, 1);
    assert_eq!(app.objects_of(&user_id).await, vec![kept.clone()]);
    // A confirm that comes too late finds nothing to confirm.
    assert_eq!(
        app.confirm(&token, &abandoned.photo_key).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Sweeping again finds nothing more.
    assert_eq!(app.maintenance_after(LATER).await.uploads_swept, 0);
    assert!(app.profile(&token).await["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&kept));
}

#[tokio::test]
async fn fifty_parallel_uploads_end_with_exactly_one_picture_and_one_object() {
    let app = TestApp::spawn_with(&[
        ("PORTRAIT_MAX_PENDING_UPLOADS", "100"),
        ("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "1000"),
    ])
    .await;
    let token = app.token(ADA).await;
    let uploads = (0..50u32).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            let picture = jpeg(8 + i, 8);
            let grant = app.grant(token, "image/jpeg", picture.len()).await;
            assert!(app.put(&grant, picture).await.status().is_success());
            let confirm = app.confirm(token, &grant.photo_key).await;
            assert_eq!(confirm.status(), StatusCode::OK);
            grant.photo_key
        }
    });
    let keys = join_all(uploads).await;
    // Attribute syncs that raced one another keep their task queued rather than finish on a
    // write that may be stale, and hold the deletions behind them: later passes settle it (a
    // pass runs a user's deletions only once their sync is done, so it can take two).
    for _ in 0..3 {
        if app.state.users.queue_depth().await.unwrap() == 0 {
            break;
        }
        app.maintenance_after(LATER).await;
    }

    let profile = app.profile(&token).await;
    let user_id = profile["id"].as_str().unwrap().to_owned();
    let current = app.picture_key(&token).await.expect("a picture");
    // The picture is the copy of one of the 50 uploads (each a JPEG of its own width).
    let served = image::load_from_memory(&app.picture_bytes(&token).await).unwrap();
    assert!((8..58).contains(&served.width()) && served.height() == 8);
    assert_eq!(keys.len(), 50);
    assert_eq!(
        app.objects_of(&user_id).await,
        vec![current.clone()],
        "exactly one object"
    );
    let id = app::domain::UserId::parse(user_id).unwrap();
    assert_eq!(app.picture_attribute(&id).await, Some(current));
    assert_eq!(app.state.users.queue_depth().await.unwrap(), 0);
    let _: Value = profile;
}

#[tokio::test]
async fn upload_urls_are_rate_limited_per_user_with_retry_after() {
    let app = TestApp::spawn_with(&[("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "3")]).await;
    let ada = app.token(ADA).await;
    for _ in 0..3 {
        app.grant(&ada, "image/jpeg", 100).await;
    }
    let body = serde_json::json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": 100 });
    let refused = app
        .post("/api/auth/user/picture/upload-url", Some(&ada), &body)
        .await;
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let message = error_message(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(message.contains("Too many upload requests"), "{message}");
    // Another user has an allowance of their own.
    let grace = app.token(crate::helpers::GRACE).await;
    app.grant(&grace, "image/jpeg", 100).await;
}

#[tokio::test]
async fn unconfirmed_uploads_per_user_are_capped() {
    let app = TestApp::spawn_with(&[("PORTRAIT_MAX_PENDING_UPLOADS", "2")]).await;
    let token = app.token(ADA).await;
    let picture = jpeg(16, 16);
    let first = app.grant(&token, "image/jpeg", picture.len()).await;
    app.grant(&token, "image/jpeg", 100).await;
    let body = serde_json::json!({ "fileName": "a.jpg", "contentType": "image/jpeg", "contentLength": 100 });
    let refused = app
        .post("/api/auth/user/picture/upload-url", Some(&token), &body)
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    let message = error_message(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        message.contains("Too many uploads in progress"),
        "{message}"
    );
    // Confirming one frees its slot.
    app.put_ok(&first, picture).await;
    assert_eq!(
        app.confirm(&token, &first.photo_key).await.status(),
        StatusCode::OK
    );
    app.grant(&token, "image/jpeg", 100).await;
}

/// Runs in the PostgreSQL pass of the suite (a SQLite file cannot be taken away from a running
/// process the same way).
#[tokio::test]
async fn database_down_is_a_503_that_changes_nothing_and_the_flow_resumes() {
    let app = TestApp::spawn().await;
    let Some(database) = &app.postgres else {
        return;
    };
    let token = app.token(ADA).await;
    let (kept, body) = app.upload_jpeg(&token, jpeg(16, 16)).await;
    let user_id = body["profile"]["id"].as_str().unwrap().to_owned();
    let picture = jpeg(24, 24);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&grant, picture).await;

    database.take_offline().await;
    for response in [
        app.confirm(&token, &grant.photo_key).await,
        app.delete("/api/auth/user/picture", Some(&token)).await,
    ] {
        let message = error_message(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(
            message,
            "The database is unavailable right now; nothing was changed. Please try again."
        );
    }
    assert_eq!(
        app.get("/readyz", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        app.stored(&kept).await,
        "the picture the user had is intact"
    );

    database.bring_back().await;
    assert!(app.profile(&token).await["pictureUrl"]
        .as_str()
        .unwrap()
        .contains(&kept));
    assert_eq!(
        app.confirm(&token, &grant.photo_key).await.status(),
        StatusCode::OK
    );
    let stored = app.picture_key(&token).await.unwrap();
    assert_eq!(app.objects_of(&user_id).await, vec![stored]);
}

#[tokio::test]
async fn directory_down_delays_the_attribute_and_the_old_objects_deletion_but_loses_neither() {
    let app = TestApp::spawn().await;
    if app.cognito.is_some() {
        // A shared Cognito stand-in cannot be taken down for one test and brought back; the
        // outbox under test is the same whichever directory fails.
        eprintln!("skipped: needs the embedded directory");
        return;
    }
    let token = app.token(ADA).await;
    let (first, body) = app.upload_jpeg(&token, jpeg(16, 16)).await;
    let user_id = body["profile"]["id"].as_str().unwrap().to_owned();
    let id = app::domain::UserId::parse(user_id.clone()).unwrap();

    // The directory's storage disappears from under the running app: a real failure of that
    // part alone (the embedded directory keeps its accounts in their own table).
    app.sql("ALTER TABLE local_accounts RENAME TO local_accounts_offline")
        .await;
    let picture = jpeg(24, 24);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&grant, picture).await;
    // The picture change itself is committed: the user sees the new picture at once.
    assert_eq!(
        app.confirm(&token, &grant.photo_key).await.status(),
        StatusCode::OK
    );
    let stored = app.picture_key(&token).await.unwrap();
    assert_ne!(stored, first);
    // But the directory still names the old key, so the old object must not go yet.
    assert!(
        app.stored(&first).await,
        "deleted before the directory stopped pointing at it"
    );
    assert_eq!(
        app.state.users.queue_depth().await.unwrap(),
        2,
        "attribute sync and deletion queued"
    );
    let report = app.maintenance_after(LATER).await;
    assert_eq!(
        (report.tasks_done, report.tasks_failed),
        (0, 1),
        "only the sync is tried"
    );
    assert!(app.stored(&first).await);

    app.sql("ALTER TABLE local_accounts_offline RENAME TO local_accounts")
        .await;
    app.maintenance_after(LATER).await; // the attribute catches up...
    assert_eq!(app.picture_attribute(&id).await, Some(stored.clone()));
    app.maintenance_after(LATER).await; // ...and only then the old object goes.
    assert_eq!(app.state.users.queue_depth().await.unwrap(), 0);
    assert_eq!(app.objects_of(&user_id).await, vec![stored]);
}

/// The count of uploads in progress and the insert are one atomic step.
#[tokio::test]
async fn twenty_parallel_upload_url_requests_with_a_cap_of_two_grant_exactly_two() {
    let app = TestApp::spawn_with(&[
        ("PORTRAIT_MAX_PENDING_UPLOADS", "2"),
        ("PORTRAIT_UPLOAD_URLS_PER_MINUTE", "1000"),
    ])
    .await;
    let token = app.token(ADA).await;
    let body = serde_json::json!({ "fileName": "a.jpg", "contentType": "image/jpeg" });
    let requests =
        (0..20).map(|_| app.post("/api/auth/user/picture/upload-url", Some(&token), &body));
    let statuses: Vec<StatusCode> = join_all(requests)
        .await
        .iter()
        .map(|response| response.status())
        .collect();
    let granted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((granted, refused), (2, 18), "{statuses:?}");
}

/// The sweeper marks an abandoned upload and queues its deletion in one transaction: with the
/// storage down mid-pass the deletion waits in the queue, and nothing is leaked.
#[tokio::test]
async fn an_abandoned_upload_swept_while_the_storage_is_down_is_deleted_once_it_is_back() {
    let app = TestApp::spawn().await;
    let Some(s3) = app.embedded_s3_or_skip() else {
        return;
    };
    let token = app.token(ADA).await;
    let user_id = app.profile(&token).await["id"].as_str().unwrap().to_owned();
    let picture = jpeg(20, 20);
    let abandoned = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&abandoned, picture).await;

    s3.stop().await;
    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.uploads_swept, 1);
    assert_eq!(report.orphans_removed, 0);
    assert_eq!(
        app.state.users.queue_depth().await.unwrap(),
        1,
        "the deletion is queued"
    );

    s3.restart().await.unwrap();
    assert!(app.stored(&abandoned.photo_key).await);
    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.tasks_done, 1);
    assert_eq!(app.state.users.queue_depth().await.unwrap(), 0);
    assert!(app.objects_of(&user_id).await.is_empty(), "no orphan left");
}

/// A task that can never succeed is parked after a bounded number of tries, and the user's
/// deletions behind it then go ahead.
#[tokio::test]
async fn a_task_that_keeps_failing_is_parked_and_stops_blocking_the_users_deletions() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let (first, body) = app.upload_jpeg(&token, jpeg(16, 16)).await;
    let user_id = body["profile"]["id"].as_str().unwrap().to_owned();
    // The directory loses the account for good; the token stays valid until it expires.
    match &app.cognito {
        Some(pool) => {
            pool.client
                .admin_delete_user()
                .user_pool_id(&pool.pool_id)
                .username(ADA)
                .send()
                .await
                .expect("the user is deleted from Cognito");
        }
        None => {
            app.sql("ALTER TABLE local_accounts RENAME TO local_accounts_gone")
                .await
        }
    }
    let picture = jpeg(24, 24);
    let grant = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&grant, picture).await;
    assert_eq!(
        app.confirm(&token, &grant.photo_key).await.status(),
        StatusCode::OK
    );
    let stored = app.picture_key(&token).await.unwrap();
    assert!(app.stored(&first).await, "waits behind the attribute sync");

    // The confirm tried once; each pass tries again, until the last try parks it.
    let mut parked = 0;
    for pass in 1..app::service::MAX_TASK_ATTEMPTS {
        let report = app.maintenance_after(LATER).await;
        assert_eq!(report.tasks_done, 0, "pass {pass}");
        parked += report.tasks_parked;
        if report.tasks_parked == 0 {
            assert_eq!(report.tasks_failed, 1, "pass {pass}");
        }
    }
    assert_eq!(parked, 1);
    // The parked sync no longer holds the deletion back, and is not tried again.
    let report = app.maintenance_after(LATER).await;
    assert_eq!((report.tasks_done, report.tasks_failed), (1, 0));
    assert_eq!(app.objects_of(&user_id).await, vec![stored]);
    assert_eq!(app.state.users.queue_depth().await.unwrap(), 0);
    let report = app.maintenance_after(LATER).await;
    assert_eq!(
        (report.tasks_done, report.tasks_failed, report.tasks_parked),
        (0, 0, 0)
    );
    let metrics = app.state.metrics.encode();
    assert!(
        metrics.contains("portrait_queued_tasks_parked_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn confirmed_and_swept_ledger_entries_are_pruned_after_the_retention() {
    let app = TestApp::spawn().await;
    let token = app.token(ADA).await;
    let picture = jpeg(16, 16);
    let confirmed = app.grant(&token, "image/jpeg", picture.len()).await;
    app.put_ok(&confirmed, picture.clone()).await;
    app.confirm(&token, &confirmed.photo_key).await;
    let abandoned = app.grant(&token, "image/jpeg", picture.len()).await;

    let report = app.maintenance_after(LATER).await;
    assert_eq!(report.uploads_swept, 1);
    assert_eq!(report.ledger_pruned, 0, "kept for the retention period");
    // Still in the ledger: a second confirm gets the usual answer.
    assert_eq!(
        app.confirm(&token, &confirmed.photo_key).await.status(),
        StatusCode::OK
    );

    let after_retention = LATER + app::service::LEDGER_RETENTION + Duration::from_secs(3600);
    let report = app.maintenance_after(after_retention).await;
    assert_eq!(report.ledger_pruned, 2);
    for key in [&confirmed.photo_key, &abandoned.photo_key] {
        let message = error_message(app.confirm(&token, key).await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("Unknown photoKey"), "{message}");
    }
    // The picture itself is untouched.
    assert_eq!(app.picture_bytes(&token).await, picture);
}
