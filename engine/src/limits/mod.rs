//! Pure limits, time injected: token buckets for rates, a per-address table of them for the
//! connect rate, and bans.

mod ban;
mod bucket;
pub(crate) mod glob;
mod rate_table;

pub use ban::{Ban, BanError, BanTarget, Bans, Quoted};
pub use bucket::TokenBucket;
pub use rate_table::RateTable;

/// The IP address in a shell's peer text (`1.2.3.4:5678`, `[::1]:5678`, or a bare address), with
/// IPv4-mapped IPv6 addresses turned back into IPv4 so one ban or bucket covers both spellings;
/// `None` for anything else. Parsing text with `core::net`'s types does no I/O.
pub(crate) fn peer_ip(peer: &str) -> Option<core::net::IpAddr> {
    let ip = peer
        .parse::<core::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer.parse::<core::net::IpAddr>())
        .ok()?;
    Some(match ip {
        core::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(core::net::IpAddr::V6(v6), core::net::IpAddr::V4),
        v4 => v4,
    })
}
