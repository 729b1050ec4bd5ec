//! Access control lists: a small rule language (see `docs/acl.md`), compiled once when the file
//! is loaded so the engine can check every PUBLISH, SUBSCRIBE and will cheaply.
//!
//! ```text
//! # One rule per line: (allow|deny) SUBJECT ACTIONS "TOPIC" [qos <= 0|1|2]
//! allow user "mobile-*" publish "telemetry/%c/data" qos <= 1
//! deny all subscribe "$SYS/#"
//! allow client "sensor-*" publish,retain "sensors/%c/#"
//! ```
//!
//! Semantics:
//! - Rules are tried in file order; the first that applies decides. None applying means deny
//!   (an engine without an ACL checks nothing at all).
//! - A rule applies only if its subject holds (`all`, or every one of its `user`, `client`,
//!   `tenant`, `claim` and `anonymous` terms; `*` in a glob matches any run of characters), it
//!   lists the action checked, and its placeholders (`%c`, `%u`, `%t`) can be filled. A missing or
//!   empty value, or one holding `/`, `+`, `#` or NUL, makes the rule not apply, so a client id
//!   like `a/#` can never widen `devices/%c` (or narrow a deny rule's reach to nothing useful).
//! - Publish: the filled pattern must match the topic by MQTT matching (`a/#` matches `a`; a `+` or
//!   `#` at the first level never matches a topic starting with `$`, MQTT 3.1.1 §4.7.2). An allow
//!   rule capped with `qos <= N` applies only to publishes at QoS N or below: a publish above the
//!   cap goes on to the following rules. A retained publish must also be allowed for `retain`, by
//!   a separate first-match pass over the rules listing `retain` (caps apply the same way).
//! - Subscribe (the filter without its `$share/group/` prefix): an allow rule applies if its
//!   pattern covers the filter (matches every topic the filter can match), a deny rule if it
//!   intersects the filter (some topic matches both): a deny on `secret/#` refuses `#` and `+/x`
//!   even when a later rule allows `#`. The QoS granted is the one asked, lowered to the allow
//!   rule's cap.
//!
//! Checks allocate nothing: topics and filters are walked level by level, placeholders compared
//! in place (`matching.rs`). Globs are matched in linear time (`limits::glob`), since the text they
//! are matched against comes from clients. `reference` holds a deliberately naive second
//! implementation that the property tests compare against.

mod lex;
mod matching;
mod parse;
mod pattern;
#[cfg(any(test, feature = "sim"))]
#[doc(hidden)]
pub mod reference;

pub use parse::AclError;

use crate::codec::QoS;

use matching::Values;

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
///
/// This and the other rule types below are the parsed form of a file: public (and hidden) only so
/// that the reference implementation and tools outside the engine can read them.
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
    /// The placeholders `pattern` uses (a mask from `matching::placeholder_bits`), so a check
    /// skips a rule it cannot fill without looking at its levels.
    placeholders: u8,
}

/// A compiled ACL: the rules of one file, in order.
///
/// Each rule's topic pattern is already split into levels with its placeholders parsed, so a
/// check walks the rules and compares level by level without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// Parses and compiles an ACL file.
    ///
    /// # Errors
    /// The first mistake in the text, with its line and column (see [`AclError`]).
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        Ok(Acl {
            rules: parse::parse(text)?,
        })
    }

    /// The parsed rules, in file order: for the reference implementation and tools.
    #[doc(hidden)]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none (so everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `who` may publish to `topic` (a topic name, no wildcards) at `qos`, retained or
    /// not. A retained publish needs both a `publish` and a `retain` permission.
    pub fn may_publish(&self, who: &Who<'_>, topic: &str, qos: QoS, retain: bool) -> bool {
        let values = Values::of(who);
        let decide = |action: Action| {
            self.first(who, &values, action, |rule| {
                // A capped allow rule says nothing about publishes above its cap: later rules do.
                !(rule.allow && rule.max_qos.is_some_and(|max| qos > max))
                    && matching::matches_topic(&rule.pattern, &values, topic)
            })
            .is_some_and(|rule| rule.allow)
        };
        decide(Action::Publish) && (!retain || decide(Action::Retain))
    }

    /// The QoS `who` is granted for a subscription to `filter` (a plain filter, `$share/...`
    /// already stripped) asked at `qos`, or `None` if denied.
    ///
    /// An allow rule must cover the filter (match every topic it can match); a deny rule refuses
    /// it as soon as they overlap, so a wide filter cannot reach a denied topic.
    pub fn may_subscribe(&self, who: &Who<'_>, filter: &str, qos: QoS) -> Option<QoS> {
        let values = Values::of(who);
        let rule = self.first(who, &values, Action::Subscribe, |rule| {
            if rule.allow {
                matching::covers(&rule.pattern, &values, filter)
            } else {
                matching::intersects(&rule.pattern, &values, filter)
            }
        })?;
        rule.allow
            .then(|| rule.max_qos.map_or(qos, |max| qos.min(max)))
    }

    /// The first rule listing `action` whose placeholders can be filled, whose subject holds, and
    /// which `test` accepts.
    fn first(
        &self,
        who: &Who<'_>,
        values: &Values<'_>,
        action: Action,
        test: impl Fn(&Rule) -> bool,
    ) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            rule.actions & action as u8 != 0
                && values.fill(rule.placeholders)
                && matching::holds(&rule.subject, who)
                && test(rule)
        })
    }
}

#[cfg(test)]
mod tests;
