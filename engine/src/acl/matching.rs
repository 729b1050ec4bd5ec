//! Deciding whether one compiled rule applies, without allocating.
//!
//! Every check runs on the hot path (each PUBLISH, each subscription), so nothing here builds a
//! string or a vector: topics and filters are walked with `split('/')`, and a pattern level with
//! placeholders is compared with a topic level piece by piece (`devices/%c` against `devices/d1`
//! checks that `d1` starts with the client id and nothing is left over), never expanded.
//!
//! Topics and filters line up level by level until a `#`, which can only come last on either
//! side, so every walk below is a single pass: no backtracking, time linear in the levels.

use crate::limits::glob;

use super::{Level, Piece, Term, Who};

/// Bits of a placeholder mask (see [`placeholder_bits`]).
const CLIENT_ID: u8 = 1;
const USERNAME: u8 = 2;
const TENANT: u8 = 4;

/// The values placeholders take for one client, each `None` where it cannot be used: missing,
/// empty, or holding a character that would change the pattern's shape (`/`, `+`, `#`) or that no
/// topic may contain (NUL). Computed once per check, not once per rule.
#[derive(Clone, Copy, Debug)]
pub(super) struct Values<'a> {
    client_id: Option<&'a str>,
    username: Option<&'a str>,
    tenant: Option<&'a str>,
}

impl<'a> Values<'a> {
    /// The usable values of `who`.
    pub(super) fn of(who: &Who<'a>) -> Values<'a> {
        let usable = |value: Option<&'a str>| {
            value.filter(|v| !v.is_empty() && !v.contains(['/', '+', '#', '\0']))
        };
        Values {
            client_id: usable(Some(who.client_id)),
            username: usable(who.username),
            tenant: usable(who.tenant),
        }
    }

    /// Whether every placeholder in `uses` (a [`placeholder_bits`] mask) has a usable value.
    pub(super) fn fill(&self, uses: u8) -> bool {
        let missing = [
            (self.client_id, CLIENT_ID),
            (self.username, USERNAME),
            (self.tenant, TENANT),
        ]
        .iter()
        .filter(|(value, _)| value.is_none())
        .fold(0, |mask, (_, bit)| mask | bit);
        uses & missing == 0
    }

    /// The text `piece` stands for; `None` only for a placeholder without a usable value.
    fn text<'p>(&self, piece: &'p Piece) -> Option<&'p str>
    where
        'a: 'p,
    {
        match piece {
            Piece::Literal(text) => Some(text),
            Piece::ClientId => self.client_id,
            Piece::Username => self.username,
            Piece::Tenant => self.tenant,
        }
    }
}

/// The placeholders a pattern uses, as a mask of [`CLIENT_ID`], [`USERNAME`] and [`TENANT`]:
/// computed once at parse time so a check can skip a rule it cannot fill in one comparison.
pub(super) fn placeholder_bits(pattern: &[Level]) -> u8 {
    pattern
        .iter()
        .filter_map(|level| match level {
            Level::Text(pieces) => Some(pieces),
            Level::Plus | Level::Hash => None,
        })
        .flatten()
        .fold(0, |mask, piece| {
            mask | match piece {
                Piece::Literal(_) => 0,
                Piece::ClientId => CLIENT_ID,
                Piece::Username => USERNAME,
                Piece::Tenant => TENANT,
            }
        })
}

/// Whether every subject term holds for `who` (no terms: `all`).
pub(super) fn holds(subject: &[Term], who: &Who<'_>) -> bool {
    subject.iter().all(|term| match term {
        Term::User(pattern) => who.username.is_some_and(|u| glob::matches(pattern, u)),
        Term::Client(pattern) => glob::matches(pattern, who.client_id),
        Term::Tenant(pattern) => who.tenant.is_some_and(|t| glob::matches(pattern, t)),
        Term::Claim(name, pattern) => who
            .claims
            .iter()
            .any(|(n, v)| n == name && glob::matches(pattern, v)),
        Term::Anonymous => who.username.is_none(),
    })
}

