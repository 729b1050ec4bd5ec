//! The ban file (`bans.file`): one ban per line, loaded at start and on SIGHUP.
//!
//! ```text
//! # Comments start with `#` (outside quotes) and run to the end of the line.
//! client "bad-client-*"
//! user "mallory" until 2026-12-31T00:00:00Z
//! address "203.0.113.0/24" until 2026-11-30T12:00:00Z reason "abuse"   # a comment
//! ```
//!
//! A line is a kind (`client`, `user` or `address`), a quoted value (a `*` glob, or an address or
//! network), then optionally `until TIME` (RFC 3339 in UTC, ending in `Z`) and `reason "TEXT"`, in
//! either order. Quoted strings know two escapes, `\"` and `\\`. The engine gives the target its
//! meaning ([`BanTarget::parse`]); this module only reads and writes the lines.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cicada_engine::limits::BanTarget;

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    pub target: BanTarget,
    /// Wall-clock end of the ban; the shell turns it into an engine instant.
    pub until: Option<SystemTime>,
    pub reason: Option<String>,
}

/// A mistake in the file's text: where (1-based; columns count characters, not bytes) and what
/// was expected instead, so an operator can fix it without reading this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct BanSyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why the ban file cannot be used; names the file, since the message ends up in a log far from
/// the configuration that named it.
#[derive(Debug, thiserror::Error)]
pub enum BanFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Syntax {
        path: PathBuf,
        source: BanSyntaxError,
    },
}

/// Reads the file at `path`.
pub fn load(path: &Path) -> Result<Vec<BanEntry>, BanFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| BanFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|source| BanFileError::Syntax {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses the file's text, stopping at the first mistake.
pub fn parse(text: &str) -> Result<Vec<BanEntry>, BanSyntaxError> {
    // Editors on some systems start a UTF-8 file with a byte-order mark; it is not a token.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = parse_line(line).map_err(|(column, message)| BanSyntaxError {
            line: index + 1,
            column,
            message,
        })?;
        entries.extend(entry);
    }
    Ok(entries)
}

/// Writes entries in the file's syntax, one per line; [`parse`] reads them back unchanged.
///
/// Two things `parse` never produces are adjusted so the output always parses: expiry times
/// outside what RFC 3339 can write here (before 1970, after 9999) are clamped to those bounds,
/// and line breaks in a reason become spaces.
pub fn render(entries: &[BanEntry]) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&entry.to_string());
        out.push('\n');
    }
    out
}

/// Rewrites the file at `path` with `entries` (the admin API's bans), atomically.
pub fn save(path: &Path, entries: &[BanEntry]) -> Result<(), BanFileError> {
    let text = format!(
        "# Written by cicada (admin API); edit freely, reload with SIGHUP.\n{}",
        render(entries)
    );
    crate::passwd::replace_file(path, text.as_bytes()).map_err(|source| BanFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

impl fmt::Display for BanEntry {
    /// One line of the file, without the line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        if let Some(until) = self.until {
            write!(f, " until {}", humantime::format_rfc3339(clamp_time(until)))?;
        }
        if let Some(reason) = &self.reason {
            f.write_str(" reason ")?;
            write!(
                f,
                "{}",
                cicada_engine::limits::Quoted(&reason.replace(['\n', '\r'], " "))
            )?;
        }
        Ok(())
    }
}

/// The last instant `humantime` writes in RFC 3339: 9999-12-31T23:59:59.999999999Z.
const LAST_WRITABLE: Duration = Duration::new(253_402_300_799, 999_999_999);

/// `time` within what `humantime::format_rfc3339` can write (it panics before 1970 and fails
/// after 9999).
fn clamp_time(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + since.min(LAST_WRITABLE),
        Err(_) => UNIX_EPOCH,
    }
}

/// A word or a quoted string, and the column where it starts (a quoted string's opening quote).
#[derive(Debug)]
struct Token {
    column: usize,
    quoted: bool,
    text: String,
}

