//! Topic names and topic filters (section 4.7), validated once when decoded or built.

use std::fmt;

use bytestring::ByteString;

use super::error::DecodeError;

/// The prefix of a shared subscription filter (`$share/{group}/{filter}`).
pub const SHARED_PREFIX: &str = "$share/";

/// A topic name a message is published to: no wildcards, no U+0000.
///
/// It is empty only in an MQTT 5.0 PUBLISH that names its topic through a Topic Alias alone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `name` as a topic name; fails on wildcards or emptiness.
    pub fn new(name: impl Into<ByteString>) -> Result<TopicName, DecodeError> {
        let name = name.into();
        if let Some(rule) = topic_name_rule_broken(&name) {
            return Err(DecodeError::InvalidTopicName {
                topic: name.to_string(),
                rule,
            });
        }
        Ok(TopicName(name))
    }

    /// The empty name of a PUBLISH that relies on a Topic Alias.
    pub(crate) fn alias_only() -> TopicName {
        TopicName(ByteString::new())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string (cheap to clone).
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }

    /// Whether the name starts with `$`, which leading wildcards never match ([MQTT-4.7.2-1]).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// Whether this is the empty name of an alias-only PUBLISH.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn topic_name_rule_broken(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must be at least one character long")
    } else if name.contains(['+', '#']) {
        Some("must not contain wildcard characters")
    } else if name.contains('\0') {
        Some("must not contain U+0000")
    } else if name.len() > usize::from(u16::MAX) {
        Some("must not be longer than 65535 bytes")
    } else {
        None
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic filter a client subscribes with: `+` and `#` only where section 4.7.1 allows them, and a well
/// formed `$share/{group}/` prefix when it names a shared subscription.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: impl Into<ByteString>) -> Result<TopicFilter, DecodeError> {
        let filter = filter.into();
        if let Some(rule) = topic_filter_rule_broken(&filter) {
            return Err(DecodeError::InvalidTopicFilter {
                filter: filter.to_string(),
                rule,
            });
        }
        Ok(TopicFilter(filter))
    }

    /// The filter as a string slice, including any `$share/{group}/` prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string (cheap to clone).
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }

    /// For a shared subscription, its group name and the filter matched against topics.
    pub fn shared(&self) -> Option<(&str, &str)> {
        split_shared(&self.0)
    }

    /// The part matched against topic names: the filter itself, or what follows a share prefix.
    pub fn matching_part(&self) -> &str {
        self.shared().map_or(&self.0, |(_, filter)| filter)
    }

    /// Whether the matched part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.matching_part().contains(['+', '#'])
    }

    /// Whether `topic` matches this filter (its matched part), by section 4.7: `+` is one level,
    /// `#` the rest (including the parent level), and a topic starting with `$` is not matched by
    /// a filter starting with a wildcard.
    pub fn matches(&self, topic: &str) -> bool {
        let filter = self.matching_part();
        if topic.starts_with('$') && filter.starts_with(['+', '#']) {
            return false;
        }
        let mut levels = topic.split('/');
        for want in filter.split('/') {
            match (want, levels.next()) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (want, Some(level)) if want == level => {}
                _ => return false,
            }
        }
        levels.next().is_none()
    }

    /// Whether some topic matches both filters (their matched parts): a bridge uses it to refuse
    /// mappings that would send its own messages back to it.
    pub fn intersects(&self, other: &TopicFilter) -> bool {
        let (a, b) = (self.matching_part(), other.matching_part());
        // A `$` topic is reachable through a filter only if it names the `$` level itself.
        let dollar = |f: &str| f.starts_with('$');
        let wild = |f: &str| f.starts_with(['+', '#']);
        if (dollar(a) && wild(b)) || (dollar(b) && wild(a)) {
            return false;
        }
        let (mut xs, mut ys) = (a.split('/'), b.split('/'));
        loop {
            match (xs.next(), ys.next()) {
                (Some("#"), _) | (_, Some("#")) => return true,
                (None, None) => return true,
                (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
                _ => return false,
            }
        }
    }
}