/// Whether the filled pattern level `pieces` is exactly `level`.
fn text_is(pieces: &[Piece], values: &Values<'_>, level: &str) -> bool {
    let mut rest = level;
    for piece in pieces {
        match values.text(piece).and_then(|part| rest.strip_prefix(part)) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Whether the filled pattern level `pieces` starts with `$`. Placeholder values are never empty,
/// so the first piece decides (a level made of one empty literal is the empty level).
fn text_is_dollar(pieces: &[Piece], values: &Values<'_>) -> bool {
    pieces
        .first()
        .and_then(|piece| values.text(piece))
        .is_some_and(|text| text.starts_with('$'))
}

/// Whether a wildcard at `depth` may stand for the topic level `level`: MQTT 3.1.1 §4.7.2 keeps
/// topics starting with `$` out of reach of a `+` or `#` at the first level.
fn wildcard_reaches(depth: usize, level: &str) -> bool {
    depth > 0 || !level.starts_with('$')
}

/// A level of a subscription filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter<'a> {
    Plus,
    Hash,
    Text(&'a str),
}

fn filter_levels(filter: &str) -> impl Iterator<Item = Filter<'_>> {
    filter.split('/').map(|level| match level {
        "+" => Filter::Plus,
        "#" => Filter::Hash,
        text => Filter::Text(text),
    })
}

/// Whether the pattern, filled with `values`, matches the topic name `topic`.
pub(super) fn matches_topic(pattern: &[Level], values: &Values<'_>, topic: &str) -> bool {
    let mut topic = topic.split('/');
    for (depth, level) in pattern.iter().enumerate() {
        let next = topic.next();
        let ok = match (level, next) {
            // `a/#` matches `a` too: `#` also stands for the parent level.
            (Level::Hash, None) => return true,
            (Level::Hash, Some(l)) => return wildcard_reaches(depth, l),
            (_, None) => false,
            (Level::Plus, Some(l)) => wildcard_reaches(depth, l),
            (Level::Text(pieces), Some(l)) => text_is(pieces, values, l),
        };
        if !ok {
            return false;
        }
    }
    topic.next().is_none()
}

/// Whether the filled pattern matches every topic `filter` can match, so granting the filter
/// grants nothing the rule does not.
pub(super) fn covers(pattern: &[Level], values: &Values<'_>, filter: &str) -> bool {
    let mut filter = filter_levels(filter);
    for (depth, level) in pattern.iter().enumerate() {
        let Some(f) = filter.next() else {
            // The filter ended first: only a final `#` (which also matches the parent) covers it.
            return *level == Level::Hash;
        };
        let ok = match (level, f) {
            (Level::Hash, Filter::Text(l)) => return wildcard_reaches(depth, l),
            (Level::Hash, Filter::Plus | Filter::Hash) => return true,
            // A filter's `#` matches the parent level too, so only a pattern `#` covers it; except
            // at the first level, where there is no parent and `$` topics are out of the filter's
            // reach: there `+/#` matches exactly what `#` does.
            (Level::Plus, Filter::Hash) => {
                return depth == 0 && pattern.get(1) == Some(&Level::Hash)
            }
            (Level::Text(_), Filter::Hash | Filter::Plus) => false,
            (Level::Plus, Filter::Plus) => true,
            (Level::Plus, Filter::Text(l)) => wildcard_reaches(depth, l),
            (Level::Text(pieces), Filter::Text(l)) => text_is(pieces, values, l),
        };
        if !ok {
            return false;
        }
    }
    filter.next().is_none()
}

/// Whether some topic is matched both by the filled pattern and by `filter`, so a deny rule
/// refuses any filter that could bring it one of its topics.
pub(super) fn intersects(pattern: &[Level], values: &Values<'_>, filter: &str) -> bool {
    let mut filter = filter_levels(filter);
    for (depth, level) in pattern.iter().enumerate() {
        let Some(f) = filter.next() else {
            // The filter ended first: a final `#` in the pattern matches the filter's last level.
            return *level == Level::Hash;
        };
        let ok = match (level, f) {
            (Level::Hash, Filter::Text(l)) => return wildcard_reaches(depth, l),
            (Level::Hash, Filter::Plus | Filter::Hash) | (Level::Plus, Filter::Hash) => {
                return true
            }
            (Level::Text(pieces), Filter::Hash) => {
                return depth > 0 || !text_is_dollar(pieces, values)
            }
            (Level::Plus, Filter::Plus) => true,
            (Level::Plus, Filter::Text(l)) => wildcard_reaches(depth, l),
            (Level::Text(pieces), Filter::Plus) => depth > 0 || !text_is_dollar(pieces, values),
            (Level::Text(pieces), Filter::Text(l)) => text_is(pieces, values, l),
        };
        if !ok {
            return false;
        }
    }
    // The pattern ended first: a final `#` in the filter matches the pattern's last level.
    matches!(filter.next(), None | Some(Filter::Hash))
}
