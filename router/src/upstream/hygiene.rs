//! The header hygiene of a proxy: hop-by-hop headers stay on their own hop, in both directions,
//! and requests go upstream with `X-Forwarded-For` extended and the router's client region.

use std::fmt::Write as _;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::headers::{
    KEEP_ALIVE, PROXY_CONNECTION, X_CLIENT_REGION, X_FORWARDED_FOR, X_ROUTER_HOP,
};

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus those
/// the router sets itself.
const REQUEST_HEADERS_NOT_FORWARDED: [HeaderName; 13] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
    header::HOST,
    header::CONTENT_LENGTH,
    X_CLIENT_REGION,
    X_ROUTER_HOP,
];
const RESPONSE_HEADERS_NOT_FORWARDED: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The headers to send upstream: the client's, minus hop-by-hop ones, plus `X-Forwarded-For`
/// and the client region the router decided on (replacing any the client sent). Made in place:
/// the incoming request is not needed again.
pub fn outgoing_headers(
    mut headers: HeaderMap,
    peer: IpAddr,
    client_region: Option<&HeaderValue>,
) -> HeaderMap {
    remove_connection_headers(&mut headers, &REQUEST_HEADERS_NOT_FORWARDED);
    let mut forwarded = String::with_capacity(48);
    if let Some(earlier) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        forwarded.push_str(earlier);
        forwarded.push_str(", ");
    }
    // Writing into a String cannot fail.
    let _ = write!(forwarded, "{}", peer.to_canonical());
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(forwarded)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(region) = client_region {
        headers.insert(X_CLIENT_REGION, region.clone());
    }
    headers
}

/// Removes an upstream answer's hop-by-hop headers before it goes to the client.
pub fn remove_response_hop_headers(headers: &mut HeaderMap) {
    remove_connection_headers(headers, &RESPONSE_HEADERS_NOT_FORWARDED);
}

/// Removes hop-by-hop headers: the fixed list and any the `Connection` header names.
fn remove_connection_headers(headers: &mut HeaderMap, fixed: &[HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in fixed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let secret = HeaderName::from_static("x-secret");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert(&secret, HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("router.example"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(X_CLIENT_REGION, HeaderValue::from_static("ap-southeast"));
        h.insert(X_ROUTER_HOP, HeaderValue::from_static("eu-west/router-1"));
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let us_east = HeaderValue::from_static("us-east");
        let out = outgoing_headers(h, "::ffff:10.0.0.1".parse().unwrap(), Some(&us_east));
        for gone in [
            header::CONNECTION,
            secret,
            header::HOST,
            header::CONTENT_LENGTH,
            X_ROUTER_HOP,
        ] {
            assert!(!out.contains_key(&gone), "{gone}");
        }
        assert_eq!(out[X_CLIENT_REGION], "us-east");
        assert_eq!(out[X_FORWARDED_FOR], "1.2.3.4, 10.0.0.1");
        assert_eq!(out[header::AUTHORIZATION], "Bearer t");
    }
}
