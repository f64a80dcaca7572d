//! Metrics in Prometheus's text format, served at `/metrics`. They are process-wide:
//! one instance is one process.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the instance.
pub struct Metrics {
    /// The registry they are gathered from.
    registry: Registry,
    /// HTTP requests by operation and status.
    pub http_requests: IntCounterVec,
    /// HTTP request durations by operation.
    pub http_duration: HistogramVec,
    /// Open WebSocket connections.
    pub websockets_open: IntGauge,
    /// Room subscriptions (WebSocket and SSE).
    pub subscriptions: IntGauge,
    /// Channels the LISTEN connection listens on.
    pub listen_channels: IntGauge,
    /// Whether the LISTEN connection is up (1) or not (0).
    pub listener_up: IntGauge,
    /// Times the LISTEN connection was (re-)established.
    pub listener_connects: IntCounter,
    /// Room events the dispatcher received (from notifications and log reads).
    pub events_received: IntCounter,
    /// Event frames handed to subscribers' queues.
    pub events_delivered: IntCounter,
    /// Time from an event's commit to its fan-out on this instance.
    pub delivery_lag: Histogram,
    /// Messages per write batch (1 for a lone write).
    pub write_batch_size: Histogram,
    /// Pooled database connections by state (`in_use`, `idle`, `waiting` requests).
    pub pool: IntGaugeVec,
    /// Postgres's notification queue usage, from 0 to 1, read at each scrape.
    pub notification_queue_usage: prometheus::Gauge,
    /// Password hashes and verifications computed.
    pub password_hashes: IntCounter,
    /// Password hashes refused because every turn was taken (503 `busy`).
    pub password_hashes_refused: IntCounter,
    /// Webhook delivery attempts by outcome (`delivered`, `failed`).
    pub webhook_attempts: IntCounterVec,
    /// Time from an event's commit to its successful delivery to an endpoint.
    pub webhook_lag: Histogram,
    /// How long endpoints take to answer.
    pub webhook_attempt_duration: Histogram,
    /// Webhook deliveries not yet made, over every endpoint, read at each scrape.
    pub webhook_backlog: IntGauge,
    /// The age of the oldest of them, in seconds, read at each scrape.
    pub webhook_oldest_pending: prometheus::Gauge,
    /// Today's rolled-up figures of the tenants with the most messages today, by
    /// figure and tenant slug (`HARK_METRICS_TENANTS` of them at most), read at each
    /// scrape and replaced as a whole, so that a tenant that left the top leaves no
    /// stale series.
    pub tenant_figures: IntGaugeVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are fixed and distinct, so registration cannot fail; a failure would only
    // leave the metric out of /metrics.
    if let Err(error) = registry.register(Box::new(metric.clone())) {
        tracing::error!(%error, "could not register a metric");
    }
    metric
}

