//! The node's Prometheus metrics: requests and latency per route, holds, sales, releases,
//! booking outcomes, batch sizes, pool use, live streams.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub tickets_held: Counter,
    pub tickets_sold: Counter,
    pub tickets_released: Counter,
    pub bookings: Family<OutcomeLabels, Counter>,
    pub pool: Family<PoolLabels, Gauge>,
    pub reserve_batch_size: Histogram,
    /// Open live streams (SSE answers being written) on this node.
    pub stream_subscribers: Gauge,
    /// Events watched for live streams (one read per interval each).
    pub stream_watchers: Gauge,
    /// State messages written to subscribers (keep-alives not counted).
    pub stream_messages: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ticketing");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms .. ~4 s, doubling.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 14,
            ))
        });
        let tickets_held = Counter::default();
        let tickets_sold = Counter::default();
        let tickets_released = Counter::default();
        let bookings = Family::<OutcomeLabels, Counter>::default();
        let pool = Family::<PoolLabels, Gauge>::default();
        let reserve_batch_size = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
        );
        let stream_subscribers = Gauge::default();
        let stream_watchers = Gauge::default();
        let stream_messages = Counter::default();
        registry.register(
            "stream_subscribers",
            "Open live streams",
            stream_subscribers.clone(),
        );
        registry.register(
            "stream_watchers",
            "Events watched for live streams",
            stream_watchers.clone(),
        );
        registry.register(
            "stream_messages",
            "State messages written to live-stream subscribers",
            stream_messages.clone(),
        );
        registry.register(
            "reserve_batch_size",
            "Reserves coalesced into one transaction",
            reserve_batch_size.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        registry.register("tickets_held", "Tickets put on hold", tickets_held.clone());
        registry.register("tickets_sold", "Tickets sold", tickets_sold.clone());
        registry.register(
            "tickets_released",
            "Held tickets returned by cancel, failed payment or expiry",
            tickets_released.clone(),
        );
        registry.register(
            "booking_outcomes",
            "Booking operations by outcome",
            bookings.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            pool.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            tickets_held,
            tickets_sold,
            tickets_released,
            bookings,
            pool,
            reserve_batch_size,
            stream_subscribers,
            stream_watchers,
            stream_messages,
        }
    }

    pub fn booking_outcome(&self, outcome: &str) {
        self.bookings
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
