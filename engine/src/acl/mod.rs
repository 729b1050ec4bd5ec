//! Access control lists: a small rule language (see `docs/acl.md`), compiled for the engine to
//! check PUBLISH, SUBSCRIBE and wills.
//!
//! ```text
//! allow user "mobile-*" publish "telemetry/%c/data" qos <= 1
//! deny all subscribe "$SYS/#"
//! ```
//!
//! Semantics:
//! - Rules are tried in file order; the first that applies decides. None applying means deny.
//! - A rule applies if its subject holds (every term: `user`, `client`, `tenant` globs, `claim`,
//!   `anonymous`; or `all`), it lists the action checked, and its placeholders (`%c`, `%u`, `%t`)
//!   can be filled: a missing, empty value or one holding `/`, `+`, `#` or NUL makes the rule not
//!   apply, so a client id can never widen a pattern.
//! - Publish: the pattern must match the topic (MQTT matching: a first-level `+` or `#` never
//!   matches a `$` topic). An allow rule capped with `qos <= N` applies only to publishes at QoS
//!   N or below. A retained publish must be allowed for `retain` too, by a separate first-match.
//! - Subscribe: an allow rule applies if its pattern covers the filter (every topic the filter
//!   can match, the pattern matches); a deny rule if it intersects the filter (some topic matches
//!   both). The QoS granted is the request, capped by the allow rule's `qos <= N`.

mod parse;
#[cfg(any(test, feature = "sim"))]
#[doc(hidden)]
pub mod reference;

pub use parse::AclError;

use crate::codec::QoS;
use crate::limits::glob;

/// Who is asking: what the subject terms and placeholders look at.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The proven user name; `None` for anonymous clients.
    pub username: Option<&'a str>,
    /// The client's tenant, if any.
    pub tenant: Option<&'a str>,
    /// Claims the authenticator vouched for (a name may appear several times).
    pub claims: &'a [(String, String)],
}

/// An action a rule grants or denies (bit flags in [`Rule::actions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Action {
    /// PUBLISH (and wills).
    Publish = 1,
    /// SUBSCRIBE.
    Subscribe = 2,
    /// Retaining a message (needed on top of `Publish` for retained PUBLISHes).
    Retain = 4,
}

/// One subject term; a rule's subject holds when all of them do (none: `all`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Term {
    /// `user "glob"`.
    User(String),
    /// `client "glob"`.
    Client(String),
    /// `tenant "glob"`.
    Tenant(String),
    /// `claim "name" "glob"`.
    Claim(String, String),
    /// `anonymous`.
    Anonymous,
}

/// A part of a pattern level.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Piece {
    /// Literal text.
    Literal(String),
    /// `%c`.
    ClientId,
    /// `%u`.
    Username,
    /// `%t`.
    Tenant,
}

/// One level of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Level {
    /// `+`.
    Plus,
    /// `#` (last).
    Hash,
    /// Text, possibly with placeholders.
    Text(Vec<Piece>),
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct Rule {
    /// Allow or deny.
    pub allow: bool,
    /// Subject terms, all of which must hold (none: `all`).
    pub subject: Vec<Term>,
    /// [`Action`] bits.
    pub actions: u8,
    /// The topic pattern.
    pub pattern: Vec<Level>,
    /// `qos <= N` (allow rules only).
    pub max_qos: Option<QoS>,
}

/// A compiled ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// A level of a pattern after placeholders are filled, or of a topic/filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L<'a> {
    Plus,
    Hash,
    Lit(&'a str),
}

impl Acl {
    /// Parses and compiles an ACL file.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        Ok(Acl {
            rules: parse::parse(text)?,
        })
    }

    /// The parsed rules (for the reference implementation and tools).
    #[doc(hidden)]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `who` may publish to `topic` at `qos`, retained or not.
    pub fn may_publish(&self, who: &Who<'_>, topic: &str, qos: QoS, retain: bool) -> bool {
        let topic: Vec<&str> = topic.split('/').collect();
        let decide = |action: Action| {
            self.first(who, action, |rule, pattern| {
                if rule.allow && rule.max_qos.is_some_and(|max| qos > max) {
                    return false;
                }
                matches_topic(pattern, &topic)
            })
            .is_some_and(|rule| rule.allow)
        };
        decide(Action::Publish) && (!retain || decide(Action::Retain))
    }

    /// The QoS granted for a subscription to `filter` asked at `qos`, or `None` if denied.
    pub fn may_subscribe(&self, who: &Who<'_>, filter: &str, qos: QoS) -> Option<QoS> {
        let filter: Vec<L<'_>> = filter.split('/').map(level_of).collect();
        let rule = self.first(who, Action::Subscribe, |rule, pattern| {
            if rule.allow {
                covers(pattern, &filter, 0)
            } else {
                intersects(pattern, &filter, 0)
            }
        })?;
        rule.allow
            .then(|| rule.max_qos.map_or(qos, |max| qos.min(max)))
    }

    /// The first rule for `action` whose subject holds, whose placeholders fill, and which `test`
    /// accepts with its filled pattern.
    fn first(
        &self,
        who: &Who<'_>,
        action: Action,
        test: impl Fn(&Rule, &[L<'_>]) -> bool,
    ) -> Option<&Rule> {
        let mut filled: Vec<String> = Vec::new();
        self.rules.iter().find(|rule| {
            if rule.actions & action as u8 == 0 || !holds(&rule.subject, who) {
                return false;
            }
            filled.clear();
            for level in &rule.pattern {
                if let Level::Text(pieces) = level {
                    match fill(pieces, who) {
                        Some(text) => filled.push(text),
                        None => return false,
                    }
                }
            }
            let mut texts = filled.iter();
            let pattern: Vec<L<'_>> = rule
                .pattern
                .iter()
                .map(|level| match level {
                    Level::Plus => L::Plus,
                    Level::Hash => L::Hash,
                    Level::Text(_) => L::Lit(texts.next().map_or("", String::as_str)),
                })
                .collect();
            test(rule, &pattern)
        })
    }
}

/// A topic or filter level.
fn level_of(level: &str) -> L<'_> {
    match level {
        "+" => L::Plus,
        "#" => L::Hash,
        text => L::Lit(text),
    }
}

