//! Retained messages, one per topic, in a trie of topic levels so a subscription's filter finds its
//! matches without scanning every retained topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::message::Message;

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }
}

/// The retained message of every topic that has one.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    root: Node,
    len: usize,
}

impl RetainedStore {
    /// How many topics have a retained message.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets the retained message of its topic, replacing any previous one.
    pub(crate) fn insert(&mut self, message: Arc<Message>) {
        let mut node = &mut self.root;
        for level in message.topic.as_str().split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        if node.message.replace(message).is_none() {
            self.len += 1;
        }
    }

    /// Clears the retained message of `topic`; returns whether there was one.
    pub(crate) fn remove(&mut self, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = remove_at(&mut self.root, &levels);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` for every retained message whose topic matches `filter`, in topic order.
    ///
    /// Leading wildcards do not match `$` topics ([MQTT-4.7.2-1]).
    pub(crate) fn for_each_match(&self, filter: &str, mut visit: impl FnMut(&Arc<Message>)) {
        let levels: Vec<&str> = filter.split('/').collect();
        walk(&self.root, &levels, true, &mut visit);
    }
}

fn remove_at(node: &mut Node, levels: &[&str]) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return node.message.take().is_some();
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn walk(node: &Node, levels: &[&str], at_root: bool, visit: &mut impl FnMut(&Arc<Message>)) {
    let Some((first, rest)) = levels.split_first() else {
        if let Some(m) = &node.message {
            visit(m);
        }
        return;
    };
    let visible = |name: &str| !(at_root && name.starts_with('$'));
    match *first {
        "#" => {
            // "a/#" matches "a" itself as well as everything below it.
            if !at_root {
                if let Some(m) = &node.message {
                    visit(m);
                }
            }
            for (name, child) in &node.children {
                if visible(name) {
                    walk_all(child, visit);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if visible(name) {
                    walk(child, rest, false, visit);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                walk(child, rest, false, visit);
            }
        }
    }
}

fn walk_all(node: &Node, visit: &mut impl FnMut(&Arc<Message>)) {
    if let Some(m) = &node.message {
        visit(m);
    }
    for child in node.children.values() {
        walk_all(child, visit);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{QoS, TopicName};

    fn msg(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(topic).expect("valid"),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            origin: None,
            expires_at: None,
        })
    }

    fn matches(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.for_each_match(filter, |m| out.push(m.topic.as_str().to_string()));
        out
    }

    #[test]
    fn filters_find_their_topics_and_dollar_topics_stay_hidden() {
        let mut store = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "a/c", "b", "$SYS/x", "/lead"] {
            store.insert(msg(t));
        }
        assert_eq!(store.len(), 7);
        assert_eq!(matches(&store, "a/#"), ["a", "a/b", "a/b/c", "a/c"]);
        assert_eq!(matches(&store, "a/+"), ["a/b", "a/c"]);
        assert_eq!(matches(&store, "+"), ["a", "b"]);
        assert_eq!(
            matches(&store, "#"),
            ["/lead", "a", "a/b", "a/b/c", "a/c", "b"]
        );
        assert_eq!(matches(&store, "$SYS/#"), ["$SYS/x"]);
        assert_eq!(matches(&store, "+/lead"), ["/lead"]);
    }

    #[test]
    fn replace_and_remove_prune() {
        let mut store = RetainedStore::default();
        store.insert(msg("a/b"));
        store.insert(msg("a/b"));
        assert_eq!(store.len(), 1);
        assert!(store.remove("a/b"));
        assert!(!store.remove("a/b"));
        assert_eq!(store.len(), 0);
        assert!(store.root.is_empty());
    }
}
