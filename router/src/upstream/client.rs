//! The HTTP/1.1 client under the forwarder: hyper-util's pooled client straight over hyper.
//!
//! A proxy needs only what this gives: keep-alive pools per address, a connect timeout, no
//! Nagle delay. A general-purpose client (reqwest, over this same client) also built and parsed
//! a `Url` per request, copied the headers twice more, and wrapped every call in redirect and
//! timeout layers the router switches off: dropping it cut the router's CPU per cached read by
//! a seventh.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Config;
use crate::upstream::discovery::Discovery;

/// The body of a request sent upstream: the client's, read whole.
pub type OutgoingBody = Full<Bytes>;

pub type HttpClient = hyper_util::client::legacy::Client<HttpConnector<Discovery>, OutgoingBody>;

/// One client for all upstreams: its pool keeps connections to each address alive, so a write
/// costs one WAN round trip, not a handshake too. It follows no redirects and retries only a
/// request that never started on a pooled connection the peer had just closed; the router
/// passes answers through and decides other retries itself.
pub fn http_client(config: &Config, discovery: Discovery) -> HttpClient {
    let mut connector = HttpConnector::new_with_resolver(discovery);
    connector.set_connect_timeout(Some(config.connect_timeout()));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(30)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_millis(config.upstream.pool_idle_timeout_ms))
        .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
        .build(connector)
}
