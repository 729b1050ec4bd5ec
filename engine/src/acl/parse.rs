//! The ACL file's grammar: one rule per line, and errors that say where the first mistake is,
//! what was expected there and what was found, so an operator can fix a file without the source.
//!
//! ```text
//! (allow|deny) SUBJECT ACTIONS "TOPIC" [qos <= 0|1|2]
//! ```

use std::iter::Peekable;
use std::vec::IntoIter;

use crate::codec::QoS;

use super::lex::{self, Tok, Token};
use super::{matching, pattern, Action, Rule, Term};

/// A mistake in an ACL file: where it is (1-based line and column, the column counting
/// characters) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct AclError {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters; one past the last character when the line ended too
    /// soon.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

const SUBJECT: &str = "a subject (all, user, client, tenant, claim, anonymous)";
const TERM_OR_ACTION: &str = "another subject term (user, client, tenant, claim, anonymous) \
                              or an action (publish, subscribe, retain)";
const TERMS: [&str; 5] = ["user", "client", "tenant", "claim", "anonymous"];
const ACTION: &str = "an action (publish, subscribe, retain)";

/// The rules of a whole file, in order.
pub(super) fn parse(text: &str) -> Result<Vec<Rule>, AclError> {
    // Some editors start files with a byte order mark; it is not part of the first rule.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let tokens = lex::tokens(line, number)?;
        if tokens.is_empty() {
            continue;
        }
        let end = line.chars().count() + 1;
        rules.push(
            Line {
                tokens: tokens.into_iter().peekable(),
                number,
                end,
            }
            .rule()?,
        );
    }
    Ok(rules)
}

/// The tokens of one line being parsed.
struct Line {
    tokens: Peekable<IntoIter<Token>>,
    number: usize,
    /// The column just past the line, where "found the end of the line" points.
    end: usize,
}

impl Line {
    fn error(&self, column: usize, message: String) -> AclError {
        AclError {
            line: self.number,
            column,
            message,
        }
    }

    /// "expected `expected`, found" the token, or the end of the line.
    fn unexpected(&self, expected: &str, found: Option<&Token>) -> AclError {
        match found {
            Some(token) => self.error(
                token.column,
                format!("expected {expected}, found {}", token.tok.describe()),
            ),
            None => self.error(
                self.end,
                format!("expected {expected}, found the end of the line"),
            ),
        }
    }

    /// "expected `expected`, found" the next token, or the end of the line.
    fn unexpected_next(&mut self, expected: &str) -> AclError {
        let found = self.tokens.next();
        self.unexpected(expected, found.as_ref())
    }

    /// The next token if it is the keyword `word`.
    fn keyword(&mut self, word: &str) -> Option<Token> {
        self.tokens
            .next_if(|t| matches!(&t.tok, Tok::Word(w) if w == word))
    }

