//! Several engines in one process, one per core: which engine owns a client identifier.
//!
//! Each engine owns the sessions of the client identifiers [`Shard::owner`] maps to it; the shell
//! reads a new connection's CONNECT (with [`crate::codec::peek_client_id`]) and hands the connection
//! to the owner, so one client identifier always meets the same engine and session takeover stays
//! local. Engines then exchange subscription interest and publishes as [`crate::PeerMessage`]s.

/// This engine's place among the engines of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This engine's number, below `count`.
    pub index: u16,
    /// How many engines there are (1: this engine is alone and exchanges nothing).
    pub count: u16,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether there are other engines to exchange peer messages with.
    pub fn is_sharded(self) -> bool {
        self.count > 1
    }

    /// The other engines' numbers.
    pub fn others(self) -> impl Iterator<Item = u16> {
        (0..self.count).filter(move |i| *i != self.index)
    }

    /// The engine that owns `client_id`. An identifier an engine assigned (`{assigned_prefix}s{n}-…`)
    /// belongs to the engine that made it; any other is spread by a fixed hash (FNV-1a), so the answer
    /// never changes between runs and needs no shared state.
    pub fn owner(self, client_id: &str, assigned_prefix: &str) -> u16 {
        if self.count <= 1 {
            return 0;
        }
        if let Some(n) = assigned_shard(client_id, assigned_prefix) {
            if n < self.count {
                return n;
            }
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in client_id.as_bytes() {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % u64::from(self.count)) as u16
    }

    /// The prefix of identifiers this engine assigns, under the configured `prefix`.
    pub(crate) fn assigned_prefix(self, prefix: &str) -> String {
        if self.is_sharded() {
            format!("{prefix}s{}-", self.index)
        } else {
            prefix.to_string()
        }
    }
}

/// `n` of an identifier of the form `{prefix}s{n}-…`.
fn assigned_shard(client_id: &str, prefix: &str) -> Option<u16> {
    let rest = client_id.strip_prefix(prefix)?.strip_prefix('s')?;
    let (digits, _) = rest.split_once('-')?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_spread_and_respect_assigned_ids() {
        let shards = Shard { index: 0, count: 4 };
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            let owner = shards.owner(&format!("client-{i}"), "cicada-");
            assert_eq!(owner, shards.owner(&format!("client-{i}"), "cicada-"));
            seen[usize::from(owner)] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
        assert_eq!(shards.owner("cicada-s3-00ff", "cicada-"), 3);
        assert_eq!(shards.owner("cicada-s2-", "cicada-"), 2);
        // Out of range or malformed: hashed like any other identifier.
        let hashed = shards.owner("cicada-s9-00ff", "cicada-");
        assert!(hashed < 4);
        assert_eq!(Shard::default().owner("anything", "cicada-"), 0);
        assert_eq!(
            Shard { index: 2, count: 4 }.assigned_prefix("cicada-"),
            "cicada-s2-"
        );
        assert_eq!(Shard::default().assigned_prefix("cicada-"), "cicada-");
    }
}
