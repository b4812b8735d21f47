//! Limits on every listener: slow clients, too many connections, requests that take too long.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// How long a test waits for something the server must do after a configured second or two.
/// A watchdog against hanging, never a measurement.
const WATCHDOG: Duration = Duration::from_secs(60);

fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// Opens a raw connection, sends `sent` (maybe nothing, maybe half a request line), stalls,
/// and returns once the server has closed the connection, with what it answered (if anything).
async fn stall(base: &str, sent: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(host_port(base)).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WATCHDOG, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{base} kept a stalled connection open"));
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    answer
}

#[tokio::test]
async fn clients_that_stall_before_their_headers_end_are_disconnected_by_app_and_store() {
    let app = TestApp::spawn_with(&[("PORTRAIT_HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut listeners = vec![app.address.clone()];
    match &app.embedded_s3 {
        Some(s3) => listeners.push(s3.endpoint.clone()),
        None => eprintln!(
            "the embedded store's half of this test: skipped, the storage is {}",
            app.storage_endpoint()
        ),
    }
    for base in &listeners {
        // Half a request line, and nothing at all: both are closed without an answer.
        assert_eq!(stall(base, b"GET /healthz HT").await, b"");
        assert_eq!(stall(base, b"").await, b"");
        // An idle keep-alive connection is closed too, after its complete exchange.
        let answer = stall(base, b"GET /healthz HTTP/1.1\r\nHost: portrait\r\n\r\n").await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    // The server itself is fine.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

/// Holds one accepted connection: a request answered, then kept alive.
async fn hold_connection(base: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(host_port(base)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: portrait\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(WATCHDOG, stream.read_exact(&mut answer))
        .await
        .expect("the held connection is answered")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 "), "{answer:?}");
    stream
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes_on_app_and_store() {
    let app = TestApp::spawn_with(&[
        ("PORTRAIT_MAX_CONNECTIONS", "2"),
        ("PORTRAIT_HEADER_READ_TIMEOUT_SECS", "600"),
    ])
    .await;
    let mut listeners = vec![(app.address.clone(), "/healthz")];
    match &app.embedded_s3 {
        Some(s3) => listeners.push((s3.endpoint.clone(), "/")),
        None => eprintln!(
            "the embedded store's half of this test: skipped, the storage is {}",
            app.storage_endpoint()
        ),
    }
    for (base, path) in listeners {
        let first = hold_connection(&base, path).await;
        let _second = hold_connection(&base, path).await;
        // A third client connects (the kernel queues it) but is not served...
        let url = format!("{base}{path}");
        let mut third = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
        let early = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
        assert!(
            early.is_err(),
            "{base} served a third connection beyond its cap of two: {early:?}"
        );
        // ...until one of the two closes.
        drop(first);
        let status = tokio::time::timeout(WATCHDOG, third)
            .await
            .expect("the waiting connection is served once a slot is free")
            .unwrap()
            .unwrap();
        assert!(status.as_u16() < 500, "{base}{path}: {status}");
    }
}

#[tokio::test]
async fn a_request_whose_body_stops_arriving_gets_408() {
    let app = TestApp::spawn_with(&[("PORTRAIT_REQUEST_TIMEOUT_SECS", "1")]).await;
    let mut stream = TcpStream::connect(host_port(&app.address)).await.unwrap();
    stream
        .write_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: portrait\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WATCHDOG, stream.read_to_end(&mut answer))
        .await
        .expect("the server gave up on the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.ends_with(r#"{"message":"The request did not arrive in time."}"#),
        "{answer}"
    );
}
