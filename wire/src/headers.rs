//! The names of the headers router, node and clients exchange, each written once.

use axum::http::HeaderName;

/// `<home shard>:<commit LSN>` of a write; a read presenting it never sees older data.
pub const CONSISTENCY_TOKEN: HeaderName = HeaderName::from_static("x-consistency-token");
/// A write's retry key, scoped to the user.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `true` on an answer replayed for an earlier request with the same `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C trace context, carried from router to node.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `<region>/<node or router>` that answered.
pub const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
/// `hit` or `miss`: whether a read came from the node's cache.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// Upper bound, in milliseconds, on how stale a read's data may be.
pub const X_DATA_AGE_MS: HeaderName = HeaderName::from_static("x-data-age-ms");
/// Where each shard of a read came from: `us-east=replica, eu-west=primary`.
pub const X_READ_SOURCE: HeaderName = HeaderName::from_static("x-read-source");
/// `true` when a read came from a replica past the lag bound (its primary was out of reach).
pub const X_STALE: HeaderName = HeaderName::from_static("x-stale");
/// Shards a gather over every shard could not read (its answer is partial).
pub const X_MISSING_SHARDS: HeaderName = HeaderName::from_static("x-missing-shards");
/// The quota policy a rate limit applies (draft-ietf-httpapi-ratelimit-headers): on `429`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// What is left of that policy's quota now, and when more comes: on `429`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