/// Whether every subject term holds for `who`.
fn holds(subject: &[Term], who: &Who<'_>) -> bool {
    subject.iter().all(|term| match term {
        Term::User(g) => who.username.is_some_and(|u| glob::matches(g, u)),
        Term::Client(g) => glob::matches(g, who.client_id),
        Term::Tenant(g) => who.tenant.is_some_and(|t| glob::matches(g, t)),
        Term::Claim(name, g) => who
            .claims
            .iter()
            .any(|(n, v)| n == name && glob::matches(g, v)),
        Term::Anonymous => who.username.is_none(),
    })
}

/// A level with its placeholders filled, or `None` if one cannot be filled safely.
fn fill(pieces: &[Piece], who: &Who<'_>) -> Option<String> {
    let mut out = String::new();
    for piece in pieces {
        let value = match piece {
            Piece::Literal(text) => {
                out.push_str(text);
                continue;
            }
            Piece::ClientId => Some(who.client_id),
            Piece::Username => who.username,
            Piece::Tenant => who.tenant,
        }?;
        if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
            return None;
        }
        out.push_str(value);
    }
    Some(out)
}

/// Whether a wildcard of the pattern at `depth` may stand for `level` (not a `$` level first).
fn wildcard_ok(depth: usize, level: &str) -> bool {
    depth > 0 || !level.starts_with('$')
}

/// MQTT topic matching of a filled pattern against a topic name.
fn matches_topic(pattern: &[L<'_>], topic: &[&str]) -> bool {
    fn go(p: &[L<'_>], t: &[&str], depth: usize) -> bool {
        match (p.first(), t.first()) {
            (Some(L::Hash), first) => first.is_none_or(|l| wildcard_ok(depth, l)),
            (None, None) => true,
            (None, Some(_)) | (Some(_), None) => false,
            (Some(L::Plus), Some(l)) => wildcard_ok(depth, l) && go(&p[1..], &t[1..], depth + 1),
            (Some(L::Lit(x)), Some(l)) => x == l && go(&p[1..], &t[1..], depth + 1),
        }
    }
    go(pattern, topic, 0)
}

/// Whether every topic `filter` matches is matched by `pattern`.
fn covers(pattern: &[L<'_>], filter: &[L<'_>], depth: usize) -> bool {
    match (pattern.first(), filter.first()) {
        // `#` matches everything from here (the parent level included), unless the filter names
        // a `$` topic at the first level.
        (Some(L::Hash), Some(L::Lit(l))) => wildcard_ok(depth, l),
        (Some(L::Hash), _) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        // A filter's `#` also matches the parent level, except at the first level, where there is
        // none and `$` topics are out of its reach: there `+/#` covers it too.
        (Some(L::Plus), Some(L::Hash)) => depth == 0 && pattern.get(1) == Some(&L::Hash),
        (Some(_), Some(L::Hash)) => false,
        (Some(L::Plus), Some(L::Plus)) => covers(&pattern[1..], &filter[1..], depth + 1),
        (Some(L::Lit(_)), Some(L::Plus)) => false,
        (Some(L::Plus), Some(L::Lit(l))) => {
            wildcard_ok(depth, l) && covers(&pattern[1..], &filter[1..], depth + 1)
        }
        (Some(L::Lit(x)), Some(L::Lit(l))) => {
            x == l && covers(&pattern[1..], &filter[1..], depth + 1)
        }
    }
}

/// Whether some topic is matched by both `pattern` and `filter` (both filters).
fn intersects(pattern: &[L<'_>], filter: &[L<'_>], depth: usize) -> bool {
    match (pattern.first(), filter.first()) {
        (Some(L::Hash), Some(L::Lit(l))) | (Some(L::Lit(l)), Some(L::Hash)) => {
            wildcard_ok(depth, l)
        }
        (Some(L::Hash), _) | (_, Some(L::Hash)) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(L::Plus), Some(L::Plus)) => intersects(&pattern[1..], &filter[1..], depth + 1),
        (Some(L::Plus), Some(L::Lit(l))) | (Some(L::Lit(l)), Some(L::Plus)) => {
            wildcard_ok(depth, l) && intersects(&pattern[1..], &filter[1..], depth + 1)
        }
        (Some(L::Lit(x)), Some(L::Lit(l))) => {
            x == l && intersects(&pattern[1..], &filter[1..], depth + 1)
        }
    }
}

#[cfg(test)]
mod tests;
