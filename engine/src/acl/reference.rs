//! A deliberately naive second implementation of the ACL semantics, for property tests: the
//! pattern is expanded into text, topics are matched by a plain matcher written from the MQTT
//! specification, and "covers" and "intersects" are decided by brute force over every witness
//! topic that can tell the two filters apart (built from the literal levels of both sides, a fresh
//! level and a fresh `$` level, at every depth up to one past the longer side). Slow, and shares
//! no code with the compiled matcher, which is the point.

use crate::codec::QoS;

use super::{Acl, Action, Level, Piece, Rule, Term, Who};

/// Whether `who` may publish.
pub fn may_publish(acl: &Acl, who: &Who<'_>, topic: &str, qos: QoS, retain: bool) -> bool {
    let decide = |action: Action| {
        for rule in acl.rules() {
            if !applies(rule, who, action) {
                continue;
            }
            let Some(pattern) = expand(rule, who) else {
                continue;
            };
            if rule.allow && rule.max_qos.is_some_and(|m| qos > m) {
                continue;
            }
            if topic_matches(&pattern, topic) {
                return rule.allow;
            }
        }
        false
    };
    decide(Action::Publish) && (!retain || decide(Action::Retain))
}

/// The QoS granted, or `None`.
pub fn may_subscribe(acl: &Acl, who: &Who<'_>, filter: &str, qos: QoS) -> Option<QoS> {
    for rule in acl.rules() {
        if !applies(rule, who, Action::Subscribe) {
            continue;
        }
        let Some(pattern) = expand(rule, who) else {
            continue;
        };
        let witnesses = witnesses(&pattern, filter);
        let hit = if rule.allow {
            witnesses
                .iter()
                .filter(|t| topic_matches(filter, t))
                .all(|t| topic_matches(&pattern, t))
        } else {
            witnesses
                .iter()
                .any(|t| topic_matches(filter, t) && topic_matches(&pattern, t))
        };
        if hit {
            return rule
                .allow
                .then(|| rule.max_qos.map_or(qos, |m| if qos > m { m } else { qos }));
        }
    }
    None
}

fn applies(rule: &Rule, who: &Who<'_>, action: Action) -> bool {
    if rule.actions & action as u8 == 0 {
        return false;
    }
    rule.subject.iter().all(|term| match term {
        Term::User(g) => who.username.is_some_and(|u| glob(g, u)),
        Term::Client(g) => glob(g, who.client_id),
        Term::Tenant(g) => who.tenant.is_some_and(|t| glob(g, t)),
        Term::Claim(n, g) => who.claims.iter().any(|(k, v)| k == n && glob(g, v)),
        Term::Anonymous => who.username.is_none(),
    })
}

/// The pattern as text with placeholders replaced, or `None` if one cannot be.
fn expand(rule: &Rule, who: &Who<'_>) -> Option<String> {
    let mut levels = Vec::new();
    for level in &rule.pattern {
        levels.push(match level {
            Level::Plus => "+".to_string(),
            Level::Hash => "#".to_string(),
            Level::Text(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    let v = match p {
                        Piece::Literal(t) => {
                            s += t;
                            continue;
                        }
                        Piece::ClientId => who.client_id,
                        Piece::Username => who.username?,
                        Piece::Tenant => who.tenant?,
                    };
                    if v.is_empty() || v.chars().any(|c| "/+#\0".contains(c)) {
                        return None;
                    }
                    s += v;
                }
                s
            }
        });
    }
    Some(levels.join("/"))
}

/// `*` globs by recursion (fine for the short strings of tests).
fn glob(p: &str, t: &str) -> bool {
    match p.chars().next() {
        None => t.is_empty(),
        Some('*') => (0..=t.len())
            .filter(|i| t.is_char_boundary(*i))
            .any(|i| glob(&p[1..], &t[i..])),
        Some(c) => t.starts_with(c) && glob(&p[c.len_utf8()..], &t[c.len_utf8()..]),
    }
}

/// MQTT matching of a filter against a topic name, straight from the specification.
fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    let mut i = 0;
    loop {
        match (f.get(i), t.get(i)) {
            (Some(&"#"), _) => return true,
            (None, None) => return true,
            (Some(&"+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            // `a/#` also matches `a`.
            (Some(_), None) => return f.get(i) == Some(&"#"),
            _ => return false,
        }
        i += 1;
    }
}

/// Every topic that could tell `a` and `b` apart.
fn witnesses(a: &str, b: &str) -> Vec<String> {
    let mut alphabet: Vec<String> = a
        .split('/')
        .chain(b.split('/'))
        .filter(|l| *l != "+" && *l != "#")
        .map(str::to_string)
        .collect();
    // Longer than every level named, so different from all of them, and not a `$` level; then
    // its `$` twin.
    let fresh = format!("x{}", alphabet.concat());
    alphabet.push(format!("${fresh}"));
    alphabet.push(fresh);
    alphabet.sort();
    alphabet.dedup();
    let depth = a.split('/').count().max(b.split('/').count()) + 1;
    let mut out: Vec<String> = Vec::new();
    let mut layer: Vec<String> = vec![String::new()];
    for d in 0..depth {
        let mut next = Vec::new();
        for prefix in &layer {
            for l in &alphabet {
                next.push(if d == 0 {
                    l.clone()
                } else {
                    format!("{prefix}/{l}")
                });
            }
        }
        out.extend(next.iter().cloned());
        layer = next;
    }
    out
}
