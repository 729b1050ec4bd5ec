//! The broker's configuration file (TOML) and command-line overrides.
//!
//! Every key is optional; the defaults make a working broker on 127.0.0.1:1883. Unknown keys are errors,
//! so a typo is reported instead of silently ignored.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cicada_engine::codec::QoS;
use serde::Deserialize;

/// Why the configuration cannot be used. Each message names the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {fix}")]
    Invalid { key: String, fix: String },
}

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerSection,
    pub log: LogSection,
    pub limits: LimitsSection,
    pub storage: StorageSection,
    pub shared_subscriptions: SharedSection,
    pub sys: SysSection,
    pub features: FeaturesSection,
    pub redirect: RedirectSection,
    pub auth: AuthSection,
    pub acl: AclSection,
    pub bans: BansSection,
    pub quotas: QuotasSection,
    pub http: HttpSection,
    pub tracing: TracingSection,
    /// `[[tenant]]` entries: namespaces with mount points and shared limits.
    pub tenant: Vec<TenantSection>,
    /// `[[listener]]` entries: TCP, TLS, WebSocket, WSS and QUIC listeners.
    pub listener: Vec<cicada_transports::ListenerConfig>,
    /// `[[bridge]]` entries: MQTT bridges to remote brokers (`cicada` only).
    pub bridge: Vec<crate::bridge::BridgeConfig>,
    /// `[[webhook]]` entries: events POSTed to HTTP receivers (`cicada` only).
    pub webhook: Vec<crate::webhook::WebhookConfig>,
    /// `[cluster]`: this broker as one node of several (`cicada` only).
    pub cluster: Option<crate::cluster::ClusterSection>,
}

/// Checks the `[[webhook]]` entries; names must be unique.
fn webhook_specs(
    hooks: &[crate::webhook::WebhookConfig],
) -> Result<Vec<crate::webhook::WebhookSpec>, ConfigError> {
    named_entries(hooks, "webhook", |hook, at| {
        let spec = hook.check(at).map_err(|e| (e.key, e.fix))?;
        Ok((spec.name.clone(), spec))
    })
}

/// Checks the `[[bridge]]` entries; names must be unique.
fn bridge_specs(
    bridges: &[crate::bridge::BridgeConfig],
) -> Result<Vec<crate::bridge::BridgeSpec>, ConfigError> {
    named_entries(bridges, "bridge", |bridge, at| {
        let spec = bridge.check(at).map_err(|e| (e.key, e.fix))?;
        Ok((spec.name.clone(), spec))
    })
}

/// Checks each `[[section]]` entry with `check` (given the entry's key, `section[i]`, and answering
/// with its name or the key at fault and the fix), refusing a name used twice.
fn named_entries<C, S>(
    entries: &[C],
    section: &str,
    check: impl Fn(&C, &str) -> Result<(String, S), (String, String)>,
) -> Result<Vec<S>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    let mut specs = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("{section}[{i}]");
        let (name, spec) =
            check(entry, &at).map_err(|(key, fix)| ConfigError::Invalid { key, fix })?;
        if names.contains(&name) {
            return Err(ConfigError::Invalid {
                key: format!("{at}.name"),
                fix: format!("another {section} is named {name:?}; names must be unique"),
            });
        }
        names.push(name);
        specs.push(spec);
    }
    Ok(specs)
}

/// `[http]`: the HTTP listener for `/metrics`, `/health`, `/ready`, the admin API and the
/// dashboard. Off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// IP:PORT to serve HTTP on.
    pub listen: Option<String>,
    /// A file holding the admin API's bearer token (at least 16 characters); without it the
    /// admin API answers 403 and only metrics, health and the dashboard's files are served.
    pub admin_token_file: Option<PathBuf>,
    /// Whether `POST /api/v1/publish` takes requests without credentials, publishing as an anonymous
    /// client (ACL rules for `all` apply). Off: callers send `Authorization: Basic`.
    pub publish_anonymous: bool,
}

/// `[tracing]`: OpenTelemetry trace export.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// Export spans over OTLP/HTTP to this collector URL (e.g. `http://127.0.0.1:4318`); unset: off.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
}

/// Checked `[http]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// The admin token, read from `admin_token_file`.
    pub admin_token: Option<String>,
    /// `publish_anonymous`.
    pub publish_anonymous: bool,
}

/// Checked `[tracing]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    pub endpoint: String,
    pub service_name: String,
}

/// `[features]`: optional MQTT 5 capabilities, advertised in CONNACK and enforced.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesSection {
    /// Whether filters may use `+` and `#` (off: SUBACK 0xA2).
    pub wildcard_subscriptions: bool,
    /// Whether SUBSCRIBE may carry a Subscription Identifier (off: DISCONNECT 0xA1).
    pub subscription_identifiers: bool,
    /// Response Information for clients that ask: this prefix followed by the client identifier.
    pub response_information_prefix: Option<String>,
}

