//! Splitting one line of an ACL file into tokens, each with the column it starts at.
//!
//! Columns count characters (not bytes) from 1, as an editor shows them. A quoted string keeps
//! the column of each of its characters, so a mistake inside a topic filter is reported where it
//! is in the line even after `\"` or `\\` escapes.

use super::parse::AclError;

/// One token.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tok {
    /// A keyword or a number: letters, digits, `_` and `-`.
    Word(String),
    /// A double-quoted string, escapes resolved.
    Str(Quoted),
    /// `,`.
    Comma,
    /// `<=`.
    AtMost,
    /// Any other character: never valid, but reported by the parser, which knows what it
    /// expected there.
    Other(char),
}

/// The text of a quoted string, and where each of its characters is in the line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Quoted {
    /// The string, escapes resolved.
    pub(super) text: String,
    /// The column of each character of `text`, then the column of the closing quote.
    pub(super) columns: Vec<usize>,
}

impl Tok {
    /// The token as an error message names it after "found".
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Word(word) => format!("{word:?}"),
            Tok::Str(quoted) => format!("the string {:?}", quoted.text),
            Tok::Comma => "\",\"".into(),
            Tok::AtMost => "\"<=\"".into(),
            Tok::Other(c) => format!("\"{}\"", c.escape_debug()),
        }
    }
}

/// A token and the column it starts at.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Token {
    /// 1-based, in characters.
    pub(super) column: usize,
    /// The token.
    pub(super) tok: Tok,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// The tokens of line `line` (numbered for errors). A `#` where a token could start begins a
/// comment that runs to the end of the line.
///
/// # Errors
/// An unterminated string, or an escape other than `\"` and `\\`.
pub(super) fn tokens(text: &str, line: usize) -> Result<Vec<Token>, AclError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let column = i + 1;
        let (tok, len) = match c {
            '#' => break,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ',' => (Tok::Comma, 1),
            '<' if chars.get(i + 1) == Some(&'=') => (Tok::AtMost, 2),
            '"' => {
                let (quoted, len) = string(&chars[i..], column, line)?;
                (Tok::Str(quoted), len)
            }
            c if is_word_char(c) => {
                let len = chars[i..].iter().take_while(|c| is_word_char(**c)).count();
                (Tok::Word(chars[i..i + len].iter().collect()), len)
            }
            other => (Tok::Other(other), 1),
        };
        out.push(Token { column, tok });
        i += len;
    }
    Ok(out)
}

/// The quoted string at the start of `chars` (which starts with `"`, at `column`), and how many
/// characters it spans, quotes included.
fn string(chars: &[char], column: usize, line: usize) -> Result<(Quoted, usize), AclError> {
    let mut quoted = Quoted {
        text: String::new(),
        columns: Vec::new(),
    };
    let mut i = 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(AclError {
                    line,
                    column,
                    message:
                        "unterminated string: expected a closing \", found the end of the line"
                            .into(),
                })
            }
            Some('"') => {
                quoted.columns.push(column + i);
                return Ok((quoted, i + 1));
            }
            Some('\\') => {
                let escaped = chars.get(i + 1).copied();
                let Some(c @ ('"' | '\\')) = escaped else {
                    let found = escaped.map_or("the end of the line".into(), |c| {
                        format!("\"\\{}\"", c.escape_debug())
                    });
                    return Err(AclError {
                        line,
                        column: column + i,
                        message: format!("expected an escape (\\\" or \\\\), found {found}"),
                    });
                };
                quoted.text.push(c);
                quoted.columns.push(column + i);
                i += 2;
            }
            Some(&c) => {
                quoted.text.push(c);
                quoted.columns.push(column + i);
                i += 1;
            }
        }
    }
}
