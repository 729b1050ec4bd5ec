//! `*` globs for ban targets, matched in linear time.

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none included)
/// and everything else is literal. Greedy with one backtrack point: linear in practice, never
/// exponential, whatever the pattern.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently made to cover up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last star cover one more character and retry after it.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_literals() {
        assert!(matches("bad-*", "bad-1"));
        assert!(matches("bad-*", "bad-"));
        assert!(!matches("bad-*", "bad"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("*ly", "exactly"));
    }

    #[test]
    fn pathological_patterns_finish() {
        // A backtracking matcher would not finish this in the lifetime of the test run.
        let text = "a".repeat(20_000);
        assert!(!matches("*a*a*a*a*a*a*b", &text));
        assert!(matches("*a*a*a*a*a*a*", &text));
    }
}
