//! A trie of topic filters, level by level, for matching topic names against many subscriptions.
//!
//! Each node stands for one filter level. Subscribers sit at the node where their filter ends (`exact`) or,
//! for a filter ending in `#`, in the `multi` set of the node before it. Matching walks the topic's levels
//! following the literal child and the `+` child, collecting `multi` sets on the way: the cost depends on the
//! topic's depth and the number of wildcard branches, not on how many subscriptions exist.

use std::collections::BTreeMap;

use crate::map::FixedMap;

#[derive(Debug)]
struct Node<K, V> {
    /// Children for literal levels.
    children: FixedMap<Box<str>, Node<K, V>>,
    /// The child for a `+` level.
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers whose filter ends at this node.
    exact: BTreeMap<K, V>,
    /// Subscribers whose filter is this node's path followed by `#`.
    multi: BTreeMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: FixedMap::default(),
            plus: None,
            exact: BTreeMap::new(),
            multi: BTreeMap::new(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }
}

/// A set of `(filter, subscriber) → value` entries, matchable against topic names.
///
/// Filters must be valid topic filters (see [`crate::codec::TopicFilter`]) without any `$share/` prefix.
/// Subscribers are visited in a deterministic order: by trie path, then by key.
#[derive(Debug)]
pub struct TopicTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K, V> Default for TopicTrie<K, V> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, V> TopicTrie<K, V> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces the entry of `key` for `filter`; returns the value it replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let mut multi = false;
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                multi = true;
                break;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(Box::from(level)).or_default()
            };
        }
        let set = if multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let old = set.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry of `key` for `filter`; returns its value if there was one.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let old = remove_at(&mut self.root, &levels, key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Calls `visit` for every entry whose filter matches `topic`.
    ///
    /// Topics starting with `$` are not matched by filters starting with `+` or `#` ([MQTT-4.7.2-1]).
    pub fn for_each_match(&self, topic: &str, mut visit: impl FnMut(&K, &V)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let system = topic.starts_with('$');
        let mut stack: Vec<(&Node<K, V>, usize)> = vec![(&self.root, 0)];
        while let Some((node, depth)) = stack.pop() {
            let at_root = depth == 0;
            if !(at_root && system) {
                node.multi.iter().for_each(|(k, v)| visit(k, v));
            }
            let Some(level) = levels.get(depth) else {
                node.exact.iter().for_each(|(k, v)| visit(k, v));
                continue;
            };
            // Pushed in reverse of the order we want them visited: literal first, then `+`.
            if let Some(plus) = &node.plus {
                if !(at_root && system) {
                    stack.push((plus, depth + 1));
                }
            }
            if let Some(child) = node.children.get(*level) {
                stack.push((child, depth + 1));
            }
        }
    }
}

fn remove_at<K: Ord, V>(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
    match levels {
        [] => node.exact.remove(key),
        ["#"] => node.multi.remove(key),
        [level, rest @ ..] => {
            let removed;
            if *level == "+" {
                let child = node.plus.as_mut()?;
                removed = remove_at(child, rest, key);
                if child.is_empty() {
                    node.plus = None;
                }
            } else {
                let child = node.children.get_mut(*level)?;
                removed = remove_at(child, rest, key);
                if child.is_empty() {
                    node.children.remove(*level);
                }
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(trie: &TopicTrie<u32, ()>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |k, _| out.push(*k));
        out.sort_unstable();
        out
    }

    fn trie(filters: &[&str]) -> TopicTrie<u32, ()> {
        let mut t = TopicTrie::default();
        for (i, f) in filters.iter().enumerate() {
            t.insert(f, i as u32, ());
        }
        t
    }

    #[test]
    fn spec_4_7_1_2_multi_level_wildcard_examples() {
        let t = trie(&["sport/tennis/player1/#"]);
        assert_eq!(matches(&t, "sport/tennis/player1"), [0]);
        assert_eq!(matches(&t, "sport/tennis/player1/ranking"), [0]);
        assert_eq!(matches(&t, "sport/tennis/player1/score/wimbledon"), [0]);
        assert!(matches(&t, "sport/tennis/player2").is_empty());
        let t = trie(&["sport/#"]);
        assert_eq!(matches(&t, "sport"), [0]);
        assert_eq!(matches(&t, "sport/"), [0]);
    }

    #[test]
    fn spec_4_7_1_3_single_level_wildcard_examples() {
        let t = trie(&["sport/tennis/+"]);
        assert_eq!(matches(&t, "sport/tennis/player1"), [0]);
        assert_eq!(matches(&t, "sport/tennis/player2"), [0]);
        assert!(matches(&t, "sport/tennis/player1/ranking").is_empty());
        let t = trie(&["sport/+"]);
        assert!(matches(&t, "sport").is_empty());
        assert_eq!(matches(&t, "sport/"), [0]);
        let t = trie(&["+/+", "/+", "+"]);
        assert_eq!(matches(&t, "/finance"), [0, 1]);
        assert_eq!(matches(&t, "finance"), [2]);
    }

    #[test]
    fn spec_4_7_2_dollar_topics_are_not_matched_by_leading_wildcards() {
        let t = trie(&["#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+"]);
        assert_eq!(matches(&t, "$SYS/monitor/Clients"), [2, 3]);
        assert_eq!(matches(&t, "SYS/monitor/Clients"), [0, 1]);
    }

    #[test]
    fn empty_levels_are_levels() {
        let t = trie(&["a//b", "a/+/b", "/", "+/+"]);
        assert_eq!(matches(&t, "a//b"), [0, 1]);
        assert_eq!(matches(&t, "/"), [2, 3]);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t: TopicTrie<u32, u8> = TopicTrie::default();
        assert_eq!(t.insert("a/+/c", 1, 10), None);
        assert_eq!(t.insert("a/+/c", 1, 11), Some(10));
        assert_eq!(t.insert("a/#", 2, 20), None);
        assert_eq!(t.len(), 2);
        let mut seen = Vec::new();
        t.for_each_match("a/b/c", |k, v| seen.push((*k, *v)));
        seen.sort_unstable();
        assert_eq!(seen, [(1, 11), (2, 20)]);
        assert_eq!(t.remove("a/+/c", &1), Some(11));
        assert_eq!(t.remove("a/+/c", &1), None);
        assert_eq!(t.remove("a/#", &2), Some(20));
        assert_eq!(t.len(), 0);
        assert!(t.root.is_empty(), "empty nodes are pruned");
    }
}
