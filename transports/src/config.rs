//! `[[listener]]` entries of the broker's configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which transport a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
    /// MQTT over a QUIC bidirectional stream.
    Quic,
}

impl Kind {
    /// The name used in the configuration and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
            Kind::Quic => "quic",
        }
    }

    /// Whether this transport runs TLS (and so needs a `[listener.tls]` section).
    pub fn uses_tls(self) -> bool {
        matches!(self, Kind::Tls | Kind::Wss | Kind::Quic)
    }

    /// Whether this transport is a WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Kind::Ws | Kind::Wss)
    }
}

/// Whether clients present certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Asked for; a client without one is let in, one with a certificate the CA did not sign is not.
    Optional,
    /// Every client must present a certificate signed by the CA.
    Required,
}

/// One `[[listener]]` entry as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs and metrics; defaults to `kind://bind`.
    #[serde(default)]
    pub name: Option<String>,
    /// The transport.
    pub kind: Kind,
    /// `IP:PORT` to listen on (UDP for QUIC).
    pub bind: String,
    /// Whether every connection starts with a PROXY protocol v1 or v2 header (behind a load
    /// balancer); the address it names becomes the client's. Not for QUIC.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Connections open at once on this listener; more are closed on accept. Unset: no limit here.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Seconds a client has for the PROXY header, TLS and WebSocket handshakes.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// WebSocket only: the HTTP path to upgrade on.
    #[serde(default)]
    pub path: Option<String>,
    /// TLS settings, for `tls`, `wss` and `quic`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Whether clients that present no credentials are let in. Unset: only on a loopback address
    /// without a PROXY header (where the clients are local).
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
}

fn default_handshake_timeout() -> u64 {
    10
}

/// `[listener.tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CA certificates that sign client certificates.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Whether clients present certificates.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Use the client certificate's identity (Common Name, else first SAN) as the user name,
    /// replacing the one in CONNECT.
    #[serde(default)]
    pub identity_as_username: bool,
    /// Seconds between checks of the certificate files for changes (a changed file is reloaded);
    /// 0 reloads only on SIGHUP.
    #[serde(default = "default_watch_interval")]
    pub watch_interval_secs: u64,
}

fn default_watch_interval() -> u64 {
    5
}

/// A listener's configuration, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The listener's name.
    pub name: String,
    /// The transport.
    pub kind: Kind,
    /// The address to bind.
    pub bind: SocketAddr,
    /// Whether a PROXY header precedes each connection.
    pub proxy_protocol: bool,
    /// At most this many connections at once.
    pub max_connections: Option<usize>,
    /// Bound on the handshakes.
    pub handshake_timeout: Duration,
    /// The WebSocket path (`/mqtt` by default).
    pub path: String,
    /// TLS settings, present exactly when the kind uses TLS.
    pub tls: Option<TlsConfig>,
    /// Whether clients without credentials are let in.
    pub allow_anonymous: bool,
}