impl Default for FeaturesSection {
    fn default() -> Self {
        FeaturesSection {
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            response_information_prefix: None,
        }
    }
}

/// `[redirect]`: send every client to another server (MQTT 5 server redirection).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectSection {
    /// `host[:port]` (several separated by spaces); unset serves clients here.
    pub server_reference: Option<String>,
    /// 0x9D "Server moved" (for good) instead of 0x9C "Use another server" (for now).
    pub permanent: bool,
}

/// `[auth]`: how clients prove who they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// A SCRAM-SHA-256 credentials file (lines from `cicada scram-user NAME`); offers MQTT 5
    /// enhanced authentication with that method.
    pub scram_credentials: Option<PathBuf>,
    /// The providers that check CONNECT credentials, in order. Unset: every configured one, in the
    /// order password, jwt, x509.
    pub providers: Option<Vec<Provider>>,
    /// Whether clients without credentials are let in on `server.listen` addresses and on
    /// `[[listener]]`s that do not say. Unset: only on loopback addresses.
    pub allow_anonymous: Option<bool>,
    /// `[auth.password]`.
    pub password: Option<PasswordSection>,
    /// `[auth.jwt]`.
    pub jwt: Option<crate::jwt::JwtConfig>,
}

/// An authentication provider, as named in `auth.providers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `[auth.password]`: user name and password against an argon2id file.
    Password,
    /// `[auth.jwt]`: a JWT in the password field.
    Jwt,
    /// The verified client certificate's name (mTLS listeners).
    X509,
}

/// `[auth.password]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSection {
    /// The password file, managed with `cicada passwd`.
    pub file: PathBuf,
}

/// `[acl]`: who may publish and subscribe to what.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclSection {
    /// The ACL file (see docs/acl.md); unset: every client may publish and subscribe anywhere.
    pub file: Option<PathBuf>,
}

/// `[bans]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BansSection {
    /// The ban file (client ids, user names, addresses, with optional expiry).
    pub file: Option<PathBuf>,
}

/// What to do with a client over a limit, as written in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Throttle,
    Drop,
    Disconnect,
}

impl From<Policy> for cicada_engine::OverloadPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Throttle => cicada_engine::OverloadPolicy::Throttle,
            Policy::Drop => cicada_engine::OverloadPolicy::Drop,
            Policy::Disconnect => cicada_engine::OverloadPolicy::Disconnect,
        }
    }
}

/// `[quotas]`: per-client rate limits and quotas; each off unless set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasSection {
    /// PUBLISH packets per second per client.
    pub publish_messages_per_sec: Option<u64>,
    /// Burst allowed above that rate (default: one second's worth).
    pub publish_messages_burst: Option<u64>,
    pub publish_messages_policy: Policy,
    /// Payload bytes per second per client.
    pub publish_bytes_per_sec: Option<u64>,
    pub publish_bytes_burst: Option<u64>,
    pub publish_bytes_policy: Policy,
    /// Subscriptions per session.
    pub max_subscriptions: Option<usize>,
    /// `drop` (SUBACK 0x97) or `disconnect`; default `drop`.
    pub max_subscriptions_policy: Option<Policy>,
    /// CONNECTs per second from one IP address.
    pub connect_rate_per_address: Option<u64>,
    pub connect_burst_per_address: Option<u64>,
    /// When a connected client's session queue is full: `drop` (default) or `disconnect`.
    pub queue_full_policy: Option<Policy>,
}

/// The rate set at `key` and its burst (default: one second's worth); `None` when unset.
fn rate(
    key: &str,
    per_sec: Option<u64>,
    burst: Option<u64>,
) -> Result<Option<cicada_engine::Rate>, ConfigError> {
    let Some(per_sec) = per_sec else {
        return Ok(None);
    };
    let per_sec = NonZeroU64::new(per_sec).ok_or_else(|| ConfigError::Invalid {
        key: key.to_string(),
        fix: "use at least 1, or remove the key for no limit".into(),
    })?;
    let burst = match burst {
        None => per_sec,
        Some(b) => NonZeroU64::new(b).ok_or_else(|| ConfigError::Invalid {
            key: key.replace("per_sec", "burst").replace("rate", "burst"),
            fix: "use at least 1".into(),
        })?,
    };
    Ok(Some(cicada_engine::Rate { per_sec, burst }))
}

