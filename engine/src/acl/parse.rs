//! The ACL file's syntax: one rule per line, errors with line and column.

use crate::codec::QoS;

use super::{Action, Level, Piece, Rule, Term};

/// A mistake in an ACL file, with where it is (1-based line and column, in characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct AclError {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Comma,
    AtMost,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Str(s) => format!("the string {s:?}"),
            Tok::Comma => "\",\"".into(),
            Tok::AtMost => "\"<=\"".into(),
        }
    }
}

/// A line's tokens with their columns; a `#` where a token starts begins a comment.
fn tokens(text: &str, line: usize) -> Result<Vec<(usize, Tok)>, AclError> {
    let chars: Vec<char> = text.chars().collect();
    let err = |column: usize, message: String| AclError {
        line,
        column,
        message,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            break;
        } else if c == ',' {
            out.push((column, Tok::Comma));
            i += 1;
        } else if c == '<' {
            if chars.get(i + 1) != Some(&'=') {
                return Err(err(column, "expected \"<=\"".into()));
            }
            out.push((column, Tok::AtMost));
            i += 2;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(err(
                            column,
                            "unterminated string: add the closing \"".into(),
                        ))
                    }
                    Some('"') => break,
                    Some('\\') => match chars.get(i + 1) {
                        Some(e @ ('"' | '\\')) => {
                            s.push(*e);
                            i += 2;
                        }
                        _ => {
                            return Err(err(
                                i + 1,
                                "unknown escape; only \\\" and \\\\ are allowed".into(),
                            ))
                        }
                    },
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push((column, Tok::Str(s)));
        } else if c.is_alphanumeric() || c == '_' || c == '-' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                i += 1;
            }
            out.push((column, Tok::Word(chars[start..i].iter().collect())));
        } else {
            return Err(err(column, format!("unexpected character {c:?}")));
        }
    }
    Ok(out)
}

/// Reads a whole file.
pub(super) fn parse(text: &str) -> Result<Vec<Rule>, AclError> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let toks = tokens(line, n + 1)?;
        if toks.is_empty() {
            continue;
        }
        let end = line.chars().count() + 1;
        rules.push(
            Line {
                toks,
                at: 0,
                line: n + 1,
                end,
            }
            .rule()?,
        );
    }
    Ok(rules)
}

struct Line {
    toks: Vec<(usize, Tok)>,
    at: usize,
    line: usize,
    /// The column just past the line, for "expected ... at the end of the line".
    end: usize,
}

impl Line {
    fn err(&self, column: usize, message: String) -> AclError {
        AclError {
            line: self.line,
            column,
            message,
        }
    }

    fn peek(&self) -> Option<&(usize, Tok)> {
        self.toks.get(self.at)
    }

    /// The next token, or an error saying what was expected instead of the end of the line.
    fn next(&mut self, expected: &str) -> Result<(usize, &Tok), AclError> {
        match self.toks.get(self.at) {
            Some((column, tok)) => {
                self.at += 1;
                Ok((*column, tok))
            }
            None => Err(self.err(
                self.end,
                format!("expected {expected}, found the end of the line"),
            )),
        }
    }

    fn string(&mut self, expected: &str) -> Result<(usize, String), AclError> {
        let (column, tok) = self.next(expected)?;
        match tok {
            Tok::Str(s) => Ok((column, s.clone())),
            other => {
                let found = other.describe();
                Err(self.err(column, format!("expected {expected}, found {found}")))
            }
        }
    }

    fn rule(mut self) -> Result<Rule, AclError> {
        let (column, tok) = self.next("allow or deny")?;
        let allow = match tok {
            Tok::Word(w) if w == "allow" => true,
            Tok::Word(w) if w == "deny" => false,
            other => {
                let found = other.describe();
                return Err(self.err(column, format!("expected allow or deny, found {found}")));
            }
        };
        let subject = self.subject()?;
        let actions = self.actions()?;
        let (column, topic) = self.string("a quoted topic filter")?;
        let pattern = pattern(&topic).map_err(|(offset, message)| {
            // Point into the string: past the opening quote.
            self.err(column + 1 + offset, message)
        })?;
        let mut max_qos = None;
        if let Some((column, tok)) = self.peek() {
            let column = *column;
            if *tok != Tok::Word("qos".into()) {
                let found = tok.describe();
                return Err(self.err(
                    column,
                    format!("expected `qos <= N` or the end of the line, found {found}"),
                ));
            }
            if !allow {
                return Err(self.err(column, "a QoS cap only limits what an allow rule grants; remove it from this deny rule".into()));
            }
            self.at += 1;
            let (column, tok) = self.next("\"<=\"")?;
            if *tok != Tok::AtMost {
                let found = tok.describe();
                return Err(self.err(column, format!("expected \"<=\", found {found}")));
            }
            let (column, tok) = self.next("a QoS (0, 1 or 2)")?;
            let qos = match tok {
                Tok::Word(w) => w.parse::<u8>().ok().and_then(QoS::from_u8),
                _ => None,
            };
            let Some(qos) = qos else {
                let found = tok.describe();
                return Err(self.err(column, format!("expected a QoS (0, 1 or 2), found {found}")));
            };
            max_qos = Some(qos);
            if let Some((column, tok)) = self.peek() {
                let found = tok.describe();
                return Err(self.err(
                    *column,
                    format!("expected the end of the line, found {found}"),
                ));
            }
        }
        Ok(Rule {
            allow,
            subject,
            actions,
            pattern,
            max_qos,
        })
    }

