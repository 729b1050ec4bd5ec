//! Properties of the ACL, checked with bolero.
//!
//! Under `cargo test` each property runs bolero's random engine for [`TEST_TIME`] (override with
//! `BOLERO_RANDOM_TEST_TIME_MS`); under `cargo bolero test` the same targets run with a fuzzer.
//!
//! - robustness: `Acl::parse` never panics, on arbitrary text or on a valid file with one random
//!   edit, and an error always names a line of the text and a column within (or just past) it;
//! - agreement: random ACL files built from the language's grammar, asked random questions by
//!   random clients, give the same answers from the compiled matcher as from the naive reference
//!   implementation (`cicada_engine::acl::reference`), which expands placeholders into text and
//!   decides "covers" and "intersects" by brute force over witness topics.
//!
//! The alphabets are tiny on purpose, so that rules, clients, topics and filters meet often: the
//! levels include `$SYS`, both wildcards and the placeholders, and the client's values include the
//! ones a placeholder must refuse (`a/b`, `#`, `+`, the empty string) and a `$` value.

use std::time::Duration;

use arbitrary::Unstructured;
use bolero::check;
use cicada_engine::acl::{reference, Acl, AclError, Who};
use cicada_engine::codec::QoS;
use cicada_fuzz::props::{scripts, Cases};

/// How long each bolero property runs under `cargo test`.
const TEST_TIME: Duration = Duration::from_secs(2);

/// Levels of generated patterns, topics and filters. Placeholders in topics and filters are filled
/// with the asking client's values (see [`fill`]), so that questions often name what rules are
/// about.
const LITERALS: [&str; 4] = ["a", "b", "", "$SYS"];
const PLACEHOLDERS: [&str; 5] = ["%c", "%u", "%t", "x%c", "%u-%c"];
const WILDCARDS: [&str; 2] = ["+", "#"];
/// Client ids, user names, tenants and claim values.
const VALUES: [&str; 7] = ["a", "b", "a/b", "#", "+", "", "$SYS"];
/// Subject globs.
const GLOBS: [&str; 5] = ["a", "*", "a*", "*b", ""];

/// Checks that an error points into `text`.
fn assert_points_into(text: &str, e: &AclError) {
    let lines: Vec<&str> = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .collect();
    assert!(
        e.line >= 1 && e.line <= lines.len().max(1),
        "{e} for {text:?}"
    );
    let len = lines.get(e.line - 1).map_or(0, |l| l.chars().count());
    assert!(e.column >= 1 && e.column <= len + 1, "{e} for {text:?}");
    assert!(e
        .to_string()
        .starts_with(&format!("line {}, column {}: ", e.line, e.column)));
}

#[test]
fn parse_never_panics_and_errors_point_into_the_text() {
    check!().with_test_time(TEST_TIME).for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        if let Err(e) = Acl::parse(&text) {
            assert_points_into(&text, &e);
        }
    });
}

/// Characters a random edit inserts: the language's punctuation, quotes, escapes, placeholders,
/// wildcards, a multi-byte character, NUL and line breaks.
const EDITS: [char; 16] = [
    '"', '\\', ',', '<', '=', '#', '+', '/', '%', 'c', ' ', '\n', '\r', '\0', 'é', '3',
];

#[test]
fn parse_survives_one_edit_of_a_valid_file() {
    let cases = Cases::new();
    check!()
        .with_generator(scripts())
        .with_test_time(TEST_TIME)
        .for_each(|input: &Vec<u8>| {
            let edited = edited_file(input);
            cases.record(edited.is_ok());
            if let Ok(text) = edited {
                if let Err(e) = Acl::parse(&text) {
                    assert_points_into(&text, &e);
                }
            }
        });
    cases.assert_some("edited files");
}

/// A valid file with one character removed, replaced or inserted.
fn edited_file(input: &[u8]) -> arbitrary::Result<String> {
    let mut u = Unstructured::new(input);
    let mut chars: Vec<char> = file(&mut u)?.0.chars().collect();
    let at = u.int_in_range(0..=chars.len())?;
    let c = *u.choose(&EDITS)?;
    match u.int_in_range(0..=2)? {
        0 if at < chars.len() => {
            chars.remove(at);
        }
        1 if at < chars.len() => chars[at] = c,
        _ => chars.insert(at, c),
    }
    Ok(chars.into_iter().collect())
}