impl QuotasSection {
    fn quotas(&self) -> Result<cicada_engine::Quotas, ConfigError> {
        let limit = |r: Option<cicada_engine::Rate>, p: Policy| {
            r.map(|rate| cicada_engine::RateLimit {
                rate,
                policy: p.into(),
            })
        };
        Ok(cicada_engine::Quotas {
            publish_messages: limit(
                rate(
                    "quotas.publish_messages_per_sec",
                    self.publish_messages_per_sec,
                    self.publish_messages_burst,
                )?,
                self.publish_messages_policy,
            ),
            publish_bytes: limit(
                rate(
                    "quotas.publish_bytes_per_sec",
                    self.publish_bytes_per_sec,
                    self.publish_bytes_burst,
                )?,
                self.publish_bytes_policy,
            ),
            max_subscriptions: self.max_subscriptions.map(|max| {
                (
                    max,
                    self.max_subscriptions_policy.unwrap_or(Policy::Drop).into(),
                )
            }),
            connect_rate_per_address: rate(
                "quotas.connect_rate_per_address",
                self.connect_rate_per_address,
                self.connect_burst_per_address,
            )?,
            queue_full: self.queue_full_policy.unwrap_or(Policy::Drop).into(),
        })
    }
}

/// `[[tenant]]`: which clients belong to it (any of listeners, username_prefix, cert_name), its
/// mount point, and limits its clients share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    pub name: String,
    /// Prefix of every topic its clients use; default `{name}/`. `""`: no isolation.
    #[serde(default)]
    pub mount_point: Option<String>,
    #[serde(default)]
    pub listeners: Vec<String>,
    #[serde(default)]
    pub username_prefix: Option<String>,
    #[serde(default)]
    pub cert_name: Option<String>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub publish_messages_per_sec: Option<u64>,
    #[serde(default)]
    pub publish_messages_burst: Option<u64>,
    #[serde(default)]
    pub publish_messages_policy: Policy,
    #[serde(default)]
    pub publish_bytes_per_sec: Option<u64>,
    #[serde(default)]
    pub publish_bytes_burst: Option<u64>,
    #[serde(default)]
    pub publish_bytes_policy: Policy,
    #[serde(default)]
    pub max_subscriptions: Option<usize>,
    #[serde(default)]
    pub max_queued_messages: Option<usize>,
    #[serde(default)]
    pub max_queued_bytes: Option<usize>,
}

/// How CONNECT credentials are checked, resolved from `[auth]` and the listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The providers in order, with their configuration.
    pub providers: Vec<Provider>,
    pub password_file: Option<PathBuf>,
    pub jwt: Option<crate::jwt::JwtConfig>,
    pub scram_credentials: Option<PathBuf>,
    /// Listener name → whether clients without credentials are let in.
    pub anonymous: std::collections::BTreeMap<String, bool>,
}

/// `[sys]`: the `$SYS/broker/...` topics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysSection {
    /// Seconds between updates; 0 publishes none.
    pub interval_secs: u64,
}

impl Default for SysSection {
    fn default() -> Self {
        SysSection { interval_secs: 10 }
    }
}

/// `[shared_subscriptions]`: `$share/{group}/{filter}` subscriptions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedSection {
    /// Whether they are offered (off: SUBACK 0x9E, and v5 CONNACK says so).
    pub enabled: bool,
    /// How a group picks the member that gets a message.
    pub strategy: SharedStrategy,
}

impl Default for SharedSection {
    fn default() -> Self {
        SharedSection {
            enabled: true,
            strategy: SharedStrategy::RoundRobin,
        }
    }
}

/// The engine's strategies, as written in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedStrategy {
    #[default]
    RoundRobin,
    Random,
    Sticky,
    HashTopic,
    HashPublisher,
}

/// Which store keeps durable state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// RocksDB in `server.data_dir`.
    #[default]
    Rocksdb,
    /// Nothing survives a restart; acknowledgements wait for nothing.
    Memory,
}

/// When acknowledged data reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    #[default]
    Always,
    Interval,
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub backend: Backend,
    pub fsync: Fsync,
    /// With `fsync = "interval"`: milliseconds between syncs.
    pub fsync_interval_ms: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: Backend::Rocksdb,
            fsync: Fsync::Always,
            fsync_interval_ms: 100,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Plain TCP listeners, IP:PORT, on top of any `[[listener]]`. Unset, with no `[[listener]]`:
    /// 127.0.0.1:1883.
    pub listen: Option<Vec<String>>,
    /// Where durable state goes (created if missing).
    pub data_dir: PathBuf,
    /// Seconds a connection may take to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for clients to receive their last bytes at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: None,
            data_dir: PathBuf::from("./data"),
            connect_timeout_secs: 10,
            shutdown_grace_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `cicada_shell_tokio=debug,info`, ...
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Protocol limits; defaults come from the engine's `Config::default()`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_packet_size: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub max_inflight: Option<u16>,
    pub max_queued_messages: Option<usize>,
    pub max_queued_bytes: Option<usize>,
    pub queue_qos0_offline: Option<bool>,
    pub max_topic_length: Option<usize>,
    pub max_topic_levels: Option<usize>,
    pub max_qos: Option<u8>,
    pub retain_available: Option<bool>,
    pub topic_alias_maximum: Option<u16>,
    pub max_session_expiry_secs: Option<u32>,
    pub max_keep_alive_secs: Option<u16>,
    pub send_window: Option<usize>,
    pub max_client_id_length: Option<usize>,
    pub max_outbound_topic_aliases: Option<u16>,
}

