//! The header names only the router speaks, each written once (the ones it shares with nodes
//! and clients are in `wire::headers`), and the hop-by-hop names `http::header` lacks.

use axum::http::HeaderName;

/// On answers: the home region of the id the request named.
pub const X_HOME_REGION: HeaderName = HeaderName::from_static("x-home-region");
/// On answers: `<own region> -> <region that served>` when a read fell back to another region.
pub const X_READ_FALLBACK: HeaderName = HeaderName::from_static("x-read-fallback");
/// The client's region: believed only from trusted proxies, and set on every forwarded request
/// to the region the router decided on.
pub const X_CLIENT_REGION: HeaderName = HeaderName::from_static("x-client-region");
/// The chain of client and proxy addresses, extended with the TCP peer on every forward.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Marks a write forwarded by another region's router (`<region>/<router>`): the receiver must
/// run it locally or refuse it, never forward it again.
pub const X_ROUTER_HOP: HeaderName = HeaderName::from_static("x-router-hop");
/// Hop-by-hop (RFC 9110 section 7.6.1), from HTTP/1.0 keep-alive.
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// Hop-by-hop, sent by old clients talking to a proxy.
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `Last-Event-ID`: where a Server-Sent Events client resumes.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
