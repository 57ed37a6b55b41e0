//! Prometheus metrics: requests by kind and status, upstream calls by region and outcome,
//! retries and read fallbacks (the signals that a region is in trouble), and the live streams
//! relayed (relays, their clients, upstream reconnects).

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `read`, `write` or `ops`.
    pub kind: &'static str,
    pub status: u16,
}

/// A region's name as a label value, shared: counting a call copies no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RegionName(Arc<str>);

impl RegionName {
    pub fn new(name: &str) -> RegionName {
        RegionName(Arc::from(name))
    }
}

impl EncodeLabelValue for RegionName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub region: RegionName,
    /// `node` or `router`.
    pub upstream: &'static str,
    /// `answered`, `unreachable` or `timeout`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: RegionName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub from: String,
    pub to: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_calls: Family<UpstreamLabels, Counter>,
    pub upstream_seconds: Family<RegionLabels, Histogram>,
    pub retries: Family<RegionLabels, Counter>,
    pub read_fallbacks: Family<FallbackLabels, Counter>,
    /// Event stream relays running (one per event with clients, or idle for a moment).
    pub stream_relays: Gauge,
    /// Clients with an event stream open.
    pub stream_subscribers: Gauge,
    /// Times a relay's upstream stream broke or failed and was asked for again.
    pub stream_reconnects: Counter,
}

/// One unit of a gauge for as long as it is held (a relay running, a client subscribed).
pub struct Held(Gauge);

impl Held {
    pub fn new(gauge: &Gauge) -> Held {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ticketing_router");
        let requests = Family::<RequestLabels, Counter>::default();
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        let upstream_seconds = Family::<RegionLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms .. ~4 s, doubling: local calls at the bottom, WAN round trips mid-range.
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let retries = Family::<RegionLabels, Counter>::default();
        let read_fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests by kind (read, write, ops) and status",
            requests.clone(),
        );
        registry.register(
            "upstream_calls",
            "Upstream calls by region, upstream (node, router) and outcome",
            upstream_calls.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time across upstream calls that answered, by region",
            upstream_seconds.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests re-sent after a broken connection, by region",
            retries.clone(),
        );
        registry.register(
            "read_fallbacks",
            "Reads served by another region because the local node was down",
            read_fallbacks.clone(),
        );
        let stream_relays = Gauge::default();
        let stream_subscribers = Gauge::default();
        let stream_reconnects = Counter::default();
        registry.register(
            "stream_relays",
            "Event stream relays running, one upstream stream each",
            stream_relays.clone(),
        );
        registry.register(
            "stream_subscribers",
            "Clients with an event stream open",
            stream_subscribers.clone(),
        );
        registry.register(
            "stream_reconnects",
            "Relays' upstream streams asked for again after a break or failure",
            stream_reconnects.clone(),
        );
        Metrics {
            registry,
            stream_relays,
            stream_subscribers,
            stream_reconnects,
            requests,
            upstream_calls,
            upstream_seconds,
            retries,
            read_fallbacks,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