/// Everything the shell needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listeners: Vec<cicada_transports::config::Listener>,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    pub shutdown_grace: Duration,
    pub backend: Backend,
    pub fsync: cicada_storage::FsyncPolicy,
    pub fsync_interval: Duration,
    pub engine: cicada_engine::Config,
    pub auth: AuthSettings,
    pub acl_file: Option<PathBuf>,
    pub bans_file: Option<PathBuf>,
    pub http: Option<HttpSettings>,
    pub otlp: Option<OtlpSettings>,
    pub bridges: Vec<crate::bridge::BridgeSpec>,
    pub webhooks: Vec<crate::webhook::WebhookSpec>,
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

/// Where the settings come from: the file and the command line's overrides, kept so a reload
/// reads them again the same way. Both brokers' command lines take these options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Source {
    /// Configuration file (TOML); without it the defaults apply.
    #[arg(long = "config", short = 'c')]
    pub path: Option<PathBuf>,
    /// Address to listen on, IP:PORT (repeatable); replaces `server.listen`.
    #[arg(long)]
    pub listen: Vec<String>,
    /// Directory for durable state; replaces `server.data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log format; replaces `log.format`.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter; replaces `log.level`.
    #[arg(long)]
    pub log_level: Option<String>,
}

impl Source {
    /// Reads the file (if any), applies the overrides and checks everything.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut file = match &self.path {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        if !self.listen.is_empty() {
            file.server.listen = Some(self.listen.clone());
        }
        if let Some(dir) = &self.data_dir {
            file.server.data_dir = dir.clone();
        }
        if let Some(format) = self.log_format {
            file.log.format = format;
        }
        if let Some(level) = &self.log_level {
            file.log.level = level.clone();
        }
        file.settings()
    }
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks every value and builds the settings.
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let invalid = |key: &str, fix: String| ConfigError::Invalid {
            key: key.to_string(),
            fix,
        };
        let mut listeners = listeners(self.server.listen.as_deref(), &self.listener)?;
        if let Some(allow) = self.auth.allow_anonymous {
            // The global switch decides where a listener entry does not.
            let explicit: Vec<bool> = self
                .listener
                .iter()
                .map(|l| l.allow_anonymous.is_some())
                .chain(std::iter::repeat(false))
                .take(listeners.len())
                .collect();
            for (listener, explicit) in listeners.iter_mut().zip(explicit) {
                if !explicit {
                    listener.allow_anonymous = allow;
                }
            }
        }
        let auth = auth_settings(&self.auth, &listeners)?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a level or filter; use error, warn, info, debug or trace",
                    self.log.level
                ),
            ));
        }
        let l = &self.limits;
        let mut engine = cicada_engine::Config {
            connect_timeout: Duration::from_secs(self.server.connect_timeout_secs),
            // The in-memory backend stores nothing, so the engine emits nothing to store.
            durable: self.storage.backend == Backend::Rocksdb,
            ..cicada_engine::Config::default()
        };
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = l.$field { engine.$field = v; }
            )*};
        }
        set!(
            max_packet_size,
            receive_maximum,
            max_inflight,
            max_queued_messages,
            max_queued_bytes,
            queue_qos0_offline,
            max_topic_length,
            max_topic_levels,
            retain_available,
            topic_alias_maximum,
            send_window,
            max_client_id_length,
            max_outbound_topic_aliases
        );
        if let Some(q) = l.max_qos {
            engine.max_qos = QoS::from_u8(q).ok_or_else(|| {
                invalid("limits.max_qos", format!("{q} is not a QoS; use 0, 1 or 2"))
            })?;
        }
        if let Some(v) = l.max_session_expiry_secs {
            engine.max_session_expiry = v;
        }
        engine.max_keep_alive = l.max_keep_alive_secs;
        engine.shared_subscriptions = self.shared_subscriptions.enabled;
        engine.wildcard_subscriptions = self.features.wildcard_subscriptions;
        engine.subscription_identifiers = self.features.subscription_identifiers;
        engine.response_information_prefix = self.features.response_information_prefix;
        engine.redirect =
            self.redirect
                .server_reference
                .map(|server_reference| cicada_engine::Redirect {
                    server_reference,
                    permanent: self.redirect.permanent,
                });
        // Every CONNECT goes to the authenticator: even without providers it decides which
        // listeners let anonymous clients in.
        engine.authentication = cicada_engine::Authentication::External;
        let webhooks = webhook_specs(&self.webhook)?;
        engine.message_events = crate::webhook::Webhooks::message_filters(&webhooks);
        if self.auth.scram_credentials.is_some() {
            engine.auth_methods = vec![cicada_scram::METHOD.to_string()];
        }
        engine.quotas = self.quotas.quotas()?;
        for (i, t) in self.tenant.iter().enumerate() {
            for listener in &t.listeners {
                if !listeners.iter().any(|l| &l.name == listener) {
                    return Err(invalid(
                        &format!("tenant[{i}].listeners"),
                        format!(
                            "no listener is named {listener:?}; give the [[listener]] that name"
                        ),
                    ));
                }
            }
            let key = |name: &str| format!("tenant[{i}].{name}");
            let messages = rate(
                &key("publish_messages_per_sec"),
                t.publish_messages_per_sec,
                t.publish_messages_burst,
            )?
            .map(|rate| cicada_engine::RateLimit {
                rate,
                policy: t.publish_messages_policy.into(),
            });
            let bytes = rate(
                &key("publish_bytes_per_sec"),
                t.publish_bytes_per_sec,
                t.publish_bytes_burst,
            )?
            .map(|rate| cicada_engine::RateLimit {
                rate,
                policy: t.publish_bytes_policy.into(),
            });
            engine.tenants.push(cicada_engine::Tenant {
                name: t.name.clone(),
                mount_point: t
                    .mount_point
                    .clone()
                    .unwrap_or_else(|| format!("{}/", t.name)),
                listeners: t.listeners.clone(),
                username_prefix: t.username_prefix.clone(),
                cert_name: t.cert_name.clone(),
                max_connections: t.max_connections,
                publish_messages: messages,
                publish_bytes: bytes,
                max_subscriptions: t.max_subscriptions,
                max_queued_messages: t.max_queued_messages,
                max_queued_bytes: t.max_queued_bytes,
            });
        }
        engine.sys_interval =
            (self.sys.interval_secs > 0).then(|| Duration::from_secs(self.sys.interval_secs));
        engine.shared_strategy = match self.shared_subscriptions.strategy {
            SharedStrategy::RoundRobin => cicada_engine::SharedStrategy::RoundRobin,
            SharedStrategy::Random => cicada_engine::SharedStrategy::Random,
            SharedStrategy::Sticky => cicada_engine::SharedStrategy::Sticky,
            SharedStrategy::HashTopic => cicada_engine::SharedStrategy::HashTopic,
            SharedStrategy::HashPublisher => cicada_engine::SharedStrategy::HashPublisher,
        };
        if self.storage.fsync == Fsync::Interval && self.storage.fsync_interval_ms == 0 {
            return Err(invalid(
                "storage.fsync_interval_ms",
                "must be at least 1; use fsync = \"always\" to sync every write".into(),
            ));
        }
        let fsync = match self.storage.fsync {
            Fsync::Always => cicada_storage::FsyncPolicy::Always,
            Fsync::Interval => cicada_storage::FsyncPolicy::Interval,
            Fsync::Never => cicada_storage::FsyncPolicy::Never,
        };
        let cluster = match &self.cluster {
            Some(section) => {
                let cluster = section.check().map_err(|(key, fix)| invalid(&key, fix))?;
                if self.storage.backend == Backend::Memory {
                    return Err(invalid(
                        "storage.backend",
                        "a cluster node keeps its raft log on disk (a node that forgets its votes \
                         could elect two leaders); use \"rocksdb\""
                            .into(),
                    ));
                }
                engine.cluster = Some(cluster.engine.clone());
                Some(cluster)
            }
            None => None,
        };
        engine
            .validate()
            .map_err(|e| invalid(&engine_key(e.key), e.fix.to_string()))?;
        Ok(Settings {
            listeners,
            data_dir: self.server.data_dir,
            log_format: self.log.format,
            log_level: self.log.level,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            backend: self.storage.backend,
            fsync,
            fsync_interval: Duration::from_millis(self.storage.fsync_interval_ms),
            engine,
            auth,
            acl_file: self.acl.file,
            bans_file: self.bans.file,
            http: http_settings(&self.http)?,
            otlp: self.tracing.otlp_endpoint.map(|endpoint| OtlpSettings {
                endpoint,
                service_name: self.tracing.service_name.unwrap_or_else(|| "cicada".into()),
            }),
            bridges: bridge_specs(&self.bridge)?,
            webhooks,
            cluster,
        })
    }
}

