//! Prometheus metrics (text exposition at /metrics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<MethodLabel, Histogram>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub uploads_in_flight: Gauge,
    pub audit_events: Counter,
    /// Requests refused by the per-address rate limits.
    pub rate_limited: Counter,
    /// Security alerts raised by the detector on this node.
    pub alerts: Counter,
    forwarded: Counter,
    forward_failures: Counter,
    forward_lag: Gauge,
    forward: std::sync::OnceLock<Arc<kura_store::forward::ForwardStats>>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("kura");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let uploads_in_flight = Gauge::default();
        let audit_events = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "file_bytes_in",
            "File content bytes received",
            bytes_in.clone(),
        );
        registry.register(
            "file_bytes_out",
            "File content bytes served",
            bytes_out.clone(),
        );
        registry.register(
            "uploads_in_flight",
            "Uploads being received now",
            uploads_in_flight.clone(),
        );
        registry.register(
            "audit_events",
            "Audit events appended",
            audit_events.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Requests refused by the per-address sign-in and anonymous rate limits",
            rate_limited.clone(),
        );
        let alerts = Counter::default();
        registry.register(
            "security_alerts",
            "Security alerts raised by the detector",
            alerts.clone(),
        );
        let forwarded = Counter::default();
        let forward_failures = Counter::default();
        let forward_lag = Gauge::default();
        registry.register(
            "audit_forwarded",
            "Audit events forwarded to the SIEM sinks",
            forwarded.clone(),
        );
        registry.register(
            "audit_forward_failures",
            "Failed attempts to forward audit events (retried)",
            forward_failures.clone(),
        );
        registry.register(
            "audit_forward_lag",
            "Committed audit events not yet forwarded",
            forward_lag.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            audit_events,
            rate_limited,
            alerts,
            forwarded,
            forward_failures,
            forward_lag,
            forward: std::sync::OnceLock::new(),
        })
    }

    pub fn set_forward_stats(&self, stats: Arc<kura_store::forward::ForwardStats>) {
        let _ = self.forward.set(stats);
    }

    pub fn render(&self) -> String {
        if let Some(f) = self.forward.get() {
            use std::sync::atomic::Ordering::Relaxed;
            let (done, failed) = (f.forwarded.load(Relaxed), f.failures.load(Relaxed));
            if done > self.forwarded.get() {
                self.forwarded.inc_by(done - self.forwarded.get());
            }
            if failed > self.forward_failures.get() {
                self.forward_failures
                    .inc_by(failed - self.forward_failures.get());
            }
            self.forward_lag
                .set(i64::try_from(f.lag.load(Relaxed)).unwrap_or(i64::MAX));
        }
        // Bring the audit counter up to the store's own count.
        let total = kura_store::audit::appended_total();
        let seen = self.audit_events.get();
        if total > seen {
            self.audit_events.inc_by(total - seen);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
