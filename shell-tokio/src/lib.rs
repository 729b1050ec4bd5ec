//! The Cicada broker's shell on tokio, as a library: configuration, authentication, storage thread,
//! policy files and the server loop. The `cicada` binary (`main.rs`) is a thin front; `cicada-uring`
//! (shell-monoio) reuses the runtime-independent parts (configuration, authenticators, storage thread,
//! ACL and ban files) so both brokers read the same configuration the same way.

pub mod auth;
pub mod banfile;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod events;
pub mod http;
pub mod jwt;
pub mod otlp;
pub mod passwd;
pub mod policy;
pub mod providers;
pub mod server;
pub mod storage;
pub mod webhook;

use config::LogFormat;

/// Changes the log filter of the running broker (a reload); says why a filter is refused.
pub type LogControl = std::sync::Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Installs the log subscriber (text or JSON on stderr, optionally OTLP spans); returns the
/// handle that changes its filter.
pub fn init_logging(
    format: LogFormat,
    level: &str,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
) -> LogControl {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::stderr().is_terminal();
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    // Spans go to the OTLP exporter only when it is configured; otherwise there is no such layer.
    let otel = tracer.map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .init();
    std::sync::Arc::new(move |level: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}