impl Listener {
    /// A plain TCP listener on `bind` with the defaults (what `server.listen` gives).
    pub fn tcp(bind: SocketAddr) -> Listener {
        Listener {
            name: format!("{}://{bind}", Kind::Tcp),
            kind: Kind::Tcp,
            bind,
            proxy_protocol: false,
            max_connections: None,
            handshake_timeout: Duration::from_secs(default_handshake_timeout()),
            path: String::new(),
            tls: None,
            allow_anonymous: bind.ip().is_loopback(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A listener entry that cannot be used; names the key and the fix.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {fix}")]
pub struct ConfigError {
    /// The key, e.g. `listener[1].tls.cert`.
    pub key: String,
    /// What to do about it.
    pub fix: String,
}

impl ListenerConfig {
    /// Checks the entry, the `index`-th `[[listener]]` (from 0), against its kind.
    pub fn check(&self, index: usize) -> Result<Listener, ConfigError> {
        let err = |key: &str, fix: String| ConfigError {
            key: format!("listener[{index}].{key}"),
            fix,
        };
        let bind: SocketAddr = self.bind.parse().map_err(|_| {
            err(
                "bind",
                format!(
                    "{:?} is not an address; write IP:PORT, e.g. \"0.0.0.0:8883\"",
                    self.bind
                ),
            )
        })?;
        let kind = self.kind;
        if self.proxy_protocol && kind == Kind::Quic {
            return Err(err(
                "proxy_protocol",
                "the PROXY protocol runs over TCP; remove it from a quic listener".into(),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(err(
                "max_connections",
                "must be at least 1; leave it out for no limit".into(),
            ));
        }
        if self.handshake_timeout_secs == 0 {
            return Err(err("handshake_timeout_secs", "must be at least 1".into()));
        }
        let path = match (&self.path, kind.is_websocket()) {
            (Some(_), false) => {
                return Err(err(
                    "path",
                    format!(
                    "only ws and wss listeners have a path; remove it from this {kind} listener"
                ),
                ))
            }
            (Some(p), true) if !p.starts_with('/') => {
                return Err(err(
                    "path",
                    format!("{p:?} must start with `/`, e.g. \"/mqtt\""),
                ))
            }
            (Some(p), true) => p.clone(),
            (None, _) => "/mqtt".to_string(),
        };
        match (&self.tls, kind.uses_tls()) {
            (None, true) => {
                return Err(err(
                    "tls",
                    format!("a {kind} listener needs [listener.tls] with `cert` and `key` (PEM files)"),
                ))
            }
            (Some(_), false) => {
                return Err(err(
                    "tls",
                    format!("a {kind} listener does not use TLS; remove [listener.tls] or use kind = \"tls\" / \"wss\""),
                ))
            }
            (Some(tls), true) => {
                if tls.client_auth != ClientAuth::None && tls.ca.is_none() {
                    return Err(err(
                        "tls.ca",
                        "client_auth needs a CA bundle to verify client certificates; set `ca` to a PEM file".into(),
                    ));
                }
                if tls.ca.is_some() && tls.client_auth == ClientAuth::None {
                    return Err(err(
                        "tls.client_auth",
                        "a CA bundle is set but client certificates are not asked for; set client_auth = \"required\" (or \"optional\"), or remove `ca`".into(),
                    ));
                }
                if tls.identity_as_username && tls.client_auth == ClientAuth::None {
                    return Err(err(
                        "tls.identity_as_username",
                        "needs client certificates; set client_auth = \"required\" (or \"optional\")".into(),
                    ));
                }
            }
            (None, false) => {}
        }
        Ok(Listener {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("{kind}://{bind}")),
            kind,
            bind,
            proxy_protocol: self.proxy_protocol,
            max_connections: self.max_connections,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            path,
            tls: self.tls.clone(),
            allow_anonymous: self
                .allow_anonymous
                .unwrap_or(bind.ip().is_loopback() && !self.proxy_protocol),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        listener: Vec<ListenerConfig>,
    }

    fn check(text: &str) -> Result<Listener, ConfigError> {
        let file: File = toml::from_str(text).expect("parses");
        file.listener[0].check(0)
    }

    #[test]
    fn defaults_fill_in() {
        let l = check("[[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:8080\"\n").expect("valid");
        assert_eq!(l.name, "ws://127.0.0.1:8080");
        assert_eq!(l.path, "/mqtt");
        assert_eq!(l.handshake_timeout, Duration::from_secs(10));
        assert!(
            l.allow_anonymous,
            "loopback listeners let anonymous clients in"
        );
        let l = check("[[listener]]\nkind = \"tcp\"\nbind = \"0.0.0.0:1883\"\n").expect("valid");
        assert!(!l.allow_anonymous, "others do not, unless told to");
        let l = check(
            "[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:1883\"\nproxy_protocol = true\n",
        )
        .expect("valid");
        assert!(
            !l.allow_anonymous,
            "behind a proxy the clients are not local"
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases = [
            ("kind = \"tls\"\nbind = \"127.0.0.1:1\"", "listener[0].tls"),
            ("kind = \"tcp\"\nbind = \"nowhere\"", "listener[0].bind"),
            ("kind = \"quic\"\nbind = \"127.0.0.1:1\"\nproxy_protocol = true\n[listener.tls]\ncert = \"c\"\nkey = \"k\"", "listener[0].proxy_protocol"),
            ("kind = \"tcp\"\nbind = \"127.0.0.1:1\"\npath = \"/x\"", "listener[0].path"),
            ("kind = \"ws\"\nbind = \"127.0.0.1:1\"\npath = \"x\"", "listener[0].path"),
            ("kind = \"tls\"\nbind = \"127.0.0.1:1\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"\nclient_auth = \"required\"", "listener[0].tls.ca"),
            ("kind = \"tls\"\nbind = \"127.0.0.1:1\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"\nidentity_as_username = true", "listener[0].tls.identity_as_username"),
            ("kind = \"tcp\"\nbind = \"127.0.0.1:1\"\nmax_connections = 0", "listener[0].max_connections"),
            ("kind = \"tls\"\nbind = \"127.0.0.1:1\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"\nca = \"ca\"", "listener[0].tls.client_auth"),
        ];
        for (body, key) in cases {
            let e = check(&format!("[[listener]]\n{body}\n")).expect_err(body);
            assert!(e.to_string().contains(&format!("`{key}`")), "{body}: {e}");
        }
    }
}