fn pick<'a>(u: &mut Unstructured<'_>, items: &[&'a str]) -> arbitrary::Result<&'a str> {
    Ok(*u.choose(items)?)
}

/// One level: a literal, a placeholder or (if `wildcards`) a wildcard, each kind as likely.
fn level(u: &mut Unstructured<'_>, wildcards: bool) -> arbitrary::Result<&'static str> {
    match u.int_in_range(0..=2)? {
        0 => pick(u, &LITERALS),
        1 => pick(u, &PLACEHOLDERS),
        _ if wildcards => pick(u, &WILDCARDS),
        _ => pick(u, &LITERALS),
    }
}

/// Makes `levels` a valid topic filter (or topic name, without `wildcards`): a `#` before the
/// end becomes `+`, wildcards become `a` in topic names, and a lone empty level becomes `a`.
fn valid(levels: &mut Vec<&'static str>, wildcards: bool) {
    if levels.is_empty() {
        levels.push("a");
    }
    let last = levels.len() - 1;
    for (i, level) in levels.iter_mut().enumerate() {
        if !wildcards && WILDCARDS.contains(level) {
            *level = "a";
        } else if *level == "#" && i < last {
            *level = "+";
        }
    }
    if levels == &[""] {
        levels[0] = "a";
    }
}

/// 1–3 random levels.
fn path(u: &mut Unstructured<'_>, wildcards: bool) -> arbitrary::Result<Vec<&'static str>> {
    let mut levels = Vec::new();
    for _ in 0..u.int_in_range(1..=3)? {
        levels.push(level(u, wildcards)?);
    }
    valid(&mut levels, wildcards);
    Ok(levels)
}

/// One subject term.
fn term(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=4)? {
        0 => format!("user \"{}\"", pick(u, &GLOBS)?),
        1 => format!("client \"{}\"", pick(u, &GLOBS)?),
        2 => format!("tenant \"{}\"", pick(u, &GLOBS)?),
        3 => format!("claim \"role\" \"{}\"", pick(u, &GLOBS)?),
        _ => "anonymous".to_string(),
    })
}

/// One valid rule, and its pattern's levels.
fn rule(u: &mut Unstructured<'_>) -> arbitrary::Result<(String, Vec<&'static str>)> {
    let allow = u.arbitrary::<bool>()?;
    let subject = match u.int_in_range(0..=2)? {
        0 => "all".to_string(),
        1 => term(u)?,
        _ => format!("{} {}", term(u)?, term(u)?),
    };
    let mut actions = Vec::new();
    for action in ["publish", "subscribe", "retain"] {
        if u.arbitrary::<bool>()? {
            actions.push(action);
        }
    }
    if actions.is_empty() {
        actions.push(*u.choose(&["publish", "subscribe", "retain"])?);
    }
    let pattern = path(u, true)?;
    let cap = if allow && u.arbitrary::<bool>()? {
        format!(" qos <= {}", u.int_in_range(0..=2)?)
    } else {
        String::new()
    };
    let text = format!(
        "{} {subject} {} \"{}\"{cap}",
        if allow { "allow" } else { "deny" },
        actions.join(","),
        pattern.join("/"),
    );
    Ok((text, pattern))
}

/// A valid file of up to five rules, and their patterns.
fn file(u: &mut Unstructured<'_>) -> arbitrary::Result<(String, Vec<Vec<&'static str>>)> {
    let mut text = String::new();
    let mut patterns = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let (rule, pattern) = rule(u)?;
        text.push_str(&rule);
        text.push('\n');
        patterns.push(pattern);
    }
    Ok((text, patterns))
}

