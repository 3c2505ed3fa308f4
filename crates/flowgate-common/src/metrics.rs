//! The process's Prometheus registry. Services register their own families at build time; the
//! HTTP layer in [`crate::server`] records request counts and latencies for every route.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the per-route HTTP metrics. Routes are matched paths (`/v1/chat/completions`), never
/// raw URIs, so cardinality stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Which service answered (`proxy`, `api-server`, ...).
    pub service: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of `flowgate_dependency_up`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    /// Which service checked.
    pub service: &'static str,
    /// `database`, `redis`, `api-server`, `compliance`, `policy`.
    pub dependency: String,
}

/// Latency buckets in seconds, from 100 µs to 60 s: gateway overhead lives at the low end,
/// upstream model latency at the high end.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0];

/// Makes a latency histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A cloneable handle on the process registry plus the HTTP families every service uses.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// `flowgate_http_requests_total{service,route,method,status}`.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `flowgate_http_request_duration_seconds{service,route,method,status}`.
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// `flowgate_dependency_up{service,dependency}`: 1 when the last `/readyz` check passed.
    pub dependency_up: Family<DependencyLabels, prometheus_client::metrics::gauge::Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the HTTP families registered under the `flowgate` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flowgate");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered", http_requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response head",
            http_duration.clone(),
        );
        let dependency_up = Family::<DependencyLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "dependency_up",
            "1 when the dependency passed its last readiness check",
            dependency_up.clone(),
        );
        Self { registry: Arc::new(Mutex::new(registry)), http_requests, http_duration, dependency_up }
    }

    /// Registers a metric family. Call at build time, not per request.
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner).register(name, help, metric);
    }

    /// The registry in Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}
