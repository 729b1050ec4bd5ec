//! A webhook's configuration: the `[[webhook]]` TOML table, checked into a [`WebhookSpec`] whose
//! errors name the key and the fix.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cicada_engine::codec::TopicFilter;
use serde::Deserialize;

/// The events a webhook can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Kind {
    #[serde(rename = "client.connected")]
    ClientConnected,
    #[serde(rename = "client.disconnected")]
    ClientDisconnected,
    #[serde(rename = "session.created")]
    SessionCreated,
    #[serde(rename = "session.expired")]
    SessionExpired,
    #[serde(rename = "message.published")]
    MessagePublished,
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.dropped")]
    MessageDropped,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::ClientConnected,
        Kind::ClientDisconnected,
        Kind::SessionCreated,
        Kind::SessionExpired,
        Kind::MessagePublished,
        Kind::MessageDelivered,
        Kind::MessageDropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ClientConnected => "client.connected",
            Kind::ClientDisconnected => "client.disconnected",
            Kind::SessionCreated => "session.created",
            Kind::SessionExpired => "session.expired",
            Kind::MessagePublished => "message.published",
            Kind::MessageDelivered => "message.delivered",
            Kind::MessageDropped => "message.dropped",
        }
    }

    /// Whether the event is about a message (and so limited to the webhook's `topics`).
    pub fn is_message(self) -> bool {
        matches!(
            self,
            Kind::MessagePublished | Kind::MessageDelivered | Kind::MessageDropped
        )
    }
}

/// `[[webhook]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A unique name, for logs and metrics.
    pub name: String,
    /// Where events are POSTed: `http://` or `https://`.
    pub url: String,
    /// Which events; default all of them.
    #[serde(default)]
    pub events: Option<Vec<Kind>>,
    /// Topic filters: message events are sent only for messages on these topics. Required when
    /// message events are asked for.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Extra request headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// CA certificates (PEM) that sign the receiver's certificate, for `https://`.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// Events waiting to be sent; beyond, new events are dropped (counted).
    #[serde(default = "default_queue")]
    pub queue_size: usize,
    /// How long one POST may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Attempts per event, the first included; then the event is a dead letter (counted).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_ms: u64,
    /// The longest wait between attempts.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
}

fn default_queue() -> usize {
    10_000
}
fn default_timeout() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    5
}
fn default_retry_initial() -> u64 {
    200
}
fn default_retry_max() -> u64 {
    10_000
}

/// What is wrong with a webhook's configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("config key `{key}`: {fix}")]
pub struct WebhookConfigError {
    pub key: String,
    pub fix: String,
}

/// A checked webhook.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    pub name: String,
    pub url: reqwest::Url,
    pub events: Vec<Kind>,
    pub topics: Vec<TopicFilter>,
    pub headers: reqwest::header::HeaderMap,
    pub cafile: Option<PathBuf>,
    pub queue_size: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl WebhookSpec {
    pub fn wants(&self, kind: Kind) -> bool {
        self.events.contains(&kind)
    }

    /// Whether a message event on `topic` goes to this webhook.
    pub fn watches(&self, topic: &str) -> bool {
        self.topics.iter().any(|f| f.matches(topic))
    }
}

impl WebhookConfig {
    /// Checks every value; `at` names the entry (`webhook[0]`).
    pub fn check(&self, at: &str) -> Result<WebhookSpec, WebhookConfigError> {
        let err = |key: &str, fix: String| WebhookConfigError {
            key: format!("{at}.{key}"),
            fix,
        };
        if self.name.is_empty() {
            return Err(err("name", "give the webhook a name".into()));
        }
        let url = reqwest::Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                err(
                    "url",
                    format!("{:?} is not an http:// or https:// URL", self.url),
                )
            })?;
        if url.scheme() == "https" && self.cafile.is_none() {
            return Err(err(
                "cafile",
                "an https:// webhook needs the CA certificate (PEM) that signed the receiver's"
                    .into(),
            ));
        }
        let events = self.events.clone().unwrap_or_else(|| Kind::ALL.to_vec());
        if events.is_empty() {
            return Err(err("events", "name at least one event".into()));
        }
        let topics = self
            .topics
            .iter()
            .enumerate()
            .map(|(i, f)| {
                TopicFilter::new(f.clone())
                    .ok()
                    .filter(|f| f.shared().is_none())
                    .ok_or_else(|| {
                        err(
                            &format!("topics[{i}]"),
                            format!("{f:?} is not a topic filter"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if topics.is_empty() && events.iter().any(|k| k.is_message()) {
            return Err(err(
                "topics",
                "message events need the topic filters they are sent for, e.g. topics = [\"sensors/#\"] (or leave message.* out of `events`)".into(),
            ));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| err(&key, format!("not a header name: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| err(&key, format!("not a header value: {e}")))?;
            headers.insert(header, value);
        }
        if self.queue_size == 0 {
            return Err(err("queue_size", "must be at least 1".into()));
        }
        if self.timeout_ms == 0 {
            return Err(err("timeout_ms", "must be at least 1".into()));
        }
        if self.max_attempts == 0 {
            return Err(err("max_attempts", "must be at least 1".into()));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(err(
                "retry_max_ms",
                "retry_initial_ms must be at least 1 and at most retry_max_ms".into(),
            ));
        }
        Ok(WebhookSpec {
            name: self.name.clone(),
            url,
            events,
            topics,
            headers,
            cafile: self.cafile.clone(),
            queue_size: self.queue_size,
            timeout: Duration::from_millis(self.timeout_ms),
            max_attempts: self.max_attempts,
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<WebhookSpec, WebhookConfigError> {
        toml::from_str::<WebhookConfig>(text)
            .expect("parses")
            .check("webhook[0]")
    }

    #[test]
    fn defaults_send_every_event() {
        let spec = check("name = \"a\"\nurl = \"http://127.0.0.1:9/h\"\ntopics = [\"s/#\"]\n")
            .expect("valid");
        assert_eq!(spec.events, Kind::ALL);
        assert!(spec.watches("s/1") && !spec.watches("t/1"));
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        for (text, key) in [
            ("name = \"a\"\nurl = \"ftp://x\"\nevents = [\"client.connected\"]\n", "webhook[0].url"),
            ("name = \"a\"\nurl = \"https://x\"\nevents = [\"client.connected\"]\n", "webhook[0].cafile"),
            ("name = \"a\"\nurl = \"http://x\"\n", "webhook[0].topics"),
            ("name = \"a\"\nurl = \"http://x\"\nevents = []\n", "webhook[0].events"),
            ("name = \"a\"\nurl = \"http://x\"\nevents = [\"client.connected\"]\nmax_attempts = 0\n", "webhook[0].max_attempts"),
            ("name = \"a\"\nurl = \"http://x\"\nevents = [\"client.connected\"]\nheaders = { \"bad name\" = \"v\" }\n", "webhook[0].headers.bad name"),
        ] {
            let e = check(text).expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }
}
