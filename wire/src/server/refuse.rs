//! The answer to a connection over the cap: a minimal `503` with the JSON error envelope and
//! `Connection: close`, then the connection closed. The request head is read first (an HTTP
//! client takes an answer that comes before its request is sent as a protocol error), and what
//! follows is read and thrown away for a moment after the answer, so closing does not reset
//! the connection before the client has read it. All of it within a short, fixed time.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::{ErrorEnvelope, RETRY_AFTER_SECS};

/// How long a refused connection is kept, for its client to send its request and read the
/// answer.
const LINGER: Duration = Duration::from_millis(1_000);
/// Past this much without the end of a request head, the answer is sent anyway.
const HEAD_MAX: usize = 16 * 1024;
/// Refusals under way at once; past it a connection is closed without an answer, so refusing
/// cannot itself use up the descriptors the cap protects.
const REFUSALS_AT_ONCE: usize = 256;

/// Refuses connections over the cap; cheap to clone.
#[derive(Clone)]
pub(super) struct Refusal {
    answer: Arc<[u8]>,
    under_way: Arc<Semaphore>,
}

impl Refusal {
    pub(super) fn new() -> Refusal {
        Refusal {
            answer: answer_bytes().into(),
            under_way: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
        }
    }

    /// Answers `stream` with the `503` and closes it, in a task of its own.
    pub(super) fn refuse(&self, mut stream: TcpStream) {
        let Ok(permit) = self.under_way.clone().try_acquire_owned() else {
            return;
        };
        let answer = self.answer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(LINGER, async {
                if !read_head(&mut stream).await? {
                    return Ok(());
                }
                stream.write_all(&answer).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
        });
    }
}

/// Reads until the end of a request head (or `HEAD_MAX` bytes); false when the client closed
/// first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<bool> {
    let mut chunk = [0u8; 1024];
    let mut window = Vec::with_capacity(chunk.len() + 3);
    let mut seen = 0;
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        seen += n;
        // The last three bytes of the previous chunk, so a head end split across reads counts.
        let keep = window.len().saturating_sub(3);
        window.drain(..keep);
        window.extend_from_slice(&chunk[..n]);
        if window.windows(4).any(|w| w == b"\r\n\r\n") || seen >= HEAD_MAX {
            return Ok(true);
        }
    }
}

/// The whole HTTP/1.1 answer, made once.
fn answer_bytes() -> Vec<u8> {
    let body = ErrorEnvelope::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the server has too many connections; retry shortly",
    )
    .to_value()
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_answer_with_the_json_envelope() {
        let text = String::from_utf8(answer_bytes()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let envelope: ErrorEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(envelope.error.status, 503);
        assert_eq!(envelope.error.code, "unavailable");
    }
}
