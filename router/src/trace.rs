//! Random identifiers the router mints: request ids, idempotency keys and W3C trace context.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// `n` random bytes as lowercase hex.
///
/// Read from `/dev/urandom` (kept open: one syscall per id), so idempotency keys minted by
/// different routers never collide. Should it be unavailable, a per-process seeded hash of a
/// counter and the clock still gives unique (if guessable) values.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    let filled = urandom().is_some_and(|mut f| f.read_exact(&mut bytes).is_ok());
    if !filled {
        fallback_fill(&mut bytes);
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * n);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn urandom() -> Option<&'static File> {
    static URANDOM: OnceLock<Option<File>> = OnceLock::new();
    URANDOM
        .get_or_init(|| File::open("/dev/urandom").ok())
        .as_ref()
}

fn fallback_fill(bytes: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<RandomState> = OnceLock::new();
    let seed = SEED.get_or_init(RandomState::new);
    for chunk in bytes.chunks_mut(8) {
        let mut h = seed.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        h.write_u128(nanos);
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A fresh idempotency key: 128 random bits, hex.
pub fn idempotency_key() -> String {
    random_hex(16)
}

/// A new W3C `traceparent` (version 00, sampled) for requests that arrive without one.
pub fn new_traceparent() -> String {
    format!("00-{}-{}-01", random_hex(16), random_hex(8))
}

/// Whether `value` is a `traceparent` we can pass on unchanged. The W3C rule for a malformed
/// one is to start a new trace, which the caller does.
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace_id, parent_id, flags, rest @ ..] = parts.as_slice() else {
        return false;
    };
    // Version 00 has exactly four fields; later versions may append more.
    hex(version, 2)
        && *version != "ff"
        && (rest.is_empty() || *version != "00")
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
}

/// Request ids for requests that arrive without one: random, so ids from different routers
/// (and restarts) never collide in the logs of a shared node.
#[derive(Clone, Default)]
pub struct RandomRequestIds;

impl MakeRequestId for RandomRequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&random_hex(16))
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_hex_and_varies() {
        let a = random_hex(16);
        let b = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let mut bytes = [0u8; 20];
        fallback_fill(&mut bytes);
        let mut again = [0u8; 20];
        fallback_fill(&mut again);
        assert_ne!(bytes, again);
    }

    #[test]
    fn traceparent_validation() {
        let fresh = new_traceparent();
        assert!(is_valid_traceparent(&fresh), "{fresh}");
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
        assert!(is_valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
    }
}
