//! The ban file (`bans.file`): one ban per line, loaded at start and on SIGHUP.
//!
//! ```text
//! client "bad-client-*"
//! user "mallory" until 2026-12-31T00:00:00Z
//! address "203.0.113.0/24" until 2026-11-30T12:00:00Z reason "abuse"   # a comment
//! ```

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cicada_engine::limits::BanTarget;

/// One line of the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BanEntry {
    pub(crate) target: BanTarget,
    pub(crate) until: Option<SystemTime>,
    pub(crate) reason: Option<String>,
}

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BanFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Reads the file at `path`.
pub(crate) fn load(path: &Path) -> Result<Vec<BanEntry>, BanFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| BanFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(line, column, message)| BanFileError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message,
    })
}

/// A word or a quoted string: its column, whether it was quoted, its text.
type Token = (usize, bool, String);

/// A line's tokens; a `#` where a token starts begins a comment.
fn tokens(line: &str) -> Result<Vec<Token>, (usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            break;
        } else if c == '"' {
            let start = i + 1;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err((start, "unterminated string: add the closing \"".into())),
                    Some('"') => break,
                    Some('\\') => match chars.get(i + 1) {
                        Some(e @ ('"' | '\\')) => {
                            s.push(*e);
                            i += 2;
                        }
                        _ => return Err((i + 1, "unknown escape; only \\\" and \\\\".into())),
                    },
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push((start, true, s));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '"' {
                i += 1;
            }
            out.push((start + 1, false, chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

/// Parses the file's text; errors are (line, column, message).
pub(crate) fn parse(text: &str) -> Result<Vec<BanEntry>, (usize, usize, String)> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let toks = tokens(line).map_err(|(c, m)| (n, c, m))?;
        let Some((column, quoted, kind)) = toks.first() else {
            continue;
        };
        if *quoted || !matches!(kind.as_str(), "client" | "user" | "address") {
            return Err((
                n,
                *column,
                format!("expected client, user or address, found {kind:?}"),
            ));
        }
        let end = line.chars().count() + 1;
        let (column, value) = match toks.get(1) {
            Some((c, true, v)) => (*c, v),
            Some((c, false, v)) => {
                return Err((n, *c, format!("expected a quoted value, found {v:?}")))
            }
            None => {
                return Err((
                    n,
                    end,
                    "expected a quoted value, found the end of the line".into(),
                ))
            }
        };
        let target = BanTarget::parse(kind, value).map_err(|e| (n, column, e.to_string()))?;
        let mut entry = BanEntry {
            target,
            until: None,
            reason: None,
        };
        let mut rest = toks[2..].iter();
        while let Some((column, quoted, word)) = rest.next() {
            match (word.as_str(), quoted) {
                ("until", false) if entry.until.is_none() => {
                    let Some((c, _, when)) = rest.next() else {
                        return Err((n, end, "expected a time (RFC 3339, e.g. 2026-12-31T00:00:00Z) after `until`".into()));
                    };
                    let when = humantime::parse_rfc3339_weak(when).map_err(|e| {
                        (n, *c, format!("{when:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-31T00:00:00Z"))
                    })?;
                    entry.until = Some(when);
                }
                ("reason", false) if entry.reason.is_none() => match rest.next() {
                    Some((_, true, why)) => entry.reason = Some(why.clone()),
                    Some((c, false, w)) => return Err((n, *c, format!("expected a quoted reason, found {w:?}"))),
                    None => return Err((n, end, "expected a quoted reason after `reason`".into())),
                },
                _ => {
                    return Err((
                        n,
                        *column,
                        format!("expected `until TIME`, `reason \"...\"` or the end of the line, found {word:?}"),
                    ))
                }
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind_with_expiry_and_reason() {
        let text = "# bans\n\nclient \"bad-*\"\nuser \"mallory\" until 2026-12-31T00:00:00Z\n\
                    address \"203.0.113.0/24\" until 2026-11-30T12:00:00Z reason \"abuse \\\"x\\\"\"  # c\n";
        let entries = parse(text).expect("valid");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].target.to_string(), "client \"bad-*\"");
        assert!(entries[1].until.is_some());
        assert_eq!(entries[2].reason.as_deref(), Some("abuse \"x\""));
        assert_eq!(entries[2].target.to_string(), "address \"203.0.113.0/24\"");
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            ("host \"x\"", 1, 1, "expected client, user or address"),
            ("client x", 1, 8, "expected a quoted value"),
            ("client", 1, 7, "found the end of the line"),
            ("address \"10.0.0\"", 1, 9, "not an IP address"),
            ("\nuser \"u\" until tomorrow", 2, 16, "not an RFC 3339 time"),
            ("user \"u\" until", 1, 15, "expected a time"),
            ("user \"u\" forever", 1, 10, "expected `until TIME`"),
            ("user \"u", 1, 6, "unterminated string"),
            (
                "user \"u\" reason because",
                1,
                17,
                "expected a quoted reason",
            ),
        ];
        for (text, line, column, message) in cases {
            let (l, c, m) = parse(text).expect_err(text);
            assert_eq!((l, c), (line, column), "{text}: {m}");
            assert!(m.contains(message), "{text}: {m}");
        }
    }
}