    /// The next token's keyword, if it is a word.
    fn peek_word(&mut self) -> Option<&str> {
        match self.tokens.peek() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) => Some(w),
            _ => None,
        }
    }

    /// A quoted string's text, or an error naming `expected`.
    fn string(&mut self, expected: &str) -> Result<String, AclError> {
        match self.tokens.next() {
            Some(Token {
                tok: Tok::Str(quoted),
                ..
            }) => Ok(quoted.text),
            other => Err(self.unexpected(expected, other.as_ref())),
        }
    }

    /// The whole line as one rule.
    fn rule(mut self) -> Result<Rule, AclError> {
        let allow = if self.keyword("allow").is_some() {
            true
        } else if self.keyword("deny").is_some() {
            false
        } else {
            return Err(self.unexpected_next("allow or deny"));
        };
        let subject = self.subject()?;
        let actions = self.actions()?;
        let pattern = self.topic()?;
        let max_qos = self.cap(allow)?;
        if self.tokens.peek().is_some() {
            let expected = if max_qos.is_some() {
                "the end of the line"
            } else {
                "\"qos <= N\" or the end of the line"
            };
            return Err(self.unexpected_next(expected));
        }
        Ok(Rule {
            allow,
            subject,
            actions,
            placeholders: matching::placeholder_bits(&pattern),
            pattern,
            max_qos,
        })
    }

    /// `all`, or the terms that must all hold (at least one).
    fn subject(&mut self) -> Result<Vec<Term>, AclError> {
        if self.keyword("all").is_some() {
            if let Some(token) = self
                .tokens
                .next_if(|t| matches!(&t.tok, Tok::Word(w) if TERMS.contains(&w.as_str())))
            {
                let message = format!(
                    "expected {ACTION} after `all`, which stands alone, found {}",
                    token.tok.describe()
                );
                return Err(self.error(token.column, message));
            }
            return Ok(Vec::new());
        }
        let mut terms = Vec::new();
        loop {
            let term = match self.peek_word() {
                Some("user") => Term::User(self.argument("a quoted user name glob")?),
                Some("client") => Term::Client(self.argument("a quoted client id glob")?),
                Some("tenant") => Term::Tenant(self.argument("a quoted tenant glob")?),
                Some("claim") => {
                    let name = self.argument("a quoted claim name")?;
                    Term::Claim(name, self.string("a quoted claim value glob")?)
                }
                Some("anonymous") => {
                    self.tokens.next();
                    Term::Anonymous
                }
                Some("publish" | "subscribe" | "retain") if !terms.is_empty() => return Ok(terms),
                _ => {
                    let expected = if terms.is_empty() {
                        SUBJECT
                    } else {
                        TERM_OR_ACTION
                    };
                    return Err(self.unexpected_next(expected));
                }
            };
            terms.push(term);
        }
    }

    /// Skips the keyword just peeked and reads the quoted string after it.
    fn argument(&mut self, expected: &str) -> Result<String, AclError> {
        self.tokens.next();
        self.string(expected)
    }

    /// Comma-separated actions, as [`Action`] bits.
    fn actions(&mut self) -> Result<u8, AclError> {
        let mut actions = 0;
        loop {
            let action = match self.peek_word() {
                Some("publish") => Action::Publish,
                Some("subscribe") => Action::Subscribe,
                Some("retain") => Action::Retain,
                _ => return Err(self.unexpected_next(ACTION)),
            };
            self.tokens.next();
            actions |= action as u8;
            if self.tokens.next_if(|t| t.tok == Tok::Comma).is_none() {
                return Ok(actions);
            }
        }
    }

    /// The quoted topic filter, compiled; errors inside it point at the offending character.
    fn topic(&mut self) -> Result<Vec<super::Level>, AclError> {
        match self.tokens.next() {
            Some(Token {
                tok: Tok::Str(quoted),
                ..
            }) => pattern::parse(&quoted.text).map_err(|(at, message)| {
                let last = quoted.columns.len().saturating_sub(1);
                let column = quoted
                    .columns
                    .get(at.min(last))
                    .copied()
                    .unwrap_or(self.end);
                self.error(column, message)
            }),
            other => Err(self.unexpected("\",\" or a quoted topic filter", other.as_ref())),
        }
    }

    /// The optional `qos <= N`.
    fn cap(&mut self, allow: bool) -> Result<Option<QoS>, AclError> {
        let Some(qos) = self.keyword("qos") else {
            return Ok(None);
        };
        if !allow {
            return Err(self.error(
                qos.column,
                "a QoS cap only limits what an allow rule grants; remove it from this deny rule"
                    .into(),
            ));
        }
        if self.tokens.next_if(|t| t.tok == Tok::AtMost).is_none() {
            return Err(self.unexpected_next("\"<=\""));
        }
        let max = match self.peek_word() {
            Some("0") => QoS::AtMostOnce,
            Some("1") => QoS::AtLeastOnce,
            Some("2") => QoS::ExactlyOnce,
            _ => return Err(self.unexpected_next("a QoS (0, 1 or 2)")),
        };
        self.tokens.next();
        Ok(Some(max))
    }
}