pub(crate) fn split_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(SHARED_PREFIX)?;
    let slash = rest.find('/');
    Some(match slash {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    })
}

fn topic_filter_rule_broken(filter: &str) -> Option<&'static str> {
    if filter.len() > usize::from(u16::MAX) {
        return Some("must not be longer than 65535 bytes");
    }
    let matched = match split_shared(filter) {
        Some((group, rest)) => {
            if group.is_empty() {
                return Some("a shared subscription needs a non-empty share name");
            }
            if group.contains(['+', '#']) {
                return Some("a share name must not contain wildcards");
            }
            if !filter[SHARED_PREFIX.len() + group.len()..].starts_with('/') {
                return Some("a share name must be followed by '/' and a topic filter");
            }
            rest
        }
        None => filter,
    };
    if matched.is_empty() {
        return Some("must be at least one character long");
    }
    let mut levels = matched.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Some("'#' must occupy a whole level and be the last character");
        }
        if level.contains('+') && level != "+" {
            return Some("'+' must occupy a whole level");
        }
    }
    None
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: &str) -> TopicFilter {
        TopicFilter::new(f.to_string()).expect("valid filter")
    }

    #[test]
    fn matches_follows_section_4_7() {
        for (f, topic, want) in [
            ("sport/tennis/#", "sport/tennis", true),
            ("sport/tennis/#", "sport/tennis/player1/ranking", true),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker", false),
            ("+/monitor", "$SYS/monitor", false),
            ("$SYS/#", "$SYS/broker", true),
            ("a/b", "a/b/c", false),
            ("$share/g/a/+", "a/b", true),
        ] {
            assert_eq!(filter(f).matches(topic), want, "{f} vs {topic}");
        }
    }

    #[test]
    fn intersects_when_one_topic_matches_both() {
        for (a, b, want) in [
            ("a/#", "a/b/c", true),
            ("a/+/c", "a/b/+", true),
            ("a/+", "a/b/c", false),
            ("a/b", "a/c", false),
            ("#", "$SYS/x", false),
            ("$SYS/#", "$SYS/+", true),
            ("site/#", "other/#", false),
            ("a", "a/#", true),
        ] {
            assert_eq!(filter(a).intersects(&filter(b)), want, "{a} and {b}");
            assert_eq!(filter(b).intersects(&filter(a)), want, "{b} and {a}");
        }
    }

    fn filter_ok(f: &str) -> bool {
        TopicFilter::new(f.to_string()).is_ok()
    }

    #[test]
    fn spec_4_7_1_filter_examples() {
        // Multi-level wildcard.
        for ok in [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "/#",
            "sport/tennis/#",
        ] {
            assert!(filter_ok(ok), "{ok}");
        }
        for bad in ["sport/tennis#", "sport/tennis/#/ranking", "#/", "a/b#"] {
            assert!(!filter_ok(bad), "{bad}");
        }
        // Single-level wildcard.
        for ok in [
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
            "a//b",
            "/",
            "//",
        ] {
            assert!(filter_ok(ok), "{ok}");
        }
        for bad in ["sport+", "sport/+x", "+a/b", ""] {
            assert!(!filter_ok(bad), "{bad}");
        }
    }

    #[test]
    fn shared_subscription_filters() {
        let f = TopicFilter::new("$share/group/a/+/c").expect("valid");
        assert_eq!(f.shared(), Some(("group", "a/+/c")));
        assert_eq!(f.matching_part(), "a/+/c");
        assert!(f.has_wildcards());
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share/#/a",
        ] {
            assert!(!filter_ok(bad), "{bad}");
        }
        // Not a share prefix: an ordinary `$` filter.
        assert_eq!(TopicFilter::new("$shared/a").expect("valid").shared(), None);
    }

    #[test]
    fn topic_names() {
        for ok in ["a", "/", "a//b", "$SYS/broker", " ", "sport/tennis player1"] {
            assert!(TopicName::new(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in ["", "a/+", "#", "a/b#"] {
            assert!(TopicName::new(bad.to_string()).is_err(), "{bad}");
        }
        assert!(TopicName::new("$SYS/x").expect("valid").is_system());
    }
}