/// Checks `[http]`; the token file is read now, so a missing file stops the start, not the first
/// request.
fn http_settings(http: &HttpSection) -> Result<Option<HttpSettings>, ConfigError> {
    let Some(listen) = &http.listen else {
        if http.admin_token_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "http.admin_token_file".into(),
                fix: "the admin API needs the HTTP listener: set http.listen too, e.g. \"127.0.0.1:8080\"".into(),
            });
        }
        if http.publish_anonymous {
            return Err(ConfigError::Invalid {
                key: "http.publish_anonymous".into(),
                fix: "the HTTP publish API needs the HTTP listener: set http.listen too, e.g. \"127.0.0.1:8080\"".into(),
            });
        }
        return Ok(None);
    };
    let listen = listen.parse().map_err(|_| ConfigError::Invalid {
        key: "http.listen".into(),
        fix: format!("expected IP:PORT, e.g. \"127.0.0.1:8080\", got {listen:?}"),
    })?;
    let admin_token = match &http.admin_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                key: "http.admin_token_file".into(),
                fix: format!("cannot read {}: {e}", path.display()),
            })?;
            let token = text.trim().to_string();
            if token.chars().count() < 16 || token.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid {
                    key: "http.admin_token_file".into(),
                    fix: format!(
                        "{} must hold one token of at least 16 characters without spaces, e.g. from `openssl rand -hex 24`",
                        path.display()
                    ),
                });
            }
            Some(token)
        }
        None => None,
    };
    Ok(Some(HttpSettings {
        listen,
        admin_token,
        publish_anonymous: http.publish_anonymous,
    }))
}

