//! Subscription routing: which sessions a topic name reaches, and with what QoS and identifiers.

mod trie;

pub use trie::TopicTrie;
