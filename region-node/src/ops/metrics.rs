//! The node's Prometheus metrics: requests and latency per route, holds, sales, releases,
//! booking outcomes, batch sizes, pool use.

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
    // The waiting room (issue 11).
    /// Queue passes signed by this node.
    pub queue_passes_issued: Counter,
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
        // The waiting room (issue 11).
        let queue_passes_issued = Counter::default();
        registry.register(
            "queue_passes_issued",
            "Queue passes issued to admitted places",
            queue_passes_issued.clone(),
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
            queue_passes_issued,
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
