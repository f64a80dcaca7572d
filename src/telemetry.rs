//! Logs and traces. Logs are `tracing` events as JSON lines (or text for a terminal)
//! on standard error (standard output is kept for what commands print), filtered by
//! `RUST_LOG` (default `info`); inside a traced span, each JSON line carries the
//! trace and span ids. Traces go to an OpenTelemetry collector over OTLP when, and
//! only when, the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_` form) is
//! set; everything else (protocol, headers, service name, resource attributes,
//! sampler, batching) is read by the OpenTelemetry SDK from the standard `OTEL_*`
//! variables. Without an endpoint no exporter exists and the internal spans
//! (`debug` level) are not even created.
//!
//! The trace context crosses process boundaries in W3C `traceparent` form: from a
//! client's HTTP request (`extract_from_headers`), and from a send to the instances
//! that fan its event out, inside the NOTIFY payload (`current_traceparent`,
//! `parent_from_traceparent`).

use std::collections::HashMap;
use std::fmt;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt as subscriber_fmt};

use crate::config::LogFormat;

/// What must be flushed before the process exits.
#[derive(Default)]
pub struct Telemetry {
    /// The trace pipeline, when an OTLP endpoint is configured.
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. The SDK blocks while
    /// it flushes, so this runs on a blocking thread.
    pub async fn shutdown(self) {
        let Some(provider) = self.tracer_provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not flush the traces: {error}"),
            Err(error) => eprintln!("could not flush the traces: {error}"),
        }
    }
}

/// Installs the global subscriber and, when configured, the OTLP trace exporter.
/// Calling it again (as tests do) changes nothing and answers an empty `Telemetry`.
pub fn init(format: LogFormat) -> Telemetry {
    let log_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let log_layer = match format {
        LogFormat::Json => subscriber_fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .map_event_format(WithTraceIds)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Text => subscriber_fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed(),
    };
    let tracer_provider = match tracer_provider_from_env() {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("traces are not exported: {error:#}");
            None
        }
    };
    let trace_layer = tracer_provider.as_ref().map(|provider| {
        // Only Hark's own spans are exported: the exporter's own HTTP and gRPC
        // machinery would otherwise trace its own exports.
        let spans = Targets::new().with_target("hark", LevelFilter::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("hark"))
            .with_filter(spans)
    });
    let installed = tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init()
        .is_ok();
    match tracer_provider {
        Some(provider) if installed => Telemetry {
            tracer_provider: Some(provider),
        },
        // A subscriber already installed is fine: tests start many servers in one
        // process. A provider made for nothing is dropped unused.
        _ => Telemetry::default(),
    }
}

/// Builds the trace pipeline from the standard variables, or nothing when no OTLP
/// endpoint is set or the SDK is disabled.
fn tracer_provider_from_env() -> anyhow::Result<Option<SdkTracerProvider>> {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value == "true")
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|value| value == "none");
    if disabled || otlp_setting("ENDPOINT").is_none() {
        return Ok(None);
    }
    let exporter = if otlp_setting("PROTOCOL").as_deref() == Some("grpc") {
        let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        // gRPC over TLS verifies the collector against the Mozilla roots; the
        // exporter would otherwise start TLS with no trusted root at all.
        if otlp_setting("ENDPOINT").is_some_and(|endpoint| endpoint.starts_with("https://")) {
            builder
                .with_tls_config(ClientTlsConfig::new().with_enabled_roots())
                .build()?
        } else {
            builder.build()?
        }
    } else {
        // HTTP/protobuf, the default protocol of OTLP.
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="));
    if !named {
        resource = resource.with_service_name("hark");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// An OTLP exporter setting for traces: `OTEL_EXPORTER_OTLP_TRACES_<name>`, else
/// `OTEL_EXPORTER_OTLP_<name>`.
fn otlp_setting(name: &str) -> Option<String> {
    [
        format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
        format!("OTEL_EXPORTER_OTLP_{name}"),
    ]
    .iter()
    .find_map(|variable| std::env::var(variable).ok())
    .map(|value| value.trim().to_owned())
    .filter(|value| !value.is_empty())
}

/// The current span's context as a W3C `traceparent`, when it belongs to a sampled
/// or recorded trace; `None` when traces are off.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span a `traceparent` names. A malformed value
/// leaves the span a root.
pub fn parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Without the trace layer the span has no OpenTelemetry side: nothing to do.
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the span a client named in its `traceparent` header.
pub fn parent_from_headers(span: &tracing::Span, headers: &poem::http::HeaderMap) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Reads W3C trace context headers from an HTTP request.
struct HeaderExtractor<'a>(&'a poem::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The JSON log format with `trace_id` and `span_id` added in front of the fields of
/// every line written inside a traced span.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let trace = tracing::Span::current().context();
        let span_context = trace.span().span_context().clone();
        if !span_context.is_valid() {
            return self.0.format_event(context, writer, event);
        }
        let mut line = String::new();
        self.0
            .format_event(context, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                span_context.trace_id(),
                span_context.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
}
