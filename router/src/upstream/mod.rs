//! Talking to upstreams (region nodes and peer routers): one keep-alive HTTP client for all of
//! them, bounded timeouts, safe retries, read fallback, liveness probes, the header hygiene of
//! a proxy, and finding endpoints by DNS name.
//!
//! Failure handling, in order of what the router can know:
//! * **Connect failed** (refused, connect timeout, DNS): the request never left. Reads try the
//!   next region; writes answer `503 home_region_unreachable` (never another region).
//! * **Connection broke** after the request was sent (reset, closed before the answer): it may
//!   or may not have arrived, so it is re-sent, at most `upstream.retries` times, with the same
//!   `Idempotency-Key` (which makes a duplicate harmless). Never after an HTTP answer.
//! * **No answer yet**: a slow upstream and a black hole look alike, so after
//!   `unreachable_ms - probe_ms` the router looks for a sign of life since the request began:
//!   any answer from that upstream, or else its `/healthz` on another connection (one probe
//!   per upstream at a time, its outcome shared by every waiter, so a burst does not probe
//!   hundreds of times). None: unreachable, within `unreachable_ms` (~2 s). Alive but slow: the
//!   request may take up to `request_ms`, then `504`.

pub mod answer;
pub mod client;
pub mod discovery;
pub mod forwarder;
pub mod hygiene;
pub mod liveness;
pub mod request;
pub mod warm;
