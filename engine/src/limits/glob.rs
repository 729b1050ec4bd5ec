//! `*` globs for ban targets and ACL terms, matched in linear time.
//!
//! Patterns come from operators but the text they are matched against comes from clients (client
//! identifiers, user names), on every CONNECT and, through the ACL, on every PUBLISH. A
//! backtracking matcher would let a pattern such as `*a*a*a*b` cost time exponential (or, with the
//! usual single backtrack point, quadratic) in the client's text; this one never looks at a text
//! byte more than a constant number of times per pattern segment search.

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none included)
/// and everything else is literal.
///
/// With `*` the only wildcard, placing each literal segment between stars at its leftmost
/// occurrence is always as good as any other placement (it leaves the most text for the rest), so
/// one left-to-right pass of substring searches decides the match: time linear in
/// `pattern.len() + text.len()` (the standard library's substring search is linear).
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let mut segments = pattern.split('*');
    // `split` always yields at least one item; with no star, that item is the whole pattern.
    let first = segments.next().unwrap_or_default();
    let Some(last) = segments.next_back() else {
        return pattern == text;
    };
    // The first segment is anchored at the start and the last at the end; they must not overlap.
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    // Both cuts fall on character boundaries: they end a prefix and start a suffix of `text`.
    let mut rest = &text[first.len()..text.len() - last.len()];
    for segment in segments {
        match rest.find(segment) {
            Some(at) => rest = &rest[at + segment.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::matches;

    /// The definition, by dynamic programming over (pattern, text) positions: obviously right,
    /// quadratic, used only to check `matches` on every small case.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        // `row[j]`: whether the pattern so far matches `text[..j]`.
        let mut row = vec![false; text.len() + 1];
        row[0] = true;
        for &p in pattern {
            let mut next = vec![false; text.len() + 1];
            for j in 0..=text.len() {
                next[j] = if p == b'*' {
                    row[j] || (j > 0 && next[j - 1])
                } else {
                    j > 0 && row[j - 1] && text[j - 1] == p
                };
            }
            row = next;
        }
        row[text.len()]
    }

    /// Every string of length up to `max` over `alphabet`.
    fn strings(alphabet: &[u8], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..max {
            layer = layer
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |&c| {
                        let mut s = s.clone();
                        s.push(char::from(c));
                        s
                    })
                })
                .collect();
            all.extend(layer.iter().cloned());
        }
        all
    }

    #[test]
    fn stars_and_literals() {
        assert!(matches("bad-*", "bad-1"));
        assert!(matches("bad-*", "bad-"));
        assert!(!matches("bad-*", "bad"));
        assert!(matches("*", ""));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("*ly", "exactly"));
        assert!(
            !matches("ab*ba", "aba"),
            "prefix and suffix may not share a byte"
        );
        assert!(matches("ab*ba", "abba"));
        assert!(matches("**", "anything"));
    }

    #[test]
    fn multibyte_text_and_patterns() {
        assert!(matches("ü*ß", "übermaß"));
        assert!(matches("*€*", "price: 5€ each"));
        assert!(!matches("*€", "€uro"));
        assert!(matches("日本*", "日本語"));
    }

    #[test]
    fn agrees_with_the_definition_on_every_small_case() {
        let patterns = strings(b"ab*", 5);
        let texts = strings(b"ab", 6);
        for p in &patterns {
            for t in &texts {
                assert_eq!(
                    matches(p, t),
                    reference(p.as_bytes(), t.as_bytes()),
                    "pattern {p:?}, text {t:?}"
                );
            }
        }
    }

    #[test]
    fn pathological_patterns_finish() {
        // Exponential for a naive backtracking matcher, quadratic for the single-backtrack one.
        let text = "a".repeat(200_000);
        assert!(!matches("*a*a*a*a*b", &text));
        assert!(!matches("*a*a*a*a*a*a*b", &text));
        assert!(matches("*a*a*a*a*a*a*", &text));
        let long = format!("*{}b", "a".repeat(1000));
        assert!(!matches(&long, &text));
        let text_b = format!("{text}b");
        assert!(matches(&long, &text_b));
    }
}
