//! Hash maps whose iteration order is the same in every run.
//!
//! std's `HashMap` seeds its hasher from the OS, so iterating it (and anything derived from that order,
//! such as which subscriber is served first) would differ between runs. These use a fixed FxHash.

use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

/// A hash map with a fixed hasher.
pub(crate) type FixedMap<K, V> = hashbrown::HashMap<K, V, BuildHasherDefault<FxHasher>>;
