//! The connection loop both services serve with, over real sockets: a half-sent request is cut
//! off by the header timeout, an idle keep-alive connection by the idle timeout (each apart from
//! the other), a connection over the cap gets a JSON `503` and is closed while the others go on,
//! and a malformed `X-Request-Id` never reaches the service.

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use wire::server::{ConnectionLimits, Listeners};

const GET: &[u8] = b"GET /id HTTP/1.1\r\nhost: test\r\n\r\n";

/// A server whose `/id` answers with the `X-Request-Id` it was given (or `none`); stops when
/// the returned sender is dropped.
async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listeners = Listeners::loopback().await.unwrap();
    let addr = listeners.api_addr().unwrap();
    let app = Router::new().route(
        "/id",
        get(|headers: HeaderMap| async move {
            headers
                .get("x-request-id")
                .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned())
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let api = app.clone();
        wire::server::serve(listeners, &limits, move |_| api.clone(), app, async {
            let _ = stopped.await;
        })
        .await;
    });
    (addr, stop)
}

/// Reads one whole answer (head and `content-length` body) off `stream`.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .expect("reading the answer");
        assert!(
            n > 0,
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// How long until the server closes `stream` (reads return end of file or an error).
async fn time_to_close(stream: &mut TcpStream, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 256];
    loop {
        match tokio::time::timeout(bound, stream.read(&mut chunk)).await {
            Err(_) => panic!("still open after {bound:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

fn limits(header_ms: u64, idle_ms: u64, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout_ms: header_ms,
        idle_timeout_ms: idle_ms,
        max,
        max_ops: 4,
        ..ConnectionLimits::default()
    }
}

#[tokio::test]
async fn a_half_sent_request_is_cut_off_by_the_header_timeout() {
    let (addr, _stop) = start(limits(400, 30_000, 100)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    // Slow-loris: a request head that never ends, a byte at a time.
    slow.write_all(b"GET /id HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    let closed = time_to_close(&mut slow, Duration::from_secs(5)).await;
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    // A client that says nothing at all is cut off the same way.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let closed = time_to_close(&mut silent, Duration::from_secs(5)).await;
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    // Others are served.
    let mut fine = TcpStream::connect(addr).await.unwrap();
    fine.write_all(GET).await.unwrap();
    assert!(read_answer(&mut fine).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_connection_is_closed_by_the_idle_timeout_and_a_busy_one_is_not() {
    let (addr, _stop) = start(limits(30_000, 500, 100)).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    let closed = time_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(
        closed >= Duration::from_millis(400) && closed < Duration::from_secs(3),
        "{closed:?}"
    );
    // A connection that keeps asking, more often than the idle timeout, stays open.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    for _ in 0..6 {
        busy.write_all(GET).await.unwrap();
        assert!(read_answer(&mut busy).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_connection_over_the_cap_gets_a_json_503_and_the_others_go_on() {
    let (addr, _stop) = start(limits(5_000, 30_000, 2)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(GET).await.unwrap();
        assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let answer = read_answer(&mut third).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(head.contains("connection: close"), "{answer}");
    assert!(head.contains("retry-after: 1"), "{answer}");
    let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(envelope["error"]["status"], 503);
    assert_eq!(envelope["error"]["code"], "unavailable");
    time_to_close(&mut third, Duration::from_secs(3)).await;

    for stream in &mut held {
        stream.write_all(GET).await.unwrap();
        assert!(read_answer(stream).await.starts_with("HTTP/1.1 200"));
    }
    // A place freed is a place taken: once one client leaves, a new one is served.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut next = TcpStream::connect(addr).await.unwrap();
        next.write_all(GET).await.unwrap();
        if read_answer(&mut next).await.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no place after a client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn only_a_plain_request_id_reaches_the_service() {
    let (addr, _stop) = start(ConnectionLimits::default()).await;
    let long = "a".repeat(65);
    for (sent, seen) in [
        ("abc-123:x.y_z", "abc-123:x.y_z"),
        ("has space", "none"),
        ("<script>", "none"),
        (long.as_str(), "none"),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /id HTTP/1.1\r\nhost: test\r\nx-request-id: {sent}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body, seen, "{sent}");
    }
}
