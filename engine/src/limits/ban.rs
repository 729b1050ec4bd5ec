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
    /// A control character (a tab, a line break): no client should send one in an identifier
    /// or user name, and refusing them keeps every target writable back on one line of a ban
    /// file.
    #[error("the {kind} pattern {value:?} holds a control character")]
    Control {
        /// `client` or `user`.
        kind: &'static str,
        /// The pattern as given.
        value: String,
    },
}

impl BanTarget {
    /// Reads a target as written in a ban file: `kind` is `client` or `user` with a `*` glob, or
    /// `address` with an address or network (`10.0.0.1`, `10.0.0.0/8`, `::1`, `2001:db8::/32`).
    ///
    /// Networks are truncated to their prefix (`10.1.2.3/8` is `10.0.0.0/8`), and IPv4-mapped
    /// IPv6 networks (`::ffff:10.0.0.0/104`) become the IPv4 network they denote, because peers
    /// are compared in IPv4 form and a mapped ban would otherwise never match.
    pub fn parse(kind: &str, value: &str) -> Result<BanTarget, BanError> {
        let glob_kind = match kind {
            "client" => "client",
            "user" => "user",
            "address" => return parse_address(value),
            other => return Err(BanError::Kind(other.to_string())),
        };
        if value.is_empty() {
            return Err(BanError::Empty(glob_kind));
        }
        if value.chars().any(char::is_control) {
            return Err(BanError::Control {
                kind: glob_kind,
                value: value.to_string(),
            });
        }
        Ok(if glob_kind == "client" {
            BanTarget::ClientId(value.to_string())
        } else {
            BanTarget::Username(value.to_string())
        })
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

/// An address or network, single addresses as /32 or /128, mapped IPv6 folded into IPv4.
fn parse_address(value: &str) -> Result<BanTarget, BanError> {
    let net = value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<core::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| BanError::Address(value.to_string()))?
        .trunc();
    let net = match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(ipnet::IpNet::V4)
                .map_err(|_| BanError::Address(value.to_string()))?,
            None => net,
        },
        other => other,
    };
    Ok(BanTarget::Address(net))
}

/// Text as a ban-file string: in double quotes, with `"` and `\` escaped (the only escapes the
/// file knows; control characters are refused by [`BanTarget::parse`]). The shell's ban file
/// writes its reasons with it too.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

