//! A token bucket per source address: the connect rate per address.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use crate::time::Instant;

use super::TokenBucket;

/// Buckets keyed by IP address (port ignored; a peer text that is no address is its own key),
/// holding at most `capacity` addresses. When full, buckets that have refilled completely go
/// first (they remember nothing), then the one idle longest. Evicting only ever makes the limit
/// more lenient for the evicted address, never stricter for anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateTable {
    rate: NonZeroU64,
    burst: NonZeroU64,
    capacity: usize,
    /// Key → (bucket, last use).
    buckets: BTreeMap<String, (TokenBucket, Instant)>,
}

impl RateTable {
    /// An empty table.
    pub fn new(rate_per_sec: NonZeroU64, burst: NonZeroU64, capacity: usize) -> RateTable {
        RateTable {
            rate: rate_per_sec,
            burst,
            capacity: capacity.max(1),
            buckets: BTreeMap::new(),
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

    /// Takes one token for `peer`'s address; `false` if it has none left.
    pub fn try_take(&mut self, now: Instant, peer: &str) -> bool {
        let key = super::peer_ip(peer).map_or_else(|| peer.to_string(), |ip| ip.to_string());
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.capacity {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (bucket, last) = self
            .buckets
            .entry(key)
            .or_insert_with(|| (TokenBucket::new(rate, burst, now), now));
        *last = now.max(*last);
        bucket.try_take(now, 1)
    }

    fn make_room(&mut self, now: Instant) {
        let burst = self.burst.get();
        self.buckets
            .retain(|_, (bucket, _)| bucket.ready_at(now, burst) > now);
        if self.buckets.len() >= self.capacity {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.buckets.remove(&k);
            }
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
        assert!(t.try_take(now, "10.0.0.2:1000"));
        assert!(t.try_take(now + Duration::from_secs(1), "10.0.0.1:9"));
    }

    #[test]
    fn capacity_is_kept_refilled_first_then_idle_longest() {
        let mut t = RateTable::new(nz(1), nz(1), 2);
        let t0 = Instant::ZERO;
        assert!(t.try_take(t0, "10.0.0.1:1"));
        assert!(t.try_take(t0 + Duration::from_millis(500), "10.0.0.2:1"));
        // At 1.2 s, .1 has refilled (forgotten first), .2 has not.
        assert!(t.try_take(t0 + Duration::from_millis(1200), "10.0.0.3:1"));
        assert_eq!(t.len(), 2);
        assert!(
            !t.try_take(t0 + Duration::from_millis(1200), "10.0.0.2:1"),
            ".2 kept"
        );
        // Nothing refilled: the one idle longest goes.
        assert!(t.try_take(t0 + Duration::from_millis(1300), "10.0.0.4:1"));
        assert_eq!(t.len(), 2);
    }
}
