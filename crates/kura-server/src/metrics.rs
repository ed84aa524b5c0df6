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
        Arc::new(Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            audit_events,
        })
    }

    pub fn render(&self) -> String {
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
