//! Random identifiers the router mints: request ids, idempotency keys and W3C trace context.

use axum::body::Bytes;
use axum::http::HeaderValue;
use rand::RngCore;

/// `n` random bytes as lowercase hex.
///
/// From the thread's CSPRNG (rand's `ThreadRng`: ChaCha12, seeded from the operating system
/// and reseeded as it goes), so idempotency keys minted by different routers never collide,
/// without a system call per id: reading `/dev/urandom` for every request id, traceparent and
/// key cost three or four `read`s per request.
pub fn random_hex(n: usize) -> String {
    let mut out = String::with_capacity(2 * n);
    push_random_hex(&mut out, n);
    out
}

/// Appends `n` random bytes as lowercase hex to `out`.
fn push_random_hex(out: &mut String, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut rng = rand::thread_rng();
    let mut left = n;
    while left > 0 {
        let word = rng.next_u64().to_le_bytes();
        let take = left.min(word.len());
        for b in &word[..take] {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        left -= take;
    }
}

/// Text that is already a valid header value, as one without copying it again.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// A fresh idempotency key: 128 random bits, hex.
pub fn idempotency_key() -> HeaderValue {
    header_value(random_hex(16))
}

/// A new W3C `traceparent` (version 00, sampled) for requests that arrive without one.
pub fn new_traceparent() -> HeaderValue {
    let mut text = String::with_capacity(55);
    text.push_str("00-");
    push_random_hex(&mut text, 16);
    text.push('-');
    push_random_hex(&mut text, 8);
    text.push_str("-01");
    header_value(text)
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

/// A request id for a request that arrives without one: random, so ids from different routers
/// (and restarts) never collide in the logs of a shared node.
pub fn new_request_id() -> HeaderValue {
    header_value(random_hex(16))
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
        assert_eq!(random_hex(5).len(), 10);
        assert_eq!(idempotency_key().len(), 32);
    }

    #[test]
    fn traceparent_validation() {
        let fresh = new_traceparent();
        let fresh = fresh.to_str().unwrap();
        assert!(is_valid_traceparent(fresh), "{fresh}");
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
