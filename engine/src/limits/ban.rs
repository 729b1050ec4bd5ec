//! Bans by client identifier, user name or address, with an optional expiry.

use std::fmt;

use crate::time::Instant;

use super::glob;

/// What a ban matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BanTarget {
    /// Client identifiers matching this `*` glob.
    ClientId(String),
    /// User names (the ones the authenticator proved) matching this `*` glob.
    Username(String),
    /// Peer addresses in this network (a single address is a /32 or /128).
    Address(ipnet::IpNet),
}

/// A ban target that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    /// Not `client`, `user` or `address`.
    #[error("unknown ban kind {0:?}; use client, user or address")]
    Kind(String),
    /// Not an address or network.
    #[error(
        "{0:?} is not an IP address or network (write 10.0.0.1, 10.0.0.0/8, ::1 or 2001:db8::/32)"
    )]
    Address(String),
    /// An empty pattern would match nothing useful (or, as `*`-less text, nothing at all).
    #[error("an empty {0} pattern; write the name, or use `*` as a wildcard")]
    Empty(&'static str),
}

impl BanTarget {
    /// Reads a target as written in a ban file: `kind` is `client`, `user` or `address`.
    pub fn parse(kind: &str, value: &str) -> Result<BanTarget, BanError> {
        match kind {
            "client" | "user" if value.is_empty() => Err(BanError::Empty(if kind == "client" {
                "client"
            } else {
                "user"
            })),
            "client" => Ok(BanTarget::ClientId(value.to_string())),
            "user" => Ok(BanTarget::Username(value.to_string())),
            "address" => value
                .parse::<ipnet::IpNet>()
                .or_else(|_| value.parse::<core::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| BanTarget::Address(net.trunc()))
                .map_err(|_| BanError::Address(value.to_string())),
            other => Err(BanError::Kind(other.to_string())),
        }
    }

    fn matches(
        &self,
        client_id: &str,
        username: Option<&str>,
        peer: Option<core::net::IpAddr>,
    ) -> bool {
        match self {
            BanTarget::ClientId(p) => glob::matches(p, client_id),
            BanTarget::Username(p) => username.is_some_and(|u| glob::matches(p, u)),
            BanTarget::Address(net) => peer.is_some_and(|ip| net.contains(&ip)),
        }
    }
}

impl fmt::Display for BanTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::ClientId(p) => write!(f, "client {p:?}"),
            BanTarget::Username(p) => write!(f, "user {p:?}"),
            BanTarget::Address(net) => {
                let single = net.prefix_len() == net.max_prefix_len();
                if single {
                    write!(f, "address \"{}\"", net.addr())
                } else {
                    write!(f, "address \"{net}\"")
                }
            }
        }
    }
}

/// One ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// What it matches.
    pub target: BanTarget,
    /// When it ends; `None`: never.
    pub until: Option<Instant>,
    /// Why, for operators.
    pub reason: Option<String>,
}

impl Ban {
    fn active(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// The bans in force, one per target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bans {
    bans: Vec<Ban>,
}

impl Bans {
    /// Replaces every ban (a reloaded ban file).
    pub fn replace_all(&mut self, bans: Vec<Ban>) {
        self.bans.clear();
        for ban in bans {
            self.add(ban);
        }
    }

    /// Adds a ban, replacing one with the same target.
    pub fn add(&mut self, ban: Ban) {
        match self.bans.iter_mut().find(|b| b.target == ban.target) {
            Some(existing) => *existing = ban,
            None => self.bans.push(ban),
        }
    }

    /// Lifts the ban on `target`; whether there was one.
    pub fn remove(&mut self, target: &BanTarget) -> bool {
        let before = self.bans.len();
        self.bans.retain(|b| &b.target != target);
        self.bans.len() != before
    }

    /// Every ban, expired ones included until [`Bans::prune`].
    pub fn iter(&self) -> impl Iterator<Item = &Ban> {
        self.bans.iter()
    }

    /// How many bans there are.
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Forgets expired bans.
    pub fn prune(&mut self, now: Instant) {
        self.bans.retain(|b| b.active(now));
    }

    /// The first ban in force that matches a client (its identifier, its user name if it has one,
    /// and its peer address as the shell wrote it).
    pub fn find(
        &self,
        now: Instant,
        client_id: &str,
        username: Option<&str>,
        peer: &str,
    ) -> Option<&Ban> {
        if self.bans.is_empty() {
            return None;
        }
        let ip = super::peer_ip(peer);
        self.bans
            .iter()
            .find(|b| b.active(now) && b.target.matches(client_id, username, ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ban(kind: &str, value: &str, until: Option<Instant>) -> Ban {
        Ban {
            target: BanTarget::parse(kind, value).expect("target"),
            until,
            reason: None,
        }
    }

    #[test]
    fn each_kind_matches_what_it_names() {
        let mut bans = Bans::default();
        bans.replace_all(vec![
            ban("client", "bad-*", None),
            ban("user", "mallory", None),
            ban("address", "10.0.0.0/8", None),
            ban("address", "2001:db8::/32", None),
            ban("address", "192.0.2.7", None),
        ]);
        let t = Instant::ZERO;
        assert!(bans.find(t, "bad-1", None, "127.0.0.1:1").is_some());
        assert!(bans
            .find(t, "good", Some("mallory"), "127.0.0.1:1")
            .is_some());
        assert!(
            bans.find(t, "good", None, "127.0.0.1:1").is_none(),
            "no user, no user ban"
        );
        assert!(bans.find(t, "good", None, "10.1.2.3:5").is_some());
        assert!(bans.find(t, "good", None, "[2001:db8::1]:5").is_some());
        assert!(
            bans.find(t, "good", None, "[::ffff:10.0.0.1]:5").is_some(),
            "mapped v4"
        );
        assert!(
            bans.find(t, "good", None, "192.0.2.7").is_some(),
            "bare address"
        );
        assert!(bans.find(t, "good", None, "192.0.2.8:1").is_none());
        assert!(
            bans.find(t, "good", None, "sim:x").is_none(),
            "unparseable peer"
        );
    }

    #[test]
    fn expiry_prune_replace_and_remove() {
        let t0 = Instant::ZERO;
        let end = t0 + Duration::from_secs(10);
        let mut bans = Bans::default();
        bans.add(ban("client", "x", Some(end)));
        assert!(bans.find(t0, "x", None, "").is_some());
        assert!(bans.find(end, "x", None, "").is_none(), "over at its end");
        bans.add(ban("client", "x", None));
        assert_eq!(bans.len(), 1, "same target replaced");
        assert!(bans.find(end, "x", None, "").is_some());
        bans.add(ban("user", "u", Some(end)));
        bans.prune(end);
        assert_eq!(bans.len(), 1);
        assert!(bans.remove(&BanTarget::parse("client", "x").expect("target")));
        assert!(bans.is_empty());
    }

    #[test]
    fn targets_read_and_write_back() {
        for (kind, value, text) in [
            ("client", "a*", "client \"a*\""),
            ("user", "bob", "user \"bob\""),
            ("address", "10.1.2.3/8", "address \"10.0.0.0/8\""),
            ("address", "::1", "address \"::1\""),
        ] {
            assert_eq!(
                BanTarget::parse(kind, value).expect("target").to_string(),
                text
            );
        }
        assert!(matches!(
            BanTarget::parse("host", "x"),
            Err(BanError::Kind(_))
        ));
        assert!(matches!(
            BanTarget::parse("address", "10.0.0"),
            Err(BanError::Address(_))
        ));
        assert!(matches!(
            BanTarget::parse("client", ""),
            Err(BanError::Empty(_))
        ));
    }
}