/// A topic name (without `wildcards`) or filter to ask about: half the time one of the rules'
/// patterns with a level replaced, added or removed, or widened with `#` (near misses are where
/// matchers go wrong), otherwise random levels.
fn question(
    u: &mut Unstructured<'_>,
    patterns: &[Vec<&'static str>],
    who: &Who<'_>,
    wildcards: bool,
) -> arbitrary::Result<String> {
    let mut levels = match u.choose(patterns) {
        Ok(pattern) if u.arbitrary::<bool>()? => {
            let mut levels = pattern.clone();
            let at = u.choose_index(levels.len())?;
            match u.int_in_range(0..=4)? {
                0 => {}
                1 => levels[at] = level(u, wildcards)?,
                // Widen from `at` on.
                2 => {
                    levels.truncate(at);
                    levels.push("#");
                }
                3 => levels.push(level(u, wildcards)?),
                _ => {
                    levels.pop();
                }
            }
            levels
        }
        _ => path(u, wildcards)?,
    };
    valid(&mut levels, wildcards);
    Ok(fill(&levels.join("/"), who))
}

/// Fills the placeholders of a generated topic or filter with `who`'s values; a value that would
/// make it invalid (or that is missing) becomes `z`.
fn fill(path: &str, who: &Who<'_>) -> String {
    fn usable(value: Option<&str>) -> &str {
        value
            .filter(|v| !v.is_empty() && !v.contains(['/', '+', '#']))
            .unwrap_or("z")
    }
    path.replace("%c", usable(Some(who.client_id)))
        .replace("%u", usable(who.username))
        .replace("%t", usable(who.tenant))
}

fn qos(u: &mut Unstructured<'_>) -> arbitrary::Result<QoS> {
    Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])?)
}

fn maybe<'a>(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<&'a str>> {
    Ok(if u.arbitrary::<bool>()? {
        Some(pick(u, &VALUES)?)
    } else {
        None
    })
}

/// Runs one random file against one random client; `Ok(true)` if the file had rules.
fn agreement(input: &[u8]) -> arbitrary::Result<bool> {
    let mut u = Unstructured::new(input);
    let (mut text, patterns) = file(&mut u)?;
    // Half the files end by allowing everything, so that a deny rule that wrongly fails to apply
    // changes an answer instead of falling through to the default deny.
    if u.arbitrary::<bool>()? {
        text.push_str("allow all publish,subscribe,retain \"#\"\n");
    }
    let acl = Acl::parse(&text).unwrap_or_else(|e| panic!("generated ACL refused: {e}\n{text}"));
    let claims: Vec<(String, String)> = match maybe(&mut u)? {
        Some(value) => vec![("role".into(), value.into())],
        None => Vec::new(),
    };
    let who = Who {
        client_id: pick(&mut u, &VALUES)?,
        username: maybe(&mut u)?,
        tenant: maybe(&mut u)?,
        claims: &claims,
    };
    for _ in 0..4 {
        let topic = question(&mut u, &patterns, &who, false)?;
        let (q, retain) = (qos(&mut u)?, u.arbitrary::<bool>()?);
        assert_eq!(
            acl.may_publish(&who, &topic, q, retain),
            reference::may_publish(&acl, &who, &topic, q, retain),
            "publish {topic} {q:?} retain={retain} by {who:?}\n{text}"
        );
        let filter = question(&mut u, &patterns, &who, true)?;
        let q = qos(&mut u)?;
        assert_eq!(
            acl.may_subscribe(&who, &filter, q),
            reference::may_subscribe(&acl, &who, &filter, q),
            "subscribe {filter} {q:?} by {who:?}\n{text}"
        );
    }
    Ok(!acl.is_empty())
}

#[test]
fn the_compiled_matcher_agrees_with_the_reference() {
    let cases = Cases::new();
    // Long inputs: a file, a client and four questions take a few hundred bytes of choices, and
    // bolero's default inputs (at most 64 bytes) would leave the questions at their defaults.
    check!()
        .with_generator(scripts())
        .with_test_time(TEST_TIME)
        .for_each(|input: &Vec<u8>| cases.record(agreement(input).unwrap_or(false)));
    cases.assert_some("ACL agreement");
}
