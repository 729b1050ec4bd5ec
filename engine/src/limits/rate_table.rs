//! A token bucket per source address: the connect rate per address.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use crate::time::Instant;

use super::TokenBucket;

/// Buckets keyed by IP address (port ignored; a peer text that is no address is its own key),
/// holding at most `capacity` addresses (at least one).
///
/// When a new address arrives at a full table, every bucket that has refilled completely goes
/// first (a full bucket is what a new address gets anyway, so forgetting it changes nothing),
/// then, if still full, the one idle longest (ties: the smallest key, for determinism). Evicting
/// only ever makes the limit more lenient for the evicted address (it comes back with a full
/// bucket), never stricter for anyone.
///
/// Every operation is logarithmic in the table size: the table is consulted on every CONNECT,
/// and a flood from many addresses (the case it exists for) must not turn eviction into a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateTable {
    rate: NonZeroU64,
    burst: NonZeroU64,
    capacity: usize,
    buckets: BTreeMap<Key, Entry>,
    /// `(full_at, key)` for every bucket: the ones at or before now can be forgotten.
    by_full: BTreeSet<(Instant, Key)>,
    /// `(last_used, key)` for every bucket: the first is the one idle longest.
    by_use: BTreeSet<(Instant, Key)>,
}

/// What a bucket is kept under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// The peer's IP address, IPv4-mapped IPv6 folded into IPv4.
    Ip(core::net::IpAddr),
    /// A peer text that is no address (a test harness name, a Unix socket): its own key.
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    bucket: TokenBucket,
    last_used: Instant,
    /// When the bucket will be full again, if left alone.
    full_at: Instant,
}