/// The providers in order, each checked for its configuration.
fn auth_settings(
    auth: &AuthSection,
    listeners: &[cicada_transports::config::Listener],
) -> Result<AuthSettings, ConfigError> {
    let configured = |p: Provider| match p {
        Provider::Password => auth.password.is_some(),
        Provider::Jwt => auth.jwt.is_some(),
        Provider::X509 => false,
    };
    let providers = match &auth.providers {
        Some(list) => {
            for (i, p) in list.iter().enumerate() {
                if list[..i].contains(p) {
                    return Err(ConfigError::Invalid {
                        key: "auth.providers".into(),
                        fix: format!("{p:?} is listed twice; list each provider once"),
                    });
                }
                let section = match p {
                    Provider::Password => "[auth.password] with `file`",
                    Provider::Jwt => "[auth.jwt]",
                    Provider::X509 => "",
                };
                if *p != Provider::X509 && !configured(*p) {
                    return Err(ConfigError::Invalid {
                        key: "auth.providers".into(),
                        fix: format!("{p:?} is listed but not configured; add {section}"),
                    });
                }
            }
            list.clone()
        }
        None => [Provider::Password, Provider::Jwt]
            .into_iter()
            .filter(|p| configured(*p))
            .collect(),
    };
    Ok(AuthSettings {
        providers,
        password_file: auth.password.as_ref().map(|p| p.file.clone()),
        jwt: auth.jwt.clone(),
        scram_credentials: auth.scram_credentials.clone(),
        anonymous: listeners
            .iter()
            .map(|l| (l.name.clone(), l.allow_anonymous))
            .collect(),
    })
}

/// The listeners: every `[[listener]]`, then `server.listen` as plain TCP listeners.
fn listeners(
    listen: Option<&[String]>,
    entries: &[cicada_transports::ListenerConfig],
) -> Result<Vec<cicada_transports::config::Listener>, ConfigError> {
    use cicada_transports::config::Listener;
    let default = ["127.0.0.1:1883".to_string()];
    let listen = match listen {
        Some(listen) => listen,
        None if entries.is_empty() => &default,
        None => &[],
    };
    // `[[listener]]` entries bind first: once a `server.listen` port answers, every listener does
    // (the tests wait on that port).
    let mut listeners = Vec::new();
    // Where each listener was configured, for errors.
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let listener = entry.check(i).map_err(|e| ConfigError::Invalid {
            key: e.key,
            fix: e.fix,
        })?;
        listeners.push(listener);
        keys.push(format!("listener[{i}].bind"));
    }
    for addr in listen {
        let bind = addr
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Invalid {
                key: "server.listen".into(),
                fix: format!("{addr:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:1883\""),
            })?;
        listeners.push(Listener::tcp(bind));
        keys.push("server.listen".to_string());
    }
    if listeners.is_empty() {
        return Err(ConfigError::Invalid {
            key: "server.listen".into(),
            fix: "give at least one address, e.g. [\"127.0.0.1:1883\"], or a [[listener]]".into(),
        });
    }
    let mut seen = std::collections::BTreeMap::new();
    for (l, key) in listeners.iter().zip(&keys) {
        // A UDP (QUIC) and a TCP listener may share a port.
        let udp = l.kind == cicada_transports::Kind::Quic;
        if let Some(first) = seen.insert((l.bind, udp), key) {
            return Err(ConfigError::Invalid {
                key: key.clone(),
                fix: format!(
                    "{} is already used by `{first}`; give each listener its own port",
                    l.bind
                ),
            });
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, l) in listeners.iter().enumerate() {
        if !names.insert(l.name.as_str()) {
            return Err(ConfigError::Invalid {
                key: format!("listener[{i}].name"),
                fix: format!(
                    "{:?} names another listener too; give each listener its own name",
                    l.name
                ),
            });
        }
    }
    Ok(listeners)
}

