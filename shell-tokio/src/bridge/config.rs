//! A bridge's configuration: the `[[bridge]]` TOML table and the admin API's JSON body, one shape
//! for both, checked into a [`BridgeSpec`] whose errors name the key and the fix.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cicada_engine::codec::{ProtocolVersion, QoS, TopicFilter};
use cicada_transports::client::{ClientTls, Target};
use serde::{Deserialize, Serialize};

/// One bridge as written in the configuration file or posted to the admin API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// A unique name: letters, digits, `-` and `_`. It names the bridge's local session, its
    /// metrics and its admin API resource.
    pub name: String,
    /// The remote broker: `mqtt://`, `mqtts://`, `ws://`, `wss://` or `quic://` URL.
    pub remote: String,
    /// `"5"` (default) or `"3.1.1"`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The client identifier at the remote broker; default `cicada-bridge-{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user name at the remote broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password at the remote broker (prefer `password_file`).
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// A file holding the password at the remote broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the remote's certificate, for `mqtts://` and `wss://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    /// A client certificate (PEM) for remotes that ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// Accept any remote certificate. For testing only.
    #[serde(default)]
    pub insecure: bool,
    /// Keep alive towards the remote, in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u16,
    /// Start a new session at the remote on every connection (messages the remote queued for the
    /// bridge while it was away are lost). Off by default.
    #[serde(default)]
    pub clean_start: bool,
    /// How long the remote keeps the bridge's session while the link is down (5.0 only).
    #[serde(default = "default_remote_expiry")]
    pub remote_session_expiry_secs: u32,
    /// How long this broker keeps the bridge's buffer (its local session) while the bridge is
    /// down or removed from the configuration.
    #[serde(default = "default_buffer_expiry")]
    pub buffer_expiry_secs: u32,
    /// How many QoS 1/2 messages may be unacknowledged in each direction.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// The first wait before reconnecting, in milliseconds; it doubles up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// The longest wait before reconnecting, in milliseconds.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// The user name the bridge has in this broker, for ACL rules; default `bridge-{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_username: Option<String>,
    /// The topic mappings.
    pub topic: Vec<MappingConfig>,
}

/// One topic mapping, as mosquitto's `topic` line: a filter, a direction, a QoS and two prefixes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// The filter, without the prefixes.
    pub filter: String,
    /// `out` (here to the remote), `in` (remote to here) or `both`.
    pub direction: Direction,
    /// The QoS of the subscription on the sending side (default 1).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Prepended to the filter here; replaced by `remote_prefix` on the way out.
    #[serde(default)]
    pub local_prefix: String,
    /// Prepended to the filter at the remote; replaced by `local_prefix` on the way in.
    #[serde(default)]
    pub remote_prefix: String,
}

/// Which way a mapping carries messages.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Out,
    In,
    Both,
}

fn default_protocol() -> String {
    "5".into()
}
fn default_keep_alive() -> u16 {
    60
}
fn default_remote_expiry() -> u32 {
    3600
}
fn default_buffer_expiry() -> u32 {
    86_400
}
fn default_inflight() -> u16 {
    32
}
fn default_reconnect_initial() -> u64 {
    500
}
fn default_reconnect_max() -> u64 {
    30_000
}
fn default_qos() -> u8 {
    1
}

/// What is wrong with a bridge's configuration: the key and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bridge key `{key}`: {fix}")]
pub struct BridgeConfigError {
    pub key: String,
    pub fix: String,
}

/// A checked mapping: the filters on both sides and how to rewrite a topic.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub qos: QoS,
    /// `local_prefix` + filter: what the bridge subscribes to here (out) or publishes under (in).
    pub local: TopicFilter,
    /// `remote_prefix` + filter.
    pub remote: TopicFilter,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl Mapping {
    /// The remote topic for a local one this mapping's local filter matches.
    pub fn to_remote(&self, topic: &str) -> Option<String> {
        if !self.local.matches(topic) {
            return None;
        }
        let rest = topic.strip_prefix(self.local_prefix.as_str())?;
        Some(format!("{}{rest}", self.remote_prefix))
    }

    /// The local topic for a remote one this mapping's remote filter matches.
    pub fn to_local(&self, topic: &str) -> Option<String> {
        if !self.remote.matches(topic) {
            return None;
        }
        let rest = topic.strip_prefix(self.remote_prefix.as_str())?;
        Some(format!("{}{rest}", self.local_prefix))
    }
}