/// The instance's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let registry = Registry::new();
        // Construction only fails on malformed names or labels, fixed here: start-up code.
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "hark_http_requests_total",
                    "HTTP requests by operation and status",
                ),
                &["operation", "status"],
            )
            .expect("a valid metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "hark_http_request_duration_seconds",
                    "HTTP request durations by operation",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &["operation"],
            )
            .expect("a valid metric"),
            websockets_open: IntGauge::new("hark_websockets_open", "Open WebSocket connections")
                .expect("a valid metric"),
            subscriptions: IntGauge::new(
                "hark_subscriptions",
                "Room subscriptions, WebSocket and SSE",
            )
            .expect("a valid metric"),
            listen_channels: IntGauge::new(
                "hark_listen_channels",
                "Channels the LISTEN connection listens on",
            )
            .expect("a valid metric"),
            listener_up: IntGauge::new("hark_listener_up", "1 while the LISTEN connection is up")
                .expect("a valid metric"),
            listener_connects: IntCounter::new(
                "hark_listener_connects_total",
                "Times the LISTEN connection was established (reconnects are the count minus one)",
            )
            .expect("a valid metric"),
            events_received: IntCounter::new(
                "hark_events_received_total",
                "Room events received by the dispatcher",
            )
            .expect("a valid metric"),
            events_delivered: IntCounter::new(
                "hark_events_delivered_total",
                "Event frames handed to subscribers",
            )
            .expect("a valid metric"),
            delivery_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hark_delivery_lag_seconds",
                    "Time from an event's commit to its fan-out here",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .expect("a valid metric"),
            write_batch_size: Histogram::with_opts(
                HistogramOpts::new("hark_write_batch_size", "Messages per write batch")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]),
            )
            .expect("a valid metric"),
            pool: IntGaugeVec::new(
                Opts::new("hark_db_pool_connections", "Pooled connections by state"),
                &["state"],
            )
            .expect("a valid metric"),
            notification_queue_usage: prometheus::Gauge::new(
                "hark_notification_queue_usage",
                "Postgres's notification queue usage (0 to 1)",
            )
            .expect("a valid metric"),
            password_hashes: IntCounter::new(
                "hark_password_hashes_total",
                "Password hashes and verifications computed",
            )
            .expect("a valid metric"),
            password_hashes_refused: IntCounter::new(
                "hark_password_hashes_refused_total",
                "Password hashes refused with 503 busy: every turn was taken",
            )
            .expect("a valid metric"),
            webhook_attempts: IntCounterVec::new(
                Opts::new(
                    "hark_webhook_attempts_total",
                    "Webhook delivery attempts by outcome",
                ),
                &["outcome"],
            )
            .expect("a valid metric"),
            webhook_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hark_webhook_lag_seconds",
                    "Time from an event's commit to its delivery to an endpoint",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0, 3600.0,
                ]),
            )
            .expect("a valid metric"),
            webhook_attempt_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "hark_webhook_attempt_duration_seconds",
                    "How long endpoints take to answer a delivery",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .expect("a valid metric"),
            webhook_backlog: IntGauge::new(
                "hark_webhook_backlog",
                "Webhook deliveries not yet made, over every endpoint (a write not yet fanned out counts once)",
            )
            .expect("a valid metric"),
            webhook_oldest_pending: prometheus::Gauge::new(
                "hark_webhook_oldest_pending_seconds",
                "Age of the oldest webhook delivery not yet made",
            )
            .expect("a valid metric"),
            tenant_figures: IntGaugeVec::new(
                Opts::new(
                    "hark_tenant_usage",
                    "Today's rolled-up figures of the tenants with the most messages today (messages_today, active_users_today, peak_connected_users_today, monthly_active_users)",
                ),
                &["figure", "tenant"],
            )
            .expect("a valid metric"),
            registry,
        };
        let registry = &metrics.registry;
        register(registry, metrics.http_requests.clone());
        register(registry, metrics.password_hashes.clone());
        register(registry, metrics.password_hashes_refused.clone());
        register(registry, metrics.http_duration.clone());
        register(registry, metrics.websockets_open.clone());
        register(registry, metrics.subscriptions.clone());
        register(registry, metrics.listen_channels.clone());
        register(registry, metrics.listener_up.clone());
        register(registry, metrics.listener_connects.clone());
        register(registry, metrics.events_received.clone());
        register(registry, metrics.events_delivered.clone());
        register(registry, metrics.delivery_lag.clone());
        register(registry, metrics.write_batch_size.clone());
        register(registry, metrics.pool.clone());
        register(registry, metrics.notification_queue_usage.clone());
        register(registry, metrics.webhook_attempts.clone());
        register(registry, metrics.webhook_lag.clone());
        register(registry, metrics.webhook_attempt_duration.clone());
        register(registry, metrics.webhook_backlog.clone());
        register(registry, metrics.webhook_oldest_pending.clone());
        register(registry, metrics.tenant_figures.clone());
        metrics
    }

    /// Every metric in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "could not encode the metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}