/// The file key of an engine configuration field.
pub fn engine_key(field: &str) -> String {
    match field {
        "max_keep_alive" => "limits.max_keep_alive_secs".into(),
        "max_session_expiry" => "limits.max_session_expiry_secs".into(),
        "connect_timeout" => "server.connect_timeout_secs".into(),
        "sys_interval" => "sys.interval_secs".into(),
        "wildcard_subscriptions" | "subscription_identifiers" | "response_information_prefix" => {
            format!("features.{field}")
        }
        "redirect.server_reference" => field.into(),
        cluster if cluster.starts_with("cluster") => cluster.into(),
        "auth_methods" => "auth.scram_credentials".into(),
        quota if quota.starts_with("quotas.") => quota.into(),
        tenant if tenant.starts_with("tenant.") => {
            format!("[[tenant]] {}", &tenant["tenant.".len()..])
        }
        other => format!("limits.{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        FileConfig::parse(text, Path::new("test.toml"))?.settings()
    }

    #[test]
    fn empty_file_is_a_working_broker() {
        let s = settings("").expect("defaults");
        let binds: Vec<SocketAddr> = s.listeners.iter().map(|l| l.bind).collect();
        assert_eq!(
            binds,
            ["127.0.0.1:1883".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../cicada.toml");
        settings(text).expect("cicada.toml parses and validates");
    }

    #[test]
    fn a_cluster_node_needs_rocksdb_and_reaches_the_engine() {
        let cluster = "[cluster]\nnode = 2\nplaintext = true\n\
                       [[cluster.members]]\nnode = 1\naddress = \"127.0.0.1:7101\"\n\
                       [[cluster.members]]\nnode = 2\naddress = \"127.0.0.1:7102\"\n\
                       [[cluster.members]]\nnode = 3\naddress = \"127.0.0.1:7103\"\n";
        let s = settings(cluster).expect("valid");
        let engine = s.engine.cluster.expect("the engine is a cluster node");
        assert_eq!((engine.node, engine.members), (2, vec![1, 2, 3]));
        let e = settings(&format!("[storage]\nbackend = \"memory\"\n{cluster}"))
            .expect_err("a cluster needs its log on disk");
        assert!(e.to_string().contains("storage.backend"), "{e}");
        let e = settings(&cluster.replace("node = 2\nplaintext", "node = 9\nplaintext"))
            .expect_err("not a member");
        assert!(e.to_string().contains("cluster.members"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = settings("[limits]\nreceive_maximum = 0\n").expect_err("invalid");
        assert!(e.to_string().contains("limits.receive_maximum"), "{e}");
        let e = settings("[server]\nlisten = [\"localhost\"]\n").expect_err("invalid");
        assert!(e.to_string().contains("server.listen"), "{e}");
        let e = settings("[limits]\nmax_qos = 3\n").expect_err("invalid");
        assert!(e.to_string().contains("limits.max_qos"), "{e}");
        let e = settings("[storage]\nfsync = \"sometimes\"\n").expect_err("invalid");
        assert!(e.to_string().contains("fsync"), "{e}");
        let e = settings("[storage]\nfsync = \"interval\"\nfsync_interval_ms = 0\n")
            .expect_err("invalid");
        assert!(e.to_string().contains("storage.fsync_interval_ms"), "{e}");
        let e = settings("[http]\npublish_anonymous = true\n").expect_err("no listener");
        assert!(e.to_string().contains("http.publish_anonymous"), "{e}");
        let e = settings("[server]\nlisen = []\n").expect_err("typo");
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = settings("[shared_subscriptions]\nstrategy = \"fair\"\n").expect_err("invalid");
        assert!(
            e.to_string().contains("round_robin"),
            "lists the choices: {e}"
        );
    }

    #[test]
    fn listeners_from_server_listen_and_listener_entries() {
        let tls = "[listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let s = settings(&format!(
            "[[listener]]\nkind = \"tls\"\nbind = \"0.0.0.0:8883\"\n{tls}\
             [[listener]]\nkind = \"quic\"\nbind = \"0.0.0.0:8883\"\n{tls}"
        ))
        .expect("valid");
        // No default TCP listener once listeners are configured.
        let kinds: Vec<_> = s.listeners.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["tls", "quic"]);
        let s = settings("[server]\nlisten = [\"127.0.0.1:1\"]\n[[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:2\"\n")
            .expect("valid");
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[0].path, "/mqtt");
        let e =
            settings("[[listener]]\nkind = \"wss\"\nbind = \"127.0.0.1:2\"\n").expect_err("no tls");
        assert!(e.to_string().contains("`listener[0].tls`"), "{e}");
        let e = settings("[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:2\"\n[[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:2\"\n")
            .expect_err("same port");
        assert!(e.to_string().contains("`listener[1].bind`"), "{e}");
        assert!(
            e.to_string().contains("already used by `listener[0].bind`"),
            "{e}"
        );
    }

    #[test]
    fn shared_subscription_settings_reach_the_engine() {
        let s = settings("[shared_subscriptions]\nenabled = false\nstrategy = \"hash_topic\"\n")
            .expect("valid");
        assert!(!s.engine.shared_subscriptions);
        assert_eq!(
            s.engine.shared_strategy,
            cicada_engine::SharedStrategy::HashTopic
        );
    }

    #[test]
    fn mqtt5_features_redirect_and_scram_reach_the_engine() {
        let s = settings(concat!(
            "[features]\nwildcard_subscriptions = false\nsubscription_identifiers = false\n",
            "response_information_prefix = \"reply/\"\n",
            "[limits]\nmax_outbound_topic_aliases = 5\n",
            "[redirect]\nserver_reference = \"b.example:1883\"\npermanent = true\n",
            "[auth]\nscram_credentials = \"users.scram\"\n",
        ))
        .expect("valid");
        let e = &s.engine;
        assert!(!e.wildcard_subscriptions && !e.subscription_identifiers);
        assert_eq!(e.response_information_prefix.as_deref(), Some("reply/"));
        assert_eq!(e.max_outbound_topic_aliases, 5);
        assert_eq!(
            e.redirect,
            Some(cicada_engine::Redirect {
                server_reference: "b.example:1883".into(),
                permanent: true
            })
        );
        assert_eq!(e.authentication, cicada_engine::Authentication::External);
        assert_eq!(e.auth_methods, ["SCRAM-SHA-256"]);
        assert_eq!(s.auth.scram_credentials, Some(PathBuf::from("users.scram")));
        let err = settings("[redirect]\nserver_reference = \"\"\n").expect_err("empty");
        assert!(
            err.to_string().contains("redirect.server_reference"),
            "{err}"
        );
    }

    #[test]
    fn security_sections_map_and_errors_name_the_key() {
        let s = settings(concat!(
            "[auth]\nallow_anonymous = false\n[auth.password]\nfile = \"p\"\n",
            "[quotas]\npublish_messages_per_sec = 10\npublish_messages_policy = \"drop\"\n",
            "max_subscriptions = 3\nconnect_rate_per_address = 2\n",
            "[acl]\nfile = \"acl\"\n[bans]\nfile = \"bans\"\n",
        ))
        .expect("valid");
        assert_eq!(s.auth.providers, [Provider::Password]);
        assert_eq!(
            s.auth.anonymous.values().copied().collect::<Vec<_>>(),
            [false]
        );
        let q = s.engine.quotas;
        let messages = q.publish_messages.expect("messages");
        assert_eq!(messages.rate.per_sec.get(), 10);
        assert_eq!(
            messages.rate.burst.get(),
            10,
            "one second's worth by default"
        );
        assert_eq!(messages.policy, cicada_engine::OverloadPolicy::Drop);
        assert_eq!(
            q.max_subscriptions,
            Some((3, cicada_engine::OverloadPolicy::Drop))
        );
        assert!(q.connect_rate_per_address.is_some());
        assert_eq!(s.acl_file, Some(PathBuf::from("acl")));
        assert_eq!(s.bans_file, Some(PathBuf::from("bans")));
        // Loopback listeners let anonymous clients in by default.
        let s = settings("").expect("valid");
        assert_eq!(
            s.auth.anonymous.values().copied().collect::<Vec<_>>(),
            [true]
        );
        for (text, key) in [
            ("[auth]\nproviders = [\"jwt\"]\n", "auth.providers"),
            ("[quotas]\npublish_bytes_per_sec = 0\n", "quotas.publish_bytes_per_sec"),
            (
                "[quotas]\nmax_subscriptions = 1\nmax_subscriptions_policy = \"throttle\"\n",
                "quotas.max_subscriptions_policy",
            ),
            (
                "[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:1\"\nname = \"a\"\n[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:2\"\nname = \"a\"\n",
                "listener[1].name",
            ),
        ] {
            let err = settings(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
