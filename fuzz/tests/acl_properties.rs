//! Properties of the ACL, checked with bolero (see `codec_properties.rs` for how test time is
//! bounded under `cargo test`):
//!
//! - robustness: `Acl::parse` on arbitrary text never panics, and an error always names a line of
//!   the text and a column within (or just past) it;
//! - agreement: random ACL files built from the language's grammar, asked random questions by
//!   random clients, give the same answers from the compiled matcher as from the naive reference
//!   implementation (`cicada_engine::acl::reference`), which expands placeholders into text and
//!   decides "covers" and "intersects" by brute force over witness topics.

use std::time::Duration;

use arbitrary::Unstructured;
use bolero::check;
use cicada_engine::acl::{reference, Acl, Who};
use cicada_engine::codec::QoS;
use cicada_fuzz::props::Cases;

const TEST_TIME: Duration = Duration::from_secs(3);

#[test]
fn parse_never_panics_and_errors_point_into_the_text() {
    check!().with_test_time(TEST_TIME).for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        if let Err(e) = Acl::parse(&text) {
            let lines: Vec<&str> = text.lines().collect();
            assert!(
                e.line >= 1 && e.line <= lines.len().max(1),
                "{e} for {text:?}"
            );
            let len = lines.get(e.line - 1).map_or(0, |l| l.chars().count());
            assert!(e.column >= 1 && e.column <= len + 1, "{e} for {text:?}");
        }
    });
}

/// Small alphabets, so rules, clients and topics meet often.
const LEVELS: [&str; 7] = ["a", "b", "$SYS", "+", "#", "%c", "%u"];
const NAMES: [&str; 4] = ["a", "b", "a/b", "#"];
const GLOBS: [&str; 4] = ["a", "*", "a*", "b"];
const TOPIC_LEVELS: [&str; 4] = ["a", "b", "$SYS", "c"];
const FILTER_LEVELS: [&str; 5] = ["a", "b", "$SYS", "+", "#"];

fn pick<'a>(u: &mut Unstructured<'_>, items: &[&'a str]) -> arbitrary::Result<&'a str> {
    Ok(items[u.choose_index(items.len())?])
}

/// A slash-separated string of 1–3 levels from `levels`; `#` only last.
fn path(u: &mut Unstructured<'_>, levels: &[&str]) -> arbitrary::Result<String> {
    let n = u.int_in_range(1..=3)?;
    let mut out: Vec<&str> = Vec::new();
    for i in 0..n {
        let mut l = pick(u, levels)?;
        if l == "#" && i + 1 < n {
            l = "+";
        }
        out.push(l);
    }
    Ok(out.join("/"))
}

fn rule(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let allow = u.arbitrary::<bool>()?;
    let subject = match u.int_in_range(0..=4)? {
        0 => "all".to_string(),
        1 => format!("user \"{}\"", pick(u, &GLOBS)?),
        2 => format!("client \"{}\"", pick(u, &GLOBS)?),
        3 => "anonymous".to_string(),
        _ => format!("claim \"role\" \"{}\"", pick(u, &GLOBS)?),
    };
    let mut actions = Vec::new();
    for action in ["publish", "subscribe", "retain"] {
        if u.arbitrary::<bool>()? {
            actions.push(action);
        }
    }
    if actions.is_empty() {
        actions.push("publish");
    }
    let topic = path(u, &LEVELS)?;
    let cap = if allow && u.arbitrary::<bool>()? {
        format!(" qos <= {}", u.int_in_range(0..=2)?)
    } else {
        String::new()
    };
    Ok(format!(
        "{} {subject} {} \"{topic}\"{cap}",
        if allow { "allow" } else { "deny" },
        actions.join(",")
    ))
}

fn qos(u: &mut Unstructured<'_>) -> arbitrary::Result<QoS> {
    Ok(QoS::from_u8(u.int_in_range(0..=2)?).unwrap_or(QoS::AtMostOnce))
}

fn agreement(input: &[u8]) -> arbitrary::Result<bool> {
    let mut u = Unstructured::new(input);
    let n = u.int_in_range(0..=6)?;
    let mut text = String::new();
    for _ in 0..n {
        text.push_str(&rule(&mut u)?);
        text.push('\n');
    }
    let acl = Acl::parse(&text).unwrap_or_else(|e| panic!("generated ACL refused: {e}\n{text}"));
    let claims = vec![("role".to_string(), pick(&mut u, &NAMES)?.to_string())];
    let client_id = pick(&mut u, &NAMES)?;
    let username = if u.arbitrary::<bool>()? {
        Some(pick(&mut u, &NAMES)?)
    } else {
        None
    };
    let who = Who {
        client_id,
        username,
        tenant: None,
        claims: &claims,
    };
    for _ in 0..4 {
        let topic = path(&mut u, &TOPIC_LEVELS)?;
        let (q, retain) = (qos(&mut u)?, u.arbitrary::<bool>()?);
        assert_eq!(
            acl.may_publish(&who, &topic, q, retain),
            reference::may_publish(&acl, &who, &topic, q, retain),
            "publish {topic} {q:?} retain={retain} by {who:?}\n{text}"
        );
        let filter = path(&mut u, &FILTER_LEVELS)?;
        let q = qos(&mut u)?;
        assert_eq!(
            acl.may_subscribe(&who, &filter, q),
            reference::may_subscribe(&acl, &who, &filter, q),
            "subscribe {filter} {q:?} by {who:?}\n{text}"
        );
    }
    Ok(n > 0)
}

#[test]
fn the_compiled_matcher_agrees_with_the_reference() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(agreement(input).unwrap_or(false)));
    cases.assert_some("ACL agreement");
}