    fn subject(&mut self) -> Result<Vec<Term>, AclError> {
        let expected = "a subject (all, user, client, tenant, claim, anonymous)";
        if matches!(self.peek(), Some((_, Tok::Word(w))) if w == "all") {
            self.at += 1;
            return Ok(Vec::new());
        }
        let mut terms = Vec::new();
        loop {
            let (column, word) = match self.peek() {
                Some((column, Tok::Word(w))) => (*column, w.clone()),
                Some((column, tok)) if terms.is_empty() => {
                    let found = tok.describe();
                    return Err(self.err(*column, format!("expected {expected}, found {found}")));
                }
                None if terms.is_empty() => {
                    return Err(self.err(
                        self.end,
                        format!("expected {expected}, found the end of the line"),
                    ))
                }
                _ => return Ok(terms),
            };
            let term = match word.as_str() {
                "user" => {
                    self.at += 1;
                    Term::User(self.string("a quoted user name pattern")?.1)
                }
                "client" => {
                    self.at += 1;
                    Term::Client(self.string("a quoted client id pattern")?.1)
                }
                "tenant" => {
                    self.at += 1;
                    Term::Tenant(self.string("a quoted tenant pattern")?.1)
                }
                "claim" => {
                    self.at += 1;
                    let name = self.string("a quoted claim name")?.1;
                    let value = self.string("a quoted claim value pattern")?.1;
                    Term::Claim(name, value)
                }
                "anonymous" => {
                    self.at += 1;
                    Term::Anonymous
                }
                "all" => {
                    return Err(self.err(
                        column,
                        "`all` stands alone; remove the other subject terms or `all`".into(),
                    ))
                }
                _ if terms.is_empty() => {
                    return Err(self.err(column, format!("expected {expected}, found {word:?}")))
                }
                _ => return Ok(terms),
            };
            terms.push(term);
        }
    }

    fn actions(&mut self) -> Result<u8, AclError> {
        let expected = "an action (publish, subscribe, retain)";
        let mut actions = 0;
        loop {
            let (column, tok) = self.next(expected)?;
            let action = match tok {
                Tok::Word(w) if w == "publish" => Action::Publish,
                Tok::Word(w) if w == "subscribe" => Action::Subscribe,
                Tok::Word(w) if w == "retain" => Action::Retain,
                other => {
                    let found = other.describe();
                    return Err(self.err(column, format!("expected {expected}, found {found}")));
                }
            };
            actions |= action as u8;
            if matches!(self.peek(), Some((_, Tok::Comma))) {
                self.at += 1;
            } else {
                return Ok(actions);
            }
        }
    }
}

/// A topic filter with placeholders, split into levels; errors carry the character offset.
pub(super) fn pattern(text: &str) -> Result<Vec<Level>, (usize, String)> {
    if text.is_empty() {
        return Err((
            0,
            "an empty topic; write a topic filter such as \"a/#\"".into(),
        ));
    }
    let mut levels = Vec::new();
    let mut offset = 0;
    let count = text.split('/').count();
    for (i, level) in text.split('/').enumerate() {
        let len = level.chars().count();
        let parsed = match level {
            "+" => Level::Plus,
            "#" if i + 1 == count => Level::Hash,
            "#" => return Err((offset, "`#` must be the last level".into())),
            _ => {
                if let Some(p) = level.chars().position(|c| c == '+' || c == '#') {
                    return Err((offset + p, "`+` and `#` must fill a whole level".into()));
                }
                if let Some(p) = level.chars().position(|c| c == '\0') {
                    return Err((offset + p, "NUL is not allowed in topics".into()));
                }
                Level::Text(pieces(level).map_err(|(p, m)| (offset + p, m))?)
            }
        };
        levels.push(parsed);
        offset += len + 1;
    }
    Ok(levels)
}

fn pieces(level: &str) -> Result<Vec<Piece>, (usize, String)> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = level.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        let placeholder = match chars.next() {
            Some((_, '%')) => {
                lit.push('%');
                continue;
            }
            Some((_, 'c')) => Piece::ClientId,
            Some((_, 'u')) => Piece::Username,
            Some((_, 't')) => Piece::Tenant,
            _ => return Err((
                i,
                "unknown placeholder; use %c (client id), %u (user name), %t (tenant) or %% (a %)"
                    .into(),
            )),
        };
        if !lit.is_empty() {
            out.push(Piece::Literal(std::mem::take(&mut lit)));
        }
        out.push(placeholder);
    }
    if !lit.is_empty() || out.is_empty() {
        out.push(Piece::Literal(lit));
    }
    Ok(out)
}
