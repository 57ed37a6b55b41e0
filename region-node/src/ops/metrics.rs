//! The node's Prometheus metrics: requests and latency per route, holds, sales, releases,
//! booking outcomes, batch sizes, pool use, live streams, and the waiting rooms' figures per event.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::atomic::AtomicU64;

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

/// A waiting room's gauges are labelled with its event's id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

/// One waiting room's counters as a replica shows them (every node shows every queue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueGauges {
    pub serving: i64,
    pub last_position: i64,
    pub lobby_size: i64,
    pub admit_rate: f64,
}

/// The waiting rooms' metrics (issue 11): gauges per event, counters for the whole node.
pub struct QueueMetrics {
    pub serving: Family<EventLabels, Gauge>,
    pub last_position: Family<EventLabels, Gauge>,
    pub lobby_size: Family<EventLabels, Gauge>,
    pub admit_rate: Family<EventLabels, Gauge<f64, AtomicU64>>,
    /// Home node only: the closed loop's measured active users and its set point.
    pub active: Family<EventLabels, Gauge>,
    pub target: Family<EventLabels, Gauge>,
    /// Places given by joins on this node (a repeated join gives none).
    pub joins: Counter,
    pub passes_issued: Counter,
    /// Positions this node's serving loop admitted.
    pub admitted: Counter,
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
    pub queue: QueueMetrics,
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
        let queue = QueueMetrics::register(&mut registry);
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
            queue,
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

impl QueueMetrics {
    fn register(registry: &mut Registry) -> QueueMetrics {
        let queue = QueueMetrics {
            serving: Family::default(),
            last_position: Family::default(),
            lobby_size: Family::default(),
            admit_rate: Family::default(),
            active: Family::default(),
            target: Family::default(),
            joins: Counter::default(),
            passes_issued: Counter::default(),
            admitted: Counter::default(),
        };
        let gauges = [
            (
                "queue_serving",
                "Waiting room serving counter: positions up to it are admitted",
                &queue.serving,
            ),
            (
                "queue_last_position",
                "Waiting room positions handed out so far",
                &queue.last_position,
            ),
            (
                "queue_lobby_size",
                "Waiting room lobby members drawn at opening",
                &queue.lobby_size,
            ),
            (
                "queue_active",
                "Waiting room admitted users not yet done (home node)",
                &queue.active,
            ),
            (
                "queue_target",
                "Waiting room closed loop set point of active users (home node)",
                &queue.target,
            ),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "queue_admit_rate",
            "Waiting room measured admissions per second (last 30 s)",
            queue.admit_rate.clone(),
        );
        registry.register(
            "queue_joins",
            "Waiting room places given",
            queue.joins.clone(),
        );
        registry.register(
            "queue_passes_issued",
            "Waiting room passes issued",
            queue.passes_issued.clone(),
        );
        registry.register(
            "queue_admitted",
            "Waiting room positions admitted by this node's serving loop",
            queue.admitted.clone(),
        );
        queue
    }

    /// Shows `event`'s figures.
    pub fn show(&self, event: i64, gauges: QueueGauges) {
        let labels = labels(event);
        self.serving.get_or_create(&labels).set(gauges.serving);
        self.last_position
            .get_or_create(&labels)
            .set(gauges.last_position);
        self.lobby_size
            .get_or_create(&labels)
            .set(gauges.lobby_size);
        self.admit_rate
            .get_or_create(&labels)
            .set(gauges.admit_rate);
    }

    /// Shows the closed loop of a queue homed on this node.
    pub fn show_loop(&self, event: i64, active: i64, target: i64) {
        let labels = labels(event);
        self.active.get_or_create(&labels).set(active);
        self.target.get_or_create(&labels).set(target);
    }

    /// Stops showing `event` (its queue closed long ago, or is gone).
    pub fn forget(&self, event: i64) {
        let labels = labels(event);
        for family in [
            &self.serving,
            &self.last_position,
            &self.lobby_size,
            &self.active,
            &self.target,
        ] {
            family.remove(&labels);
        }
        self.admit_rate.remove(&labels);
    }
}

fn labels(event: i64) -> EventLabels {
    EventLabels {
        event: event.to_string(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
