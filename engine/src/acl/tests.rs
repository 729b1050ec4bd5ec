use super::*;

fn who<'a>(client_id: &'a str, username: Option<&'a str>) -> Who<'a> {
    Who {
        client_id,
        username,
        tenant: None,
        claims: &[],
    }
}

fn acl(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

#[test]
fn subjects() {
    let a = acl("allow user \"mobile-*\" publish \"u\"\n\
         allow client \"dev-?\" publish \"c\"\n\
         allow anonymous publish \"anon\"\n\
         allow user \"alice\" client \"alice-*\" publish \"both\"\n");
    assert!(a.may_publish(&who("x", Some("mobile-1")), "u", Q0, false));
    assert!(!a.may_publish(&who("x", Some("desk-1")), "u", Q0, false));
    assert!(
        !a.may_publish(&who("x", None), "u", Q0, false),
        "no user, no user rule"
    );
    assert!(
        a.may_publish(&who("dev-?", None), "c", Q0, false),
        "only * is special"
    );
    assert!(!a.may_publish(&who("dev-1", None), "c", Q0, false));
    assert!(a.may_publish(&who("x", None), "anon", Q0, false));
    assert!(!a.may_publish(&who("x", Some("u")), "anon", Q0, false));
    assert!(a.may_publish(&who("alice-1", Some("alice")), "both", Q0, false));
    assert!(!a.may_publish(&who("bob-1", Some("alice")), "both", Q0, false));
}

#[test]
fn tenants_and_claims() {
    let a =
        acl("allow tenant \"acme\" publish \"t\"\nallow claim \"role\" \"adm*\" publish \"c\"\n");
    let claims = vec![
        ("role".to_string(), "user".to_string()),
        ("role".to_string(), "admin".to_string()),
    ];
    let w = Who {
        client_id: "x",
        username: Some("u"),
        tenant: Some("acme"),
        claims: &claims,
    };
    assert!(a.may_publish(&w, "t", Q0, false));
    assert!(a.may_publish(&w, "c", Q0, false), "any value of the claim");
    let none = who("x", Some("u"));
    assert!(!a.may_publish(&none, "t", Q0, false));
    assert!(!a.may_publish(&none, "c", Q0, false));
}

#[test]
fn actions_first_match_and_default_deny() {
    let a = acl("deny all publish \"a/secret\"\nallow all publish,subscribe \"a/#\"\n");
    let w = who("c", None);
    assert!(
        !a.may_publish(&w, "a/secret", Q0, false),
        "the deny comes first"
    );
    assert!(a.may_publish(&w, "a/other", Q0, false));
    assert!(!a.may_publish(&w, "b", Q0, false), "nothing matches: deny");
    assert_eq!(
        a.may_subscribe(&w, "a/secret", Q1),
        Some(Q1),
        "the deny is for publish only"
    );
    assert!(
        !a.may_publish(&w, "a/x", Q0, true),
        "retaining needs `retain`"
    );
}

#[test]
fn retain_needs_both_permissions() {
    let a = acl("allow all publish \"#\"\nallow all retain \"keep/#\"\n");
    let w = who("c", None);
    assert!(a.may_publish(&w, "keep/x", Q1, true));
    assert!(!a.may_publish(&w, "other", Q1, true));
    assert!(a.may_publish(&w, "other", Q1, false));
    let only_retain = acl("allow all retain \"#\"\n");
    assert!(!only_retain.may_publish(&w, "x", Q0, true));
}

#[test]
fn qos_caps() {
    let a = acl(
        "allow all publish \"capped\" qos <= 1\nallow all subscribe \"capped/#\" qos <= 0\nallow all subscribe \"#\"\n",
    );
    let w = who("c", None);
    assert!(a.may_publish(&w, "capped", Q1, false));
    assert!(
        !a.may_publish(&w, "capped", Q2, false),
        "above the cap, no later rule allows"
    );
    assert_eq!(a.may_subscribe(&w, "capped/x", Q2), Some(Q0));
    assert_eq!(a.may_subscribe(&w, "free", Q2), Some(Q2));
}

#[test]
fn placeholders_and_injection() {
    let a = acl("allow all publish \"devices/%c/#\"\nallow all publish \"users/%u\"\nallow all publish \"x/pre-%c-post\"\nallow all publish \"pct/%%c\"\n");
    assert!(a.may_publish(&who("d1", None), "devices/d1/t", Q0, false));
    assert!(!a.may_publish(&who("d1", None), "devices/d2/t", Q0, false));
    assert!(a.may_publish(&who("d1", None), "x/pre-d1-post", Q0, false));
    assert!(a.may_publish(&who("d1", None), "pct/%c", Q0, false));
    assert!(a.may_publish(&who("d1", Some("bob")), "users/bob", Q0, false));
    assert!(
        !a.may_publish(&who("d1", None), "users/", Q0, false),
        "no user name: no rule"
    );
    // A client id with wildcards or separators never widens a pattern.
    for evil in ["#", "+", "a/b", ""] {
        assert!(
            !a.may_publish(&who(evil, None), &format!("devices/{evil}/t"), Q0, false),
            "{evil:?}"
        );
        assert!(
            !a.may_publish(&who(evil, None), "devices/other/t", Q0, false),
            "{evil:?}"
        );
    }
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let a = acl("allow all publish,subscribe \"#\"\nallow all subscribe \"+/x\"\n");
    let w = who("c", None);
    assert!(!a.may_publish(&w, "$SYS/x", Q0, false));
    assert_eq!(a.may_subscribe(&w, "$SYS/#", Q0), None);
    assert_eq!(
        a.may_subscribe(&w, "+/x", Q0),
        Some(Q0),
        "a + filter never reaches $ topics"
    );
    let sys = acl("allow all subscribe \"$SYS/#\"\n");
    assert_eq!(sys.may_subscribe(&w, "$SYS/broker/uptime", Q0), Some(Q0));
}

#[test]
fn allow_covers_and_deny_intersects() {
    let a = acl("allow all subscribe \"a/#\"\n");
    let w = who("c", None);
    for (filter, allowed) in [
        ("a/+/b", true),
        ("a/#", true),
        ("a", true),
        ("a/b", true),
        ("#", false),
        ("+/b", false),
        ("b", false),
    ] {
        assert_eq!(
            a.may_subscribe(&w, filter, Q0).is_some(),
            allowed,
            "{filter}"
        );
    }
    let plus_hash = acl("allow all subscribe \"+/#\"\nallow all subscribe \"a/+/#\"\n");
    assert!(
        plus_hash.may_subscribe(&w, "#", Q0).is_some(),
        "+/# is # without $ topics"
    );
    assert!(
        plus_hash.may_subscribe(&w, "a/#", Q0).is_some(),
        "through the first rule"
    );
    let deeper = acl("allow all subscribe \"a/+/#\"\n");
    assert!(
        deeper.may_subscribe(&w, "a/#", Q0).is_none(),
        "a/# matches a, a/+/# does not"
    );
    let plus = acl("allow all subscribe \"a/+\"\n");
    assert!(plus.may_subscribe(&w, "a/b", Q0).is_some());
    assert!(plus.may_subscribe(&w, "a/+", Q0).is_some());
    assert!(plus.may_subscribe(&w, "a/#", Q0).is_none());
    let deny = acl("deny all subscribe \"secret/#\"\nallow all subscribe \"#\"\n");
    assert!(deny.may_subscribe(&w, "#", Q0).is_none());
    assert!(deny.may_subscribe(&w, "+/x", Q0).is_none());
    assert!(
        deny.may_subscribe(&w, "secret", Q0).is_none(),
        "secret/# matches secret"
    );
    assert!(deny.may_subscribe(&w, "public/x", Q0).is_some());
}

#[test]
fn comments_and_blank_lines() {
    let a = acl("# a comment\n\n   # indented\nallow all publish \"a\" # trailing\n");
    assert_eq!(a.len(), 1);
    assert!(Acl::parse("").expect("empty").is_empty());
}

#[test]
fn errors_name_line_and_column() {
    let cases = [
        ("permit all publish \"a\"", 1, 1, "expected allow or deny"),
        ("allow everyone publish \"a\"", 1, 7, "expected a subject"),
        ("allow all publsh \"a\"", 1, 11, "expected an action"),
        (
            "allow all publish a",
            1,
            19,
            "expected a quoted topic filter",
        ),
        ("allow all publish \"a", 1, 19, "unterminated string"),
        (
            "allow all publish \"a/#/b\"",
            1,
            22,
            "`#` must be the last level",
        ),
        (
            "allow all publish \"a/b+\"",
            1,
            23,
            "must fill a whole level",
        ),
        ("allow all publish \"a/%x\"", 1, 22, "unknown placeholder"),
        ("allow all publish \"\"", 1, 20, "an empty topic"),
        (
            "deny all publish \"a\" qos <= 1",
            1,
            22,
            "only limits what an allow rule grants",
        ),
        ("allow all publish \"a\" qos <= 3", 1, 30, "expected a QoS"),
        (
            "allow all publish \"a\" extra",
            1,
            23,
            "expected `qos <= N`",
        ),
        (
            "allow user publish \"a\"",
            1,
            12,
            "expected a quoted user name pattern",
        ),
        ("\n\nallow all", 3, 10, "expected an action"),
        ("allow all publish \"a\" qos < 1", 1, 27, "expected \"<=\""),
        ("allow all publish \"a\\q\"", 1, 21, "unknown escape"),
    ];
    for (text, line, column, message) in cases {
        let e = Acl::parse(text).expect_err(text);
        assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert!(e
            .to_string()
            .starts_with(&format!("line {line}, column {column}: ")));
    }
}

#[test]
fn pathological_globs_finish() {
    // A backtracking matcher would not finish this in the lifetime of the test run.
    let long = "a".repeat(50_000);
    let a = acl("allow client \"*a*a*a*a*a*a*a*b\" publish \"x\"\n");
    assert!(!a.may_publish(&who(&long, None), "x", Q0, false));
}

#[test]
fn the_reference_agrees_on_the_examples() {
    let a = acl("deny all subscribe \"secret/#\"\nallow user \"u*\" subscribe,publish \"%u/#\" qos <= 1\nallow all subscribe \"+/x\"\n");
    let w = who("c", Some("u1"));
    for filter in ["#", "u1/#", "u1", "secret/x", "+/x", "$SYS/x", "u1/+/z"] {
        for qos in [Q0, Q1, Q2] {
            assert_eq!(
                a.may_subscribe(&w, filter, qos),
                reference::may_subscribe(&a, &w, filter, qos),
                "{filter}"
            );
        }
    }
    for topic in ["u1/a", "u1", "u2/a", "$SYS/x"] {
        for qos in [Q0, Q1, Q2] {
            assert_eq!(
                a.may_publish(&w, topic, qos, false),
                reference::may_publish(&a, &w, topic, qos, false),
                "{topic}"
            );
        }
    }
}
