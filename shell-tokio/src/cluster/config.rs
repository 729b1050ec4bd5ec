//! `[cluster]`: this node's number, where it listens for the other nodes, every member's address,
//! and the certificates that admit a node to the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[cluster]` as the file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's number (1 to 65535), unique in the cluster.
    pub node: u16,
    /// Where the other nodes connect to this one; defaults to this node's member address.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Every node of the cluster, this one included.
    pub members: Vec<MemberSection>,
    /// mTLS between the nodes. Required unless `plaintext = true`.
    #[serde(default)]
    pub tls: Option<ClusterTlsSection>,
    /// Run the links between nodes without TLS: anyone who can reach `listen` can join the
    /// cluster. For a trusted network or a demo only.
    #[serde(default)]
    pub plaintext: bool,
    /// The raft tick in milliseconds (default 100).
    #[serde(default)]
    pub tick_ms: Option<u64>,
    /// Ticks without a leader before a node stands for election (default 10).
    #[serde(default)]
    pub election_ticks: Option<usize>,
    /// How long a node may go without a leader before it disconnects its clients (default 4000).
    #[serde(default)]
    pub fence_after_ms: Option<u64>,
    /// How long the leader hears nothing from a member before it declares it down and adopts its
    /// sessions (default 10000); a link gives up on its peer after twice this.
    #[serde(default)]
    pub peer_timeout_ms: Option<u64>,
    /// How long a resuming client waits for its session to come from the node that held it before
    /// it gets a fresh one (default 1000).
    #[serde(default)]
    pub handover_timeout_ms: Option<u64>,
    /// Log entries applied between two snapshots (default 10000): the log is dropped up to each.
    #[serde(default)]
    pub snapshot_entries: Option<usize>,
    /// The largest part a snapshot is sent in, in bytes (default 8388608, 8 MiB; at most 15 MiB,
    /// to fit a link frame): a node that falls behind the log or joins gets the state in parts.
    #[serde(default)]
    pub snapshot_part_bytes: Option<usize>,
    /// Join a running cluster instead of founding one: start with no membership and wait until a
    /// member adds this node (`POST /api/v1/cluster/members`). `members` then lists this node and
    /// the nodes it may first hear from. Ignored once the node has a raft log.
    #[serde(default)]
    pub join: bool,
}

/// `[[cluster.members]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    /// The node's number.
    pub node: u16,
    /// `host:port` where the node listens for the other nodes.
    pub address: String,
    /// The name its certificate carries, when it differs from the address's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `host:port` where MQTT clients reach the node: the Server Reference a drain of another
    /// node sends its clients to.
    #[serde(default)]
    pub mqtt: Option<String>,
}

/// `[cluster.tls]`: one certificate per node, valid for both ends of a connection (extended key
/// usages serverAuth and clientAuth), signed by a CA that signs nothing but cluster nodes: any
/// holder of a certificate from it can join as any node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsSection {
    /// PEM certificate chain of this node, leaf first.
    pub cert: PathBuf,
    /// PEM private key of this node.
    pub key: PathBuf,
    /// PEM bundle of the cluster's CA.
    pub ca: PathBuf,
}

/// Another node: its number, address and certificate name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: u16,
    pub address: String,
    /// The certificate name checked when connecting to it.
    pub server_name: String,
    /// Where its MQTT clients connect (`[[cluster.members]] mqtt`), if given.
    pub mqtt: Option<String>,
}

impl Peer {
    /// A node added through the admin API, as the log gave its address.
    pub fn from_member(node: u16, member: &cicada_engine::MemberAddress) -> Option<Peer> {
        let host = host_of(&member.address)?;
        Some(Peer {
            node,
            address: member.address.clone(),
            server_name: member
                .server_name
                .clone()
                .unwrap_or_else(|| host.to_string()),
            mqtt: member.mqtt.clone(),
        })
    }
}

/// `[cluster]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node: u16,
    pub listen: SocketAddr,
    pub peers: Vec<Peer>,
    /// `None` only with `plaintext = true`.
    pub tls: Option<ClusterTlsSection>,
    /// What the engine is given.
    pub engine: cicada_engine::ClusterConfig,
}

/// The key at fault and the fix.
type Invalid = (String, String);

fn invalid(key: &str, fix: impl Into<String>) -> Invalid {
    (key.to_string(), fix.into())
}