/// A checked bridge.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    pub name: String,
    /// As configured, for the admin API's listing.
    pub config: BridgeConfig,
    pub target: Target,
    pub tls: ClientTls,
    pub version: ProtocolVersion,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub keep_alive: u16,
    pub clean_start: bool,
    pub remote_session_expiry: u32,
    pub buffer_expiry: u32,
    pub inflight: u16,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// The bridge's client identifier here.
    pub local_client_id: String,
    pub local_username: String,
    pub outbound: Vec<Mapping>,
    pub inbound: Vec<Mapping>,
}

impl BridgeConfig {
    /// Checks every value. `at` names the entry in errors (`bridge[0]`, or the API body).
    pub fn check(&self, at: &str) -> Result<BridgeSpec, BridgeConfigError> {
        let err = |key: &str, fix: String| BridgeConfigError {
            key: format!("{at}.{key}"),
            fix,
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "name",
                format!(
                    "{:?} is not a bridge name; use 1 to 64 letters, digits, `-` or `_`",
                    self.name
                ),
            ));
        }
        let target = Target::parse(&self.remote).map_err(|e| err("remote", e.to_string()))?;
        let version = match self.protocol.as_str() {
            "5" | "5.0" => ProtocolVersion::V5,
            "3.1.1" | "4" => ProtocolVersion::V3_1_1,
            other => {
                return Err(err(
                    "protocol",
                    format!("{other:?} is not a protocol; use \"5\" or \"3.1.1\""),
                ))
            }
        };
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "password_file",
                    "give `password` or `password_file`, not both".into(),
                ))
            }
            (Some(p), None) => Some(Bytes::from(p.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    err(
                        "password_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(Bytes::from(text.trim_end_matches(['\r', '\n']).to_string()))
            }
            (None, None) => None,
        };
        if password.is_some() && self.username.is_none() && version == ProtocolVersion::V3_1_1 {
            return Err(err(
                "username",
                "MQTT 3.1.1 sends a password only with a user name; set `username`".into(),
            ));
        }
        if self.inflight == 0 {
            return Err(err("inflight", "must be at least 1".into()));
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err(err(
                "reconnect_max_ms",
                "reconnect_initial_ms must be at least 1 and at most reconnect_max_ms".into(),
            ));
        }
        if self.topic.is_empty() {
            return Err(err(
                "topic",
                "a bridge needs at least one mapping, e.g. { filter = \"#\", direction = \"out\" }"
                    .into(),
            ));
        }
        let (mut outbound, mut inbound) = (Vec::new(), Vec::new());
        for (i, m) in self.topic.iter().enumerate() {
            let key = |k: &str| format!("topic[{i}].{k}");
            let qos = QoS::from_u8(m.qos).ok_or_else(|| {
                err(
                    &key("qos"),
                    format!("{} is not a QoS; use 0, 1 or 2", m.qos),
                )
            })?;
            let filter = |prefix: &str, which: &str| {
                let text = format!("{prefix}{}", m.filter);
                TopicFilter::new(text.clone())
                    .ok()
                    .filter(|f| f.shared().is_none())
                    .ok_or_else(|| {
                        err(
                            &key(which),
                            format!("{text:?} (prefix and filter) is not a topic filter; a prefix ends with `/` and a filter uses `+` and `#` only as whole levels"),
                        )
                    })
            };
            let mapping = Mapping {
                qos,
                local: filter(&m.local_prefix, "local_prefix")?,
                remote: filter(&m.remote_prefix, "remote_prefix")?,
                local_prefix: m.local_prefix.clone(),
                remote_prefix: m.remote_prefix.clone(),
            };
            if matches!(m.direction, Direction::Out | Direction::Both) {
                outbound.push(mapping.clone());
            }
            if matches!(m.direction, Direction::In | Direction::Both) {
                inbound.push(mapping);
            }
        }
        // MQTT 3.1.1 has no No Local: the remote would hand the bridge back what it sent.
        if version == ProtocolVersion::V3_1_1 {
            for o in &outbound {
                if let Some(i) = inbound.iter().find(|i| i.remote.intersects(&o.remote)) {
                    return Err(err(
                        "topic",
                        format!(
                            "over MQTT 3.1.1 the remote would send back what the bridge sends it: {} (in) overlaps {} (out); use protocol \"5\" (No Local) or disjoint remote prefixes",
                            i.remote.as_str(),
                            o.remote.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(BridgeSpec {
            name: self.name.clone(),
            config: self.clone(),
            target,
            tls: ClientTls {
                ca: self.cafile.clone(),
                cert: self.certfile.clone(),
                key: self.keyfile.clone(),
                insecure: self.insecure,
                server_name: None,
            },
            version,
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| format!("cicada-bridge-{}", self.name)),
            username: self.username.clone(),
            password,
            keep_alive: self.keep_alive_secs,
            clean_start: self.clean_start,
            remote_session_expiry: self.remote_session_expiry_secs,
            buffer_expiry: self.buffer_expiry_secs,
            inflight: self.inflight,
            reconnect_initial: Duration::from_millis(self.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            local_client_id: format!("$bridge/{}", self.name),
            local_username: self
                .local_username
                .clone()
                .unwrap_or_else(|| format!("bridge-{}", self.name)),
            outbound,
            inbound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> BridgeConfig {
        toml::from_str(toml_text).expect("parses")
    }

    const BASE: &str = "name = \"up\"\nremote = \"mqtt://127.0.0.1:1884\"\n";

    #[test]
    fn mappings_rewrite_prefixes_both_ways() {
        let spec = parse(&format!(
            "{BASE}[[topic]]\nfilter = \"sensors/#\"\ndirection = \"both\"\nqos = 2\nlocal_prefix = \"site/\"\nremote_prefix = \"fleet/a/\"\n"
        ))
        .check("bridge[0]")
        .expect("valid");
        let (out, inb) = (&spec.outbound[0], &spec.inbound[0]);
        assert_eq!(out.qos, QoS::ExactlyOnce);
        assert_eq!(out.local.as_str(), "site/sensors/#");
        assert_eq!(
            out.to_remote("site/sensors/t1").as_deref(),
            Some("fleet/a/sensors/t1")
        );
        assert_eq!(out.to_remote("other/sensors/t1"), None);
        assert_eq!(
            inb.to_local("fleet/a/sensors/t1").as_deref(),
            Some("site/sensors/t1")
        );
        assert_eq!(spec.client_id, "cicada-bridge-up");
        assert_eq!(spec.local_username, "bridge-up");
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases = [
            ("name = \"a b\"\nremote = \"mqtt://h\"\n[[topic]]\nfilter = \"#\"\ndirection = \"out\"\n", "bridge[0].name"),
            ("name = \"a\"\nremote = \"http://h\"\n[[topic]]\nfilter = \"#\"\ndirection = \"out\"\n", "bridge[0].remote"),
            (&format!("{BASE}protocol = \"3\"\n[[topic]]\nfilter = \"#\"\ndirection = \"out\"\n"), "bridge[0].protocol"),
            (&format!("{BASE}[[topic]]\nfilter = \"#\"\ndirection = \"out\"\nqos = 3\n"), "bridge[0].topic[0].qos"),
            (&format!("{BASE}[[topic]]\nfilter = \"a#\"\ndirection = \"out\"\n"), "bridge[0].topic[0].local_prefix"),
            (&format!("{BASE}topic = []\n"), "bridge[0].topic"),
            (&format!("{BASE}protocol = \"3.1.1\"\n[[topic]]\nfilter = \"x/#\"\ndirection = \"both\"\n"), "bridge[0].topic"),
        ];
        for (text, key) in cases {
            let e = parse(text).check("bridge[0]").expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(!e.fix.is_empty());
        }
        // Disjoint remote prefixes are fine over 3.1.1.
        parse(&format!("{BASE}protocol = \"3.1.1\"\n[[topic]]\nfilter = \"x/#\"\ndirection = \"out\"\nremote_prefix = \"up/\"\n[[topic]]\nfilter = \"x/#\"\ndirection = \"in\"\nremote_prefix = \"down/\"\n"))
            .check("bridge[0]")
            .expect("disjoint prefixes do not loop");
    }
}
