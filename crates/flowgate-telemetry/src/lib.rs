//! Logging and tracing for every Flowgate process: human-readable or JSON logs through `tracing`,
//! filtered by `LOG_LEVEL`, and OpenTelemetry traces exported over OTLP/gRPC when an endpoint is
//! configured. W3C `traceparent` is the propagation format.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What telemetry to set up. Built by the binary from its settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `tracing` filter directive, e.g. `info,flowgate_proxy=debug`.
    pub log_level: String,
    /// One JSON object per line instead of human-readable lines.
    pub json: bool,
    /// OTLP/gRPC endpoint; `None` disables trace export.
    pub otlp_endpoint: Option<String>,
    /// Fraction of root traces sampled.
    pub sample_ratio: f64,
    /// `service.name` resource attribute, e.g. `flowgate-proxy`.
    pub service_name: String,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `LOG_LEVEL` is not a valid filter directive.
    #[error("invalid LOG_LEVEL `{directive}`: {message}")]
    Filter {
        /// The directive given.
        directive: String,
        /// The parser's complaint.
        message: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot start OTLP trace export: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("tracing was already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Whether spans are exported (OTLP configured): without it there is no trace context to pass on.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the trace pipeline alive; call [`Guard::shutdown`] before exit to flush spans.
#[derive(Debug)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Flushes and stops trace export.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber. Call once per process, inside a Tokio runtime when OTLP export
/// is enabled.
pub fn init(config: &Config) -> Result<Guard, InitError> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|error| InitError::Filter { directive: config.log_level.clone(), message: error.to_string() })?;
    // Spans cost a formatted copy of their fields in the log layer, for every request. Log lines
    // show them only at debug level or finer; otherwise the log layer skips spans (events are
    // logged as before), and with no exporter either, a request's spans are never built.
    let spans_in_logs = filter.max_level_hint().is_none_or(|level| level >= LevelFilter::DEBUG);
    let log_spans = filter_fn(move |metadata| spans_in_logs || !metadata.is_span());
    let fmt_layer = if config.json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(log_spans)
            .boxed()
    } else {
        // Colours only on a terminal: files and log collectors get plain text.
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(log_spans)
            .boxed()
    };

    let (provider, otel_layer) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|error| InitError::Exporter(error.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
                .with_resource(
                    opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build(),
                )
                .build();
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            opentelemetry::global::set_tracer_provider(provider.clone());
            let tracer = provider.tracer("flowgate");
            EXPORTING.store(true, Ordering::Relaxed);
            (Some(provider), Some(tracing_opentelemetry::layer().with_tracer(tracer)))
        }
        None => (None, None),
    };

    // With neither an exporter nor debug logs, spans are refused before the registry makes them
    // (a per-layer filter alone still lets the registry build and track each one).
    let span_gate =
        (!spans_in_logs && config.otlp_endpoint.is_none()).then(|| filter_fn(|metadata| !metadata.is_span()));
    tracing_subscriber::registry()
        .with(filter)
        .with(span_gate)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|error| InitError::AlreadyInitialised(error.to_string()))?;
    Ok(Guard { provider })
}

/// Reads `traceparent`/`tracestate` from request headers (HTTP or gRPC metadata) and makes the
/// remote span the parent of `span`, so one trace crosses the services. A no-op when trace export
/// is off (no propagator is installed then).
pub fn set_parent_from(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if headers.contains_key("traceparent") {
        let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
        let _ = span.set_parent(context);
    }
}

/// The W3C trace headers for the current span, to send on an outgoing request (gRPC metadata or
/// an upstream HTTP call). Empty when trace export is off.
pub fn current_trace_headers() -> Vec<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !EXPORTING.load(Ordering::Relaxed) {
        return Vec::new();
    }
    let context = tracing::Span::current().context();
    let mut injector = PairInjector(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut injector));
    injector.0
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct PairInjector(Vec<(String, String)>);

impl opentelemetry::propagation::Injector for PairInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}