impl Token {
    /// How an error message shows what it found.
    fn describe(&self) -> String {
        if self.quoted {
            format!("the string {:?}", self.text)
        } else {
            format!("`{}`", self.text)
        }
    }
}

/// An error inside a line: column and message.
type LineError = (usize, String);

/// A line's tokens, and the column where they end: the comment's `#`, or one past the last
/// character. "Found the end of the line" errors point there.
fn tokenize(line: &str) -> Result<(Vec<Token>, usize), LineError> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            return Ok((tokens, i + 1));
        } else if c == '"' {
            let (text, next) = quoted(&chars, i)?;
            tokens.push(Token {
                column: i + 1,
                quoted: true,
                text,
            });
            i = next;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '"' | '#') {
                i += 1;
            }
            tokens.push(Token {
                column: start + 1,
                quoted: false,
                text: chars[start..i].iter().collect(),
            });
        }
    }
    Ok((tokens, chars.len() + 1))
}

/// The quoted string whose opening quote is at `chars[open]`: its text, and the index after the
/// closing quote.
fn quoted(chars: &[char], open: usize) -> Result<(String, usize), LineError> {
    let mut text = String::new();
    let mut i = open + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err((
                    open + 1,
                    "unterminated string: expected a closing `\"` on the same line".into(),
                ))
            }
            Some('"') => return Ok((text, i + 1)),
            Some('\\') => match chars.get(i + 1) {
                Some(&escaped @ ('"' | '\\')) => {
                    text.push(escaped);
                    i += 2;
                }
                _ => {
                    return Err((
                        i + 1,
                        "unknown escape: expected `\\\"` or `\\\\` after a backslash".into(),
                    ))
                }
            },
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

/// One line: a ban, or `None` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<BanEntry>, LineError> {
    let (tokens, end) = tokenize(line)?;
    let mut tokens = tokens.into_iter();
    let Some(kind) = tokens.next() else {
        return Ok(None);
    };
    if kind.quoted || !matches!(kind.text.as_str(), "client" | "user" | "address") {
        return Err((
            kind.column,
            format!(
                "expected `client`, `user` or `address`, found {}",
                kind.describe()
            ),
        ));
    }
    let expected_value = match kind.text.as_str() {
        "address" => "a quoted address or network (e.g. \"10.0.0.0/8\")",
        _ => "a quoted name or `*` pattern (e.g. \"bad-*\")",
    };
    let value = match tokens.next() {
        Some(value) if value.quoted => value,
        Some(other) => {
            return Err((
                other.column,
                format!("expected {expected_value}, found {}", other.describe()),
            ))
        }
        None => {
            return Err((
                end,
                format!("expected {expected_value}, found the end of the line"),
            ))
        }
    };
    let target =
        BanTarget::parse(&kind.text, &value.text).map_err(|e| (value.column, e.to_string()))?;
    let mut entry = BanEntry {
        target,
        until: None,
        reason: None,
    };
    while let Some(word) = tokens.next() {
        match (word.quoted, word.text.as_str()) {
            (false, "until") if entry.until.is_some() => {
                return Err((word.column, "`until` given twice".into()))
            }
            (false, "until") => entry.until = Some(parse_until(tokens.next(), end)?),
            (false, "reason") if entry.reason.is_some() => {
                return Err((word.column, "`reason` given twice".into()))
            }
            (false, "reason") => entry.reason = Some(parse_reason(tokens.next(), end)?),
            _ => {
                return Err((
                    word.column,
                    format!(
                        "expected `until TIME`, `reason \"TEXT\"` or the end of the line, found {}",
                        word.describe()
                    ),
                ))
            }
        }
    }
    Ok(Some(entry))
}

/// What follows `until`: a time in UTC. Local times are refused rather than guessed, since a ban
/// lifted hours early or late is a surprise.
fn parse_until(token: Option<Token>, end: usize) -> Result<SystemTime, LineError> {
    const EXPECTED: &str = "expected a time in RFC 3339, in UTC (e.g. 2026-12-31T00:00:00Z)";
    let token = token.ok_or_else(|| (end, format!("{EXPECTED}, found the end of the line")))?;
    humantime::parse_rfc3339(&token.text).map_err(|e| {
        (
            token.column,
            format!("{EXPECTED}, found {} ({e})", token.describe()),
        )
    })
}