/// The host of `host:port` (brackets of an IPv6 address removed), if a port follows.
pub(crate) fn host_of(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

impl ClusterSection {
    /// Checks the section; the error names the key and the fix.
    pub fn check(&self) -> Result<ClusterSettings, Invalid> {
        let mut engine = cicada_engine::ClusterConfig::new(
            self.node,
            self.members.iter().map(|m| m.node).collect(),
        );
        if let Some(ms) = self.tick_ms {
            engine.tick = Duration::from_millis(ms);
        }
        if let Some(ticks) = self.election_ticks {
            engine.election_ticks = ticks;
        }
        if let Some(ms) = self.fence_after_ms {
            engine.fence_after = Duration::from_millis(ms);
        }
        if let Some(ms) = self.peer_timeout_ms {
            engine.peer_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.handover_timeout_ms {
            engine.handover_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.snapshot_entries {
            engine.snapshot_entries = n;
        }
        if let Some(n) = self.snapshot_part_bytes {
            engine.snapshot_part = n;
        }
        engine.join = self.join;
        let mut seen = std::collections::BTreeSet::new();
        let mut peers = Vec::new();
        let mut own = None;
        for (i, member) in self.members.iter().enumerate() {
            let key = format!("cluster.members[{i}]");
            if !seen.insert(member.node) {
                return Err(invalid(
                    &format!("{key}.node"),
                    format!(
                        "node {} is listed twice; give each node its own number",
                        member.node
                    ),
                ));
            }
            let Some(host) = host_of(&member.address) else {
                return Err(invalid(
                    &format!("{key}.address"),
                    format!(
                        "{:?} is not host:port; write e.g. \"10.0.0.2:7101\"",
                        member.address
                    ),
                ));
            };
            if let Some(mqtt) = &member.mqtt {
                if host_of(mqtt).is_none() || mqtt.contains(char::is_whitespace) {
                    return Err(invalid(
                        &format!("{key}.mqtt"),
                        format!(
                            "expected host:port where clients reach node {}, got {mqtt:?}",
                            member.node
                        ),
                    ));
                }
            }
            if member.node == self.node {
                own = Some(member);
                continue;
            }
            peers.push(Peer {
                node: member.node,
                mqtt: member.mqtt.clone(),
                address: member.address.clone(),
                server_name: member
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host.to_string()),
            });
        }
        let listen = match (self.listen, own) {
            (Some(listen), _) => listen,
            (None, Some(own)) => own.address.parse().map_err(|_| {
                invalid(
                    "cluster.listen",
                    format!(
                        "this node's address {:?} is not IP:PORT; set cluster.listen to the address to bind",
                        own.address
                    ),
                )
            })?,
            (None, None) => {
                return Err(invalid(
                    "cluster.members",
                    format!(
                        "node {} (cluster.node) is not a member; add it with its address",
                        self.node
                    ),
                ))
            }
        };
        if self.tls.is_none() && !self.plaintext {
            return Err(invalid(
                "cluster.tls",
                "nodes authenticate each other with mTLS: give cert, key and ca under [cluster.tls] \
                 (or set cluster.plaintext = true on a trusted network)",
            ));
        }
        Ok(ClusterSettings {
            node: self.node,
            listen,
            peers,
            tls: self.tls.clone(),
            engine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> ClusterSection {
        toml::from_str(text).expect("parses")
    }

    const MEMBERS: &str = r#"
        [[members]]
        node = 1
        address = "127.0.0.1:7101"
        [[members]]
        node = 2
        address = "localhost:7102"
        [[members]]
        node = 3
        address = "[::1]:7103"
        server_name = "node3.example"
    "#;

    #[test]
    fn members_become_peers_and_the_own_address_is_bound() {
        let s = section(&format!("node = 1\nplaintext = true\n{MEMBERS}"))
            .check()
            .expect("valid");
        assert_eq!(s.listen, "127.0.0.1:7101".parse().expect("addr"));
        let names: Vec<_> = s
            .peers
            .iter()
            .map(|p| (p.node, p.server_name.as_str()))
            .collect();
        assert_eq!(names, [(2, "localhost"), (3, "node3.example")]);
        assert_eq!(s.engine.members, [1, 2, 3]);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str| section(text).check().expect_err("invalid").0;
        assert_eq!(err(&format!("node = 1\n{MEMBERS}")), "cluster.tls");
        assert_eq!(
            err(&format!("node = 4\nplaintext = true\n{MEMBERS}")),
            "cluster.members"
        );
        assert_eq!(
            err("node = 1\nplaintext = true\n[[members]]\nnode = 1\naddress = \"nowhere\""),
            "cluster.members[0].address"
        );
        assert_eq!(
            err("node = 1\nplaintext = true\n[[members]]\nnode = 1\naddress = \"a:1\"\n[[members]]\nnode = 1\naddress = \"b:1\""),
            "cluster.members[1].node"
        );
        assert_eq!(
            err("node = 1\nplaintext = true\n[[members]]\nnode = 1\naddress = \"a:1\""),
            "cluster.listen"
        );
        assert_eq!(
            err("node = 1\nplaintext = true\n[[members]]\nnode = 1\naddress = \"127.0.0.1:1\"\nmqtt = \"no-port\""),
            "cluster.members[0].mqtt"
        );
    }

    #[test]
    fn a_members_mqtt_address_is_kept_for_drains() {
        let s = section(
            "node = 1\nplaintext = true\n[[members]]\nnode = 1\naddress = \"127.0.0.1:7101\"\n\
             [[members]]\nnode = 2\naddress = \"127.0.0.1:7102\"\nmqtt = \"mqtt2.example:1883\"",
        )
        .check()
        .expect("valid");
        assert_eq!(s.peers[0].mqtt.as_deref(), Some("mqtt2.example:1883"));
    }
}
