//! OpenTelemetry trace export over OTLP/HTTP (protobuf), behind `[tracing] otlp_endpoint`.
//!
//! Off by default, and then nothing of it runs: no exporter thread, no layer in the subscriber, and
//! the shell creates no spans at all (it checks [`enabled`] before making one). On, the shell makes
//! one span per client connection (`mqtt.connection`, from CONNECT to its end, with client id,
//! peer, listener, protocol and the reason it ended), one per reload and one per admin API request;
//! a batch exporter on its own thread sends them to the collector.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};

use crate::config::OtlpSettings;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (and so worth creating).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why the exporter cannot start.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint {endpoint:?}: {source} (give the collector's OTLP/HTTP traces URL, e.g. \"http://127.0.0.1:4318/v1/traces\")")]
pub struct OtlpError {
    endpoint: String,
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The running exporter; [`Exporter::shutdown`] sends what is still buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts the batch exporter towards `settings.endpoint` and returns it with its tracer.
    pub fn start(settings: &OtlpSettings) -> Result<(Exporter, Tracer), OtlpError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| OtlpError {
                endpoint: settings.endpoint.clone(),
                source,
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("cicada");
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Exporter { provider }, tracer))
    }

    /// Flushes and stops, bounded so a dead collector cannot hold up the exit.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(3)) {
            eprintln!("cicada: the trace exporter did not flush: {e}");
        }
    }
}