/// What follows `reason`: a quoted string.
fn parse_reason(token: Option<Token>, end: usize) -> Result<String, LineError> {
    match token {
        Some(t) if t.quoted => Ok(t.text),
        Some(t) => Err((
            t.column,
            format!("expected a quoted reason, found {}", t.describe()),
        )),
        None => Err((
            end,
            "expected a quoted reason, found the end of the line".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("time")
    }

    fn target(kind: &str, value: &str) -> BanTarget {
        BanTarget::parse(kind, value).expect("target")
    }

    #[test]
    fn reads_each_kind_with_expiry_and_reason() {
        let text = "\u{feff}# bans\n\
                    \n\
                    client \"bad-client-*\"\n\
                    \tuser \"mallory\" until 2026-12-31T00:00:00Z   # reason text after a # is a comment\n\
                    address \"203.0.113.0/24\" until 2026-11-30T12:00:00Z reason \"abuse\"\r\n\
                    address \"::1\" reason \"say \\\"hi\\\" \\\\o/ # not a comment\" until 2026-01-01T00:00:00.5Z\n\
                    user \"x\"#comment right after\n";
        let entries = parse(text).expect("valid");
        assert_eq!(
            entries,
            vec![
                BanEntry {
                    target: target("client", "bad-client-*"),
                    until: None,
                    reason: None,
                },
                BanEntry {
                    target: target("user", "mallory"),
                    until: Some(time("2026-12-31T00:00:00Z")),
                    reason: None,
                },
                BanEntry {
                    target: target("address", "203.0.113.0/24"),
                    until: Some(time("2026-11-30T12:00:00Z")),
                    reason: Some("abuse".into()),
                },
                BanEntry {
                    target: target("address", "::1"),
                    until: Some(UNIX_EPOCH + Duration::new(1_767_225_600, 500_000_000)),
                    reason: Some("say \"hi\" \\o/ # not a comment".into()),
                },
                BanEntry {
                    target: target("user", "x"),
                    until: None,
                    reason: None,
                },
            ]
        );
    }

    #[test]
    fn an_empty_file_or_only_comments_is_no_bans() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("\n  \n# nothing\n\t# still nothing\n"), Ok(vec![]));
    }

    #[test]
    fn render_round_trips() {
        let entries = vec![
            BanEntry {
                target: target("client", "bad-client-*"),
                until: None,
                reason: None,
            },
            BanEntry {
                target: target("user", r#"odd"name\with*"#),
                until: Some(time("2026-12-31T00:00:00Z")),
                reason: Some(r#"quotes " and \ and # too"#.into()),
            },
            BanEntry {
                target: target("address", "2001:db8::/32"),
                until: Some(UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789)),
                reason: Some(String::new()),
            },
            BanEntry {
                target: target("address", "192.0.2.1"),
                until: None,
                reason: Some("\tün icode ".into()),
            },
        ];
        let text = render(&entries);
        assert_eq!(
            text.lines().nth(1),
            Some(
                r#"user "odd\"name\\with*" until 2026-12-31T00:00:00Z reason "quotes \" and \\ and # too""#
            )
        );
        assert_eq!(parse(&text), Ok(entries));
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn render_keeps_what_parse_could_never_produce_parseable() {
        let entries = [
            BanEntry {
                target: target("client", "c"),
                until: Some(UNIX_EPOCH - Duration::from_secs(1)),
                reason: Some("two\nlines".into()),
            },
            BanEntry {
                target: target("client", "d"),
                until: Some(UNIX_EPOCH + Duration::from_secs(400_000_000_000)),
                reason: None,
            },
        ];
        let back = parse(&render(&entries)).expect("parses");
        assert_eq!(back[0].until, Some(UNIX_EPOCH));
        assert_eq!(back[0].reason.as_deref(), Some("two lines"));
        assert_eq!(back[1].until, Some(UNIX_EPOCH + LAST_WRITABLE));
    }

    #[test]
    fn errors_name_line_column_and_what_was_expected() {
        let cases = [
            (
                "host \"x\"",
                1,
                1,
                "expected `client`, `user` or `address`, found `host`",
            ),
            (
                "\"client\" \"x\"",
                1,
                1,
                "expected `client`, `user` or `address`, found the string",
            ),
            ("client x", 1, 8, "expected a quoted name or `*` pattern"),
            ("client", 1, 7, "found the end of the line"),
            (
                "address # no value",
                1,
                9,
                "expected a quoted address or network",
            ),
            ("address \"10.0.0\"", 1, 9, "not an IP address or network"),
            (
                "address \"10.0.0.0/33\"",
                1,
                9,
                "not an IP address or network",
            ),
            ("client \"\"", 1, 8, "an empty client pattern"),
            ("user \"a\tb\"", 1, 6, "control character"),
            (
                "# ok\n\nuser \"u\" until tomorrow",
                3,
                16,
                "expected a time in RFC 3339",
            ),
            ("user \"u\" until 2026-12-31T00:00:00", 1, 16, "in UTC"),
            (
                "user \"u\" until 2026-12-31T00:00:00+02:00",
                1,
                16,
                "in UTC",
            ),
            (
                "user \"u\" until 2026-13-01T00:00:00Z",
                1,
                16,
                "expected a time",
            ),
            (
                "user \"u\" until",
                1,
                15,
                "expected a time in RFC 3339, in UTC (e.g. 2026-12-31T00:00:00Z), found the end",
            ),
            ("user \"u\" until   # c", 1, 18, "found the end of the line"),
            (
                "user \"u\" forever",
                1,
                10,
                "expected `until TIME`, `reason \"TEXT\"` or the end of the line, found `forever`",
            ),
            ("user \"u\" \"extra\"", 1, 10, "found the string \"extra\""),
            ("user \"u", 1, 6, "unterminated string"),
            ("user \"u\\", 1, 8, "unknown escape"),
            ("user \"a\\nb\"", 1, 8, "unknown escape"),
            (
                "user \"u\" reason because",
                1,
                17,
                "expected a quoted reason, found `because`",
            ),
            (
                "user \"u\" reason",
                1,
                16,
                "expected a quoted reason, found the end of the line",
            ),
            (
                "user \"u\" reason \"a\" reason \"b\"",
                1,
                21,
                "`reason` given twice",
            ),
            (
                "user \"u\" until 2026-01-01T00:00:00Z until 2027-01-01T00:00:00Z",
                1,
                37,
                "`until` given twice",
            ),
            ("user \"ü\" bogus", 1, 10, "found `bogus`"),
        ];
        for (text, line, column, message) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!((err.line, err.column), (line, column), "{text:?}: {err}");
            assert!(err.message.contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn error_messages_read_as_line_then_column() {
        let err = parse("client \"ok\"\nbogus").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "line 2, column 1: expected `client`, `user` or `address`, found `bogus`"
        );
    }

    #[test]
    fn load_names_the_path() {
        let dir = std::env::temp_dir().join(format!("cicada-banfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.bans");
        std::fs::write(&good, "client \"a\"\n").expect("write");
        assert_eq!(load(&good).expect("loads").len(), 1);

        let bad = dir.join("bad.bans");
        std::fs::write(&bad, "client \"a\"\nclient a\n").expect("write");
        let err = load(&bad).expect_err("syntax");
        assert!(matches!(&err, BanFileError::Syntax { source, .. } if source.line == 2));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: line 2, column 8: expected a quoted name or `*` pattern (e.g. \"bad-*\"), found `a`",
                bad.display()
            )
        );

        let missing = dir.join("missing.bans");
        let err = load(&missing).expect_err("missing");
        assert!(matches!(err, BanFileError::Read { .. }));
        assert!(err
            .to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