impl RateTable {
    /// An empty table; a `capacity` of 0 is taken as 1.
    pub fn new(rate_per_sec: NonZeroU64, burst: NonZeroU64, capacity: usize) -> RateTable {
        RateTable {
            rate: rate_per_sec,
            burst,
            capacity: capacity.max(1),
            buckets: BTreeMap::new(),
            by_full: BTreeSet::new(),
            by_use: BTreeSet::new(),
        }
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes one token for `peer`'s address (`1.2.3.4:5678`, `[::1]:5678` or a bare address);
    /// `false` if it has none left.
    pub fn try_take(&mut self, now: Instant, peer: &str) -> bool {
        let key = super::peer_ip(peer).map_or_else(|| Key::Text(peer.to_string()), Key::Ip);
        let mut entry = match self.buckets.remove(&key) {
            Some(entry) => {
                self.by_full.remove(&(entry.full_at, key.clone()));
                self.by_use.remove(&(entry.last_used, key.clone()));
                entry
            }
            None => {
                if self.buckets.len() >= self.capacity {
                    self.make_room(now);
                }
                Entry {
                    bucket: TokenBucket::new(self.rate, self.burst, now),
                    last_used: now,
                    full_at: now,
                }
            }
        };
        let taken = entry.bucket.try_take(now, 1);
        entry.last_used = entry.last_used.max(now);
        entry.full_at = entry.bucket.ready_at(now, self.burst.get());
        self.by_full.insert((entry.full_at, key.clone()));
        self.by_use.insert((entry.last_used, key.clone()));
        self.buckets.insert(key, entry);
        taken
    }

    /// Frees at least one place: every refilled bucket, else the one idle longest.
    fn make_room(&mut self, now: Instant) {
        while let Some((full_at, key)) = self.by_full.first().cloned() {
            if full_at > now {
                break;
            }
            self.forget(&key);
        }
        if self.buckets.len() >= self.capacity {
            if let Some((_, key)) = self.by_use.first().cloned() {
                self.forget(&key);
            }
        }
    }

    fn forget(&mut self, key: &Key) {
        if let Some(entry) = self.buckets.remove(key) {
            self.by_full.remove(&(entry.full_at, key.clone()));
            self.by_use.remove(&(entry.last_used, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).expect("non-zero")
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    impl RateTable {
        /// The indexes list exactly the buckets, with their current times.
        fn assert_consistent(&self) {
            assert!(self.buckets.len() <= self.capacity);
            assert_eq!(self.by_full.len(), self.buckets.len());
            assert_eq!(self.by_use.len(), self.buckets.len());
            for (key, e) in &self.buckets {
                assert!(self.by_full.contains(&(e.full_at, key.clone())));
                assert!(self.by_use.contains(&(e.last_used, key.clone())));
            }
        }

        fn remembers(&self, peer: &str) -> bool {
            let key = super::super::peer_ip(peer).map_or_else(|| Key::Text(peer.into()), Key::Ip);
            self.buckets.contains_key(&key)
        }
    }

    #[test]
    fn each_address_has_its_own_bucket_and_ports_do_not_matter() {
        let mut t = RateTable::new(nz(1), nz(2), 10);
        let now = Instant::ZERO;
        assert!(t.try_take(now, "10.0.0.1:1000"));
        assert!(t.try_take(now, "10.0.0.1:1001"));
        assert!(!t.try_take(now, "10.0.0.1:1002"));
        assert!(
            !t.try_take(now, "[::ffff:10.0.0.1]:1"),
            "mapped v4 is the same address"
        );
        assert!(!t.try_take(now, "10.0.0.1"), "a bare address too");
        assert!(t.try_take(now, "10.0.0.2:1000"));
        assert!(t.try_take(now, "[2001:db8::1]:1"));
        assert!(t.try_take(now + Duration::from_secs(1), "10.0.0.1:9"));
        assert_eq!(t.len(), 3);
        t.assert_consistent();
    }

    #[test]
    fn a_peer_that_is_no_address_is_keyed_by_its_text() {
        let mut t = RateTable::new(nz(1), nz(1), 10);
        assert!(t.try_take(ms(0), "sim:c1"));
        assert!(!t.try_take(ms(0), "sim:c1"));
        assert!(t.try_take(ms(0), "sim:c2"));
        t.assert_consistent();
    }

    #[test]
    fn capacity_is_kept_refilled_first_then_idle_longest() {
        let mut t = RateTable::new(nz(1), nz(1), 2);
        assert!(t.try_take(ms(0), "10.0.0.1:1"));
        assert!(t.try_take(ms(500), "10.0.0.2:1"));
        // At 1.2 s, .1 has refilled (forgotten first), .2 has not.
        assert!(t.try_take(ms(1200), "10.0.0.3:1"));
        assert_eq!(t.len(), 2);
        assert!(!t.remembers("10.0.0.1"));
        assert!(!t.try_take(ms(1200), "10.0.0.2:1"), ".2 kept");
        // Nothing refilled (.2 used at 1.2 s, .3 taken at 1.2 s): the one idle longest goes.
        // .2 and .3 were both last used at 1.2 s; the tie goes to the smaller address.
        assert!(t.try_take(ms(1300), "10.0.0.4:1"));
        assert_eq!(t.len(), 2);
        assert!(!t.remembers("10.0.0.2"));
        assert!(t.remembers("10.0.0.3"));
        t.assert_consistent();
    }

    #[test]
    fn idle_longest_is_by_last_use_not_by_insertion() {
        let mut t = RateTable::new(nz(1), nz(10), 3);
        for (at, peer) in [(0, "10.0.0.1"), (1, "10.0.0.2"), (2, "10.0.0.3")] {
            assert!(t.try_take(ms(at), peer));
        }
        // .1 is used again, so .2 is now the one idle longest.
        assert!(t.try_take(ms(3), "10.0.0.1"));
        assert!(t.try_take(ms(4), "10.0.0.4"));
        assert!(!t.remembers("10.0.0.2"));
        assert!(t.remembers("10.0.0.1") && t.remembers("10.0.0.3"));
        t.assert_consistent();
    }

    #[test]
    fn every_refilled_bucket_is_dropped_at_once() {
        let mut t = RateTable::new(nz(1), nz(1), 4);
        for i in 0..4 {
            assert!(t.try_take(ms(i), &format!("10.0.0.{i}")));
        }
        // At 1.002 s buckets 0, 1 and 2 are full again; 3 is not.
        assert!(t.try_take(ms(1002), "10.0.1.1"));
        assert_eq!(t.len(), 2);
        assert!(t.remembers("10.0.0.3"));
        t.assert_consistent();
    }

    #[test]
    fn eviction_only_makes_the_limit_more_lenient() {
        let mut t = RateTable::new(nz(1), nz(1), 1);
        assert!(t.try_take(ms(0), "10.0.0.1"));
        assert!(!t.try_take(ms(0), "10.0.0.1"));
        assert!(
            t.try_take(ms(0), "10.0.0.2"),
            "the only place is taken over"
        );
        assert!(
            t.try_take(ms(0), "10.0.0.1"),
            "forgotten: a full bucket again"
        );
        t.assert_consistent();
    }

    #[test]
    fn capacity_holds_under_a_flood_and_time_going_back() {
        let mut t = RateTable::new(nz(5), nz(3), 100);
        for i in 0..5_000u64 {
            // Time mostly advances but sometimes steps back.
            let now = ms((i * 7) % 3_001);
            let peer = format!("[2001:db8::{:x}]:1", i % 257);
            t.try_take(now, &peer);
            assert!(t.len() <= 100);
        }
        t.assert_consistent();
        assert_eq!(RateTable::new(nz(1), nz(1), 0).capacity, 1);
    }
}