impl fmt::Display for BanTarget {
    /// The ban-file syntax, which [`BanTarget::parse`] reads back: `client "bad-*"`,
    /// `user "mallory"`, `address "10.0.0.0/8"`, and a single address without its prefix length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::ClientId(p) => {
                f.write_str("client ")?;
                write!(f, "{}", Quoted(p))
            }
            BanTarget::Username(p) => {
                f.write_str("user ")?;
                write!(f, "{}", Quoted(p))
            }
            BanTarget::Address(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "address \"{}\"", net.addr())
            }
            BanTarget::Address(net) => write!(f, "address \"{net}\""),
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
            Err(BanError::Empty("client"))
        ));
        assert!(matches!(
            BanTarget::parse("user", ""),
            Err(BanError::Empty("user"))
        ));
        assert!(matches!(
            BanTarget::parse("user", "a\tb"),
            Err(BanError::Control { kind: "user", .. })
        ));
        assert!(matches!(
            BanTarget::parse("address", "10.0.0.0/33"),
            Err(BanError::Address(_))
        ));
        assert!(matches!(
            BanTarget::parse("address", "10.0.0.1:80"),
            Err(BanError::Address(_))
        ));
    }

    #[test]
    fn display_escapes_quotes_and_backslashes_only() {
        let t = BanTarget::parse("client", r#"a"b\c*é"#).expect("target");
        assert_eq!(t.to_string(), r#"client "a\"b\\c*é""#);
    }

    #[test]
    fn mapped_ipv6_bans_become_ipv4_bans() {
        let t = BanTarget::parse("address", "::ffff:10.1.0.0/112").expect("target");
        assert_eq!(t.to_string(), "address \"10.1.0.0/16\"");
        let single = BanTarget::parse("address", "::ffff:192.0.2.1").expect("target");
        assert_eq!(single.to_string(), "address \"192.0.2.1\"");
        // Not mapped: left alone.
        let v6 = BanTarget::parse("address", "::/0").expect("target");
        assert_eq!(v6.to_string(), "address \"::/0\"");
        let mut bans = Bans::default();
        bans.add(Ban {
            target: t,
            until: None,
            reason: None,
        });
        let t0 = Instant::ZERO;
        assert!(bans.find(t0, "c", None, "10.1.2.3:1").is_some());
        assert!(bans.find(t0, "c", None, "[::ffff:10.1.2.3]:1").is_some());
        assert!(bans.find(t0, "c", None, "10.2.0.1:1").is_none());
    }

    #[test]
    fn cidr_boundaries_v4_and_v6() {
        let mut bans = Bans::default();
        bans.replace_all(vec![
            ban("address", "203.0.113.0/24", None),
            ban("address", "2001:db8:1::/48", None),
        ]);
        let t = Instant::ZERO;
        let hit = |peer: &str| bans.find(t, "c", None, peer).is_some();
        assert!(hit("203.0.113.0:1") && hit("203.0.113.255:1"));
        assert!(!hit("203.0.112.255:1") && !hit("203.0.114.0:1"));
        assert!(hit("[2001:db8:1::]:1") && hit("[2001:db8:1:ffff:ffff:ffff:ffff:ffff]:1"));
        assert!(!hit("[2001:db8:2::]:1") && !hit("[2001:db8::1]:1"));
        assert!(hit("2001:db8:1::5"), "bare v6");
        assert!(!hit("[::1]:1") && !hit("localhost:1883") && !hit(""));
    }

    #[test]
    fn user_and_client_globs() {
        let mut bans = Bans::default();
        bans.replace_all(vec![
            ban("client", "*-test-*", None),
            ban("user", "svc-*", None),
        ]);
        let t = Instant::ZERO;
        assert!(bans.find(t, "a-test-b", None, "").is_some());
        assert!(bans.find(t, "a-test", None, "").is_none());
        assert!(bans.find(t, "x", Some("svc-backup"), "").is_some());
        assert!(
            bans.find(t, "svc-backup", None, "").is_none(),
            "a user glob is not a client glob"
        );
        // A hostile client identifier against a hostile pattern stays fast.
        bans.add(ban("client", "*a*a*a*a*b", None));
        assert!(bans.find(t, &"a".repeat(65_535), None, "").is_none());
    }

    #[test]
    fn expired_bans_never_match_and_the_first_in_force_wins() {
        let t0 = Instant::ZERO;
        let end = t0 + Duration::from_secs(10);
        let mut bans = Bans::default();
        bans.replace_all(vec![
            Ban {
                reason: Some("old".into()),
                ..ban("user", "m*", Some(end))
            },
            Ban {
                reason: Some("forever".into()),
                ..ban("client", "m*", None)
            },
        ]);
        let reason = |now| {
            bans.find(now, "mc", Some("mu"), "")
                .and_then(|b| b.reason.as_deref())
        };
        assert_eq!(reason(t0), Some("old"));
        assert_eq!(reason(end), Some("forever"));
        assert_eq!(
            bans.iter().count(),
            2,
            "expired bans stay listed until pruned"
        );
        bans.prune(t0 + Duration::from_micros(9_999_999));
        assert_eq!(
            bans.len(),
            2,
            "still in force one microsecond before its end"
        );
        bans.prune(end);
        assert_eq!(bans.len(), 1);
        assert!(!bans.remove(&BanTarget::parse("user", "m*").expect("target")));
    }

    #[test]
    fn replace_all_keeps_one_ban_per_target_the_last_given() {
        let mut bans = Bans::default();
        bans.add(ban("client", "old", None));
        bans.replace_all(vec![
            ban("address", "10.0.0.1", None),
            Ban {
                reason: Some("second".into()),
                ..ban("address", "10.0.0.1/32", None)
            },
        ]);
        assert_eq!(bans.len(), 1);
        assert_eq!(
            bans.iter().next().and_then(|b| b.reason.as_deref()),
            Some("second")
        );
        assert!(
            bans.find(Instant::ZERO, "old", None, "").is_none(),
            "replaced, not merged"
        );
    }
}
