//! One test per rule of the language and of its semantics (see the module docs and
//! `docs/acl.md`), plus an exhaustive comparison with the reference on small filters.

use super::*;

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

fn acl(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn who<'a>(client_id: &'a str, username: Option<&'a str>) -> Who<'a> {
    Who {
        client_id,
        username,
        tenant: None,
        claims: &[],
    }
}

/// A client with id `c` and no user name, tenant or claims.
fn anyone() -> Who<'static> {
    who("c", None)
}

fn publishes(acl: &Acl, who: &Who<'_>, topic: &str) -> bool {
    acl.may_publish(who, topic, Q0, false)
}

fn subscribes(acl: &Acl, who: &Who<'_>, filter: &str) -> bool {
    acl.may_subscribe(who, filter, Q0).is_some()
}

fn error(text: &str) -> String {
    match Acl::parse(text) {
        Ok(acl) => panic!("{text:?} parsed: {acl:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_examples_parse() {
    let a = acl(r##"
allow user "mobile-*" publish "telemetry/%c/data" qos <= 1
deny all subscribe "$SYS/#"
allow client "sensor-*" publish,retain "sensors/%c/#"
allow tenant "acme" subscribe "#"
allow claim "role" "admin" publish,subscribe "#"
allow anonymous subscribe "public/#"
allow user "alice" client "alice-*" subscribe "alice/#" qos <= 2
"##);
    assert_eq!(a.len(), 7);
    assert!(!a.is_empty());
    let rule = &a.rules()[6];
    assert_eq!(
        rule.subject,
        [Term::User("alice".into()), Term::Client("alice-*".into())]
    );
    assert_eq!(rule.actions, Action::Subscribe as u8);
    assert_eq!(rule.max_qos, Some(Q2));
}

#[test]
fn user_terms_need_a_user_name() {
    let a = acl("allow user \"mobile-*\" publish \"t\"\n");
    assert!(publishes(&a, &who("x", Some("mobile-1")), "t"));
    assert!(!publishes(&a, &who("x", Some("desk-1")), "t"));
    assert!(
        !publishes(&a, &who("x", None), "t"),
        "anonymous: no user rule"
    );
    let any = acl("allow user \"*\" publish \"t\"\n");
    assert!(any.may_publish(&who("x", Some("")), "t", Q0, false));
    assert!(
        !publishes(&any, &who("x", None), "t"),
        "* still needs a name"
    );
}

#[test]
fn client_terms() {
    let a = acl("allow client \"sensor-*\" publish \"t\"\n");
    assert!(publishes(&a, &who("sensor-7", None), "t"));
    assert!(publishes(&a, &who("sensor-7", Some("u")), "t"));
    assert!(!publishes(&a, &who("actuator-7", None), "t"));
}

#[test]
fn tenant_terms_need_a_tenant() {
    let a = acl("allow tenant \"acme\" publish \"t\"\n");
    let mut w = anyone();
    assert!(!publishes(&a, &w, "t"));
    w.tenant = Some("acme");
    assert!(publishes(&a, &w, "t"));
    w.tenant = Some("acme2");
    assert!(!publishes(&a, &w, "t"));
}

#[test]
fn claim_terms_need_the_claim() {
    let a = acl("allow claim \"role\" \"adm*\" publish \"t\"\n");
    let claims = [
        ("role".to_string(), "user".to_string()),
        ("role".to_string(), "admin".to_string()),
    ];
    let mut w = anyone();
    assert!(!publishes(&a, &w, "t"), "no claims");
    w.claims = &claims;
    assert!(publishes(&a, &w, "t"), "any value of the claim will do");
    let other = [("group".to_string(), "admin".to_string())];
    w.claims = &other;
    assert!(!publishes(&a, &w, "t"), "another claim's value");
}

#[test]
fn anonymous_terms() {
    let a = acl("allow anonymous publish \"t\"\n");
    assert!(publishes(&a, &who("x", None), "t"));
    assert!(!publishes(&a, &who("x", Some("u")), "t"));
}

#[test]
fn every_term_must_hold() {
    let a = acl("allow user \"alice\" client \"alice-*\" tenant \"t*\" publish \"t\"\n");
    let mut w = who("alice-1", Some("alice"));
    assert!(!publishes(&a, &w, "t"), "no tenant");
    w.tenant = Some("t1");
    assert!(publishes(&a, &w, "t"));
    w.client_id = "bob-1";
    assert!(!publishes(&a, &w, "t"));
    let all = acl("allow all publish \"t\"\n");
    assert!(publishes(&all, &w, "t"));
    assert!(publishes(&all, &who("", None), "t"));
}

#[test]
fn globs_have_only_the_star() {
    let a = acl(r##"allow client "a*b*c" publish "star"
allow client "dev-?" publish "question"
allow client "*" publish "any"
allow client "exact" publish "exact"
"##);
    for (id, topic, allowed) in [
        ("abc", "star", true),
        ("a-b-c", "star", true),
        ("a-b-", "star", false),
        ("xabc", "star", false),
        ("dev-?", "question", true),
        ("dev-1", "question", false),
        ("", "any", true),
        ("exact", "exact", true),
        ("exactly", "exact", false),
    ] {
        assert_eq!(
            publishes(&a, &who(id, None), topic),
            allowed,
            "{id} {topic}"
        );
    }
}

#[test]
fn pathological_globs_finish() {
    // A backtracking matcher would not finish this in the lifetime of the test run.
    let long = "a".repeat(50_000);
    let a = acl("allow client \"*a*a*a*a*a*a*a*b\" publish \"x\"\n");
    assert!(!publishes(&a, &who(&long, None), "x"));
}

#[test]
fn each_action_is_separate() {
    let a = acl("allow all publish \"p\"\nallow all subscribe \"s\"\nallow all publish , subscribe \"both\"\n");
    let w = anyone();
    assert!(publishes(&a, &w, "p"));
    assert!(!subscribes(&a, &w, "p"));
    assert!(subscribes(&a, &w, "s"));
    assert!(!publishes(&a, &w, "s"));
    assert!(publishes(&a, &w, "both"));
    assert!(subscribes(&a, &w, "both"));
}

#[test]
fn retaining_needs_publish_and_retain() {
    let a = acl("allow all publish \"#\"\nallow all retain \"keep/#\"\n");
    let w = anyone();
    assert!(a.may_publish(&w, "keep/x", Q1, true));
    assert!(!a.may_publish(&w, "other", Q1, true), "no retain rule");
    assert!(a.may_publish(&w, "other", Q1, false));
    let only_retain = acl("allow all retain \"#\"\n");
    assert!(
        !only_retain.may_publish(&w, "x", Q0, true),
        "no publish rule"
    );
    assert!(!only_retain.may_publish(&w, "x", Q0, false));
    let denied = acl("deny all retain \"keep/secret\"\nallow all publish,retain \"#\"\n");
    assert!(!denied.may_publish(&w, "keep/secret", Q0, true));
    assert!(denied.may_publish(&w, "keep/secret", Q0, false));
}

#[test]
fn retain_caps_apply_too() {
    let a = acl("allow all publish \"#\"\nallow all retain \"#\" qos <= 0\n");
    let w = anyone();
    assert!(a.may_publish(&w, "x", Q0, true));
    assert!(!a.may_publish(&w, "x", Q1, true));
    assert!(a.may_publish(&w, "x", Q1, false));
}

#[test]
fn publish_caps_pass_to_later_rules() {
    let a =
        acl("allow all publish \"t\" qos <= 1\ndeny all publish \"t\"\nallow all publish \"#\"\n");
    let w = anyone();
    assert!(a.may_publish(&w, "t", Q0, false));
    assert!(a.may_publish(&w, "t", Q1, false));
    assert!(!a.may_publish(&w, "t", Q2, false), "the deny rule decides");
    assert!(a.may_publish(&w, "u", Q2, false));
    let alone = acl("allow all publish \"t\" qos <= 0\n");
    assert!(!alone.may_publish(&w, "t", Q1, false), "then nothing: deny");
}

#[test]
fn subscribe_caps_lower_the_grant() {
    let a = acl("allow all subscribe \"capped/#\" qos <= 1\nallow all subscribe \"#\"\n");
    let w = anyone();
    assert_eq!(a.may_subscribe(&w, "capped/x", Q2), Some(Q1));
    assert_eq!(a.may_subscribe(&w, "capped/x", Q0), Some(Q0));
    assert_eq!(a.may_subscribe(&w, "free", Q2), Some(Q2));
    assert_eq!(
        a.may_subscribe(&w, "#", Q2),
        Some(Q2),
        "the capped rule does not cover #"
    );
}

#[test]
fn the_first_rule_that_applies_decides() {
    let a = acl(
        "deny all publish \"a/secret\"\nallow all publish \"a/#\"\ndeny all publish \"a/late\"\n",
    );
    let w = anyone();
    assert!(!publishes(&a, &w, "a/secret"));
    assert!(publishes(&a, &w, "a/late"), "the allow comes first");
    let reversed = acl("allow all publish \"a/#\"\ndeny all publish \"a/secret\"\n");
    assert!(publishes(&reversed, &w, "a/secret"));
}

#[test]
fn nothing_applying_denies() {
    let w = anyone();
    let empty = acl("# only a comment\n");
    assert!(empty.is_empty());
    assert!(!empty.may_publish(&w, "a", Q0, false));
    assert_eq!(empty.may_subscribe(&w, "a", Q0), None);
    let a = acl("allow all publish \"a\"\n");
    assert!(!publishes(&a, &w, "b"));
    assert!(!subscribes(&a, &w, "a"));
}

#[test]
fn placeholders_are_filled() {
    let a = acl(r##"allow all publish "devices/%c/#"
allow all publish "users/%u"
allow all publish "tenants/%t/x"
allow all publish "x/pre-%c-%u-post"
allow all publish "pct/%%c/100%%"
"##);
    let mut w = who("d1", Some("bob"));
    assert!(publishes(&a, &w, "devices/d1/t"));
    assert!(publishes(&a, &w, "devices/d1"));
    assert!(!publishes(&a, &w, "devices/d2/t"));
    assert!(publishes(&a, &w, "users/bob"));
    assert!(!publishes(&a, &w, "users/bobby"));
    assert!(publishes(&a, &w, "x/pre-d1-bob-post"));
    assert!(!publishes(&a, &w, "x/pre-d1-bob-pos"));
    assert!(publishes(&a, &w, "pct/%c/100%"));
    assert!(!publishes(&a, &w, "pct/d1/100%"));
    assert!(!publishes(&a, &w, "tenants/acme/x"), "no tenant");
    w.tenant = Some("acme");
    assert!(publishes(&a, &w, "tenants/acme/x"));
}

#[test]
fn placeholders_in_subscriptions() {
    let a = acl("deny all subscribe \"%u/private/#\"\nallow all subscribe \"%u/#\"\n");
    let w = who("c", Some("bob"));
    assert!(subscribes(&a, &w, "bob/x"));
    assert!(subscribes(&a, &w, "bob/x/+"));
    assert!(
        !subscribes(&a, &w, "bob/+"),
        "bob/private matches both: # includes its parent"
    );
    assert!(!subscribes(&a, &w, "bob/#"), "bob/# reaches bob/private/x");
    assert!(!subscribes(&a, &w, "bob/+/x"));
    assert!(!subscribes(&a, &w, "alice/x"));
}

#[test]
fn values_that_would_change_a_pattern_make_the_rule_not_apply() {
    let a = acl("allow all publish,subscribe \"devices/%c/#\"\n");
    for evil in ["#", "+", "a/b", "", "a\0b", "x#", "+y"] {
        let w = who(evil, None);
        for topic in [format!("devices/{evil}/t"), "devices/other/t".into()] {
            assert!(!publishes(&a, &w, &topic), "{evil:?} {topic:?}");
        }
        for filter in ["devices/#", "devices/+/t", "#"] {
            assert!(!subscribes(&a, &w, filter), "{evil:?} {filter:?}");
        }
    }
    let user = acl("allow all publish \"u/%u\"\n");
    assert!(!publishes(&user, &who("c", Some("a/b")), "u/a/b"));
    assert!(!publishes(&user, &who("c", Some("")), "u/"));
}

#[test]
fn an_unfillable_deny_rule_does_not_apply_either() {
    // Documented behaviour: a deny keyed on a placeholder only denies clients that have the value.
    let a = acl("deny all publish \"%u/#\"\nallow all publish \"#\"\n");
    assert!(publishes(&a, &who("c", None), "x/y"));
    assert!(!publishes(&a, &who("c", Some("x")), "x/y"));
    let sub = acl("deny all subscribe \"secret/%u/x\"\nallow all subscribe \"#\"\n");
    assert!(subscribes(&sub, &who("c", None), "secret/#"));
    assert!(!subscribes(&sub, &who("c", Some("u")), "secret/#"));
    let tenant = acl("deny all subscribe \"secret/%t/x\"\nallow all subscribe \"#\"\n");
    let mut w = anyone();
    assert!(subscribes(&tenant, &w, "secret/#"));
    w.tenant = Some("acme");
    assert!(!subscribes(&tenant, &w, "secret/#"));
    let client = acl("deny all subscribe \"secret/%c/x\"\nallow all subscribe \"#\"\n");
    assert!(subscribes(&client, &who("", None), "secret/#"));
    assert!(!subscribes(&client, &who("c", None), "secret/#"));
}

#[test]
fn a_dollar_value_is_literal() {
    let a = acl("allow all publish \"%c/#\"\nallow all subscribe \"%c/+\"\n");
    let w = who("$SYS", None);
    assert!(publishes(&a, &w, "$SYS/x"));
    assert!(subscribes(&a, &w, "$SYS/x"));
    assert!(!subscribes(&a, &w, "+/x"));
}

#[test]
fn leading_wildcards_never_reach_dollar_topics() {
    let a = acl("allow all publish,subscribe \"#\"\nallow all publish \"+/x\"\n");
    let w = anyone();
    assert!(!publishes(&a, &w, "$SYS/x"));
    assert!(!publishes(&a, &w, "$SYS"));
    assert!(!subscribes(&a, &w, "$SYS/#"));
    assert!(subscribes(&a, &w, "#"));
    assert!(
        subscribes(&a, &w, "+/x"),
        "a leading + filter never reaches $ topics either"
    );
    let deeper = acl("allow all publish \"a/+\"\nallow all publish \"a/#\"\n");
    assert!(
        publishes(&deeper, &w, "a/$x"),
        "only the first level is special"
    );
    let sys = acl("allow all publish,subscribe \"$SYS/#\"\n");
    assert!(publishes(&sys, &w, "$SYS/broker/uptime"));
    assert!(subscribes(&sys, &w, "$SYS/+/uptime"));
    assert!(!subscribes(&sys, &w, "#"));
}

#[test]
fn deny_rules_on_dollar_topics() {
    let a = acl("deny all subscribe \"$SYS/#\"\nallow all subscribe \"#\"\nallow all subscribe \"$SYS/#\"\n");
    let w = anyone();
    assert!(subscribes(&a, &w, "#"), "# and $SYS/# share no topic");
    assert!(subscribes(&a, &w, "+/uptime"));
    assert!(!subscribes(&a, &w, "$SYS/uptime"));
}

#[test]
fn allow_rules_must_cover_the_filter() {
    let cases: [(&str, &[(&str, bool)]); 5] = [
        (
            "a/#",
            &[
                ("a/+/b", true),
                ("a/#", true),
                ("a", true),
                ("a/b", true),
                ("#", false),
                ("+/b", false),
                ("b", false),
            ],
        ),
        (
            "a/+",
            &[("a/b", true), ("a/+", true), ("a/#", false), ("a", false)],
        ),
        (
            "+/#",
            &[("#", true), ("+", true), ("a/#", true), ("$SYS/#", false)],
        ),
        ("a/+/#", &[("a/#", false), ("a/b/#", true), ("a/+", true)]),
        (
            "#",
            &[
                ("#", true),
                ("+/+", true),
                ("$SYS/x", false),
                ("$SYS/#", false),
            ],
        ),
    ];
    let w = anyone();
    for (pattern, filters) in cases {
        let a = acl(&format!("allow all subscribe \"{pattern}\"\n"));
        for (filter, allowed) in filters {
            assert_eq!(
                subscribes(&a, &w, filter),
                *allowed,
                "{pattern} covers {filter}"
            );
        }
    }
}

#[test]
fn deny_rules_refuse_any_overlap() {
    let a = acl("deny all subscribe \"secret/#\"\nallow all subscribe \"#\"\n");
    let w = anyone();
    for (filter, allowed) in [
        ("#", false),
        ("+/x", false),
        ("+", false),
        ("secret", false),
        ("secret/+/y", false),
        ("public/x", true),
        ("public/#", true),
        ("+/x/y/z", false),
    ] {
        assert_eq!(subscribes(&a, &w, filter), allowed, "{filter}");
    }
    let exact = acl("deny all subscribe \"a/b\"\nallow all subscribe \"#\"\n");
    assert!(subscribes(&exact, &w, "a/b/c"));
    assert!(subscribes(&exact, &w, "a/c"));
    assert!(!subscribes(&exact, &w, "a/#"));
    assert!(!subscribes(&exact, &w, "+/b"));
}

#[test]
fn comments_blank_lines_and_line_endings() {
    let a =
        acl("\u{feff}# a comment\r\n\r\n   # indented\n\tallow all publish \"a\" # trailing\r\n");
    assert_eq!(a.len(), 1);
    assert!(publishes(&a, &anyone(), "a"));
    assert!(acl("").is_empty());
    assert!(acl("\n  \n").is_empty());
}

#[test]
fn quoted_strings_take_escapes() {
    let a = acl(r##"allow client "say \"hi\"" publish "back\\slash/\"q\""
"##);
    assert!(publishes(&a, &who("say \"hi\"", None), "back\\slash/\"q\""));
    assert_eq!(a.rules()[0].subject, [Term::Client("say \"hi\"".into())]);
}

#[test]
fn tokens_need_no_spaces_around_punctuation() {
    let a = acl("allow all publish,subscribe,retain\"a\"qos<=1\n");
    assert_eq!(a.rules()[0].actions, 7);
    assert_eq!(a.rules()[0].max_qos, Some(Q1));
}

#[test]
fn errors_say_where_what_was_expected_and_what_was_found() {
    let cases = [
        (
            "permit all publish \"a\"",
            "line 1, column 1: expected allow or deny, found \"permit\"",
        ),
        (
            "allow everyone publish \"a\"",
            "line 1, column 7: expected a subject (all, user, client, tenant, claim, anonymous), \
             found \"everyone\"",
        ),
        (
            "allow all publsh \"a\"",
            "line 1, column 11: expected an action (publish, subscribe, retain), found \"publsh\"",
        ),
        (
            "allow all publish a",
            "line 1, column 19: expected \",\" or a quoted topic filter, found \"a\"",
        ),
        (
            "allow all publish @",
            "line 1, column 19: expected \",\" or a quoted topic filter, found \"@\"",
        ),
        (
            "allow all publish \"a",
            "line 1, column 19: unterminated string: expected a closing \", found the end of the \
             line",
        ),
        (
            "allow all publish \"a\\q\"",
            "line 1, column 21: expected an escape (\\\" or \\\\), found \"\\q\"",
        ),
        (
            "allow all publish \"a/#/b\"",
            "line 1, column 22: expected \"#\" only as the last level, found more levels after it",
        ),
        (
            "allow all publish \"a/b+\"",
            "line 1, column 23: expected \"+\" alone in its level, found it inside \"b+\"",
        ),
        (
            "allow all publish \"a/%x\"",
            "line 1, column 22: expected a placeholder (%c client id, %u user name, %t tenant, %% \
             a literal %), found \"%x\"",
        ),
        (
            "allow all publish \"a/%\"",
            "line 1, column 22: expected a placeholder (%c client id, %u user name, %t tenant, %% \
             a literal %), found \"%\" at the end of the level",
        ),
        (
            "allow all publish \"a\0\"",
            "line 1, column 21: expected a topic character, found NUL",
        ),
        (
            "allow all publish \"\"",
            "line 1, column 20: expected a topic filter, found an empty string",
        ),
        (
            "deny all publish \"a\" qos <= 1",
            "line 1, column 22: a QoS cap only limits what an allow rule grants; remove it from \
             this deny rule",
        ),
        (
            "allow all publish \"a\" qos <= 3",
            "line 1, column 30: expected a QoS (0, 1 or 2), found \"3\"",
        ),
        (
            "allow all publish \"a\" qos <= 01",
            "line 1, column 30: expected a QoS (0, 1 or 2), found \"01\"",
        ),
        (
            "allow all publish \"a\" qos < 1",
            "line 1, column 27: expected \"<=\", found \"<\"",
        ),
        (
            "allow all publish \"a\" extra",
            "line 1, column 23: expected \"qos <= N\" or the end of the line, found \"extra\"",
        ),
        (
            "allow all publish \"a\" qos <= 1 extra",
            "line 1, column 32: expected the end of the line, found \"extra\"",
        ),
        (
            "allow user publish \"a\"",
            "line 1, column 12: expected a quoted user name glob, found \"publish\"",
        ),
        (
            "allow claim \"role\" publish \"a\"",
            "line 1, column 20: expected a quoted claim value glob, found \"publish\"",
        ),
        (
            "allow user \"a\" bogus publish \"x\"",
            "line 1, column 16: expected another subject term (user, client, tenant, claim, \
             anonymous) or an action (publish, subscribe, retain), found \"bogus\"",
        ),
        (
            "allow all user \"a\" publish \"x\"",
            "line 1, column 11: expected an action (publish, subscribe, retain) after `all`, \
             which stands alone, found \"user\"",
        ),
        (
            "allow all publish,\"a\"",
            "line 1, column 19: expected an action (publish, subscribe, retain), found the string \
             \"a\"",
        ),
        (
            "# comment\nallow all publish \"a\"\n\nallow all",
            "line 4, column 10: expected an action (publish, subscribe, retain), found the end of \
             the line",
        ),
        (
            "allow",
            "line 1, column 6: expected a subject (all, user, client, tenant, claim, anonymous), \
             found the end of the line",
        ),
        // Columns count characters, and point into the line even after escapes.
        (
            "allow all publish \"é\\\\/a+\"",
            "line 1, column 25: expected \"+\" alone in its level, found it inside \"a+\"",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text:?}");
    }
    let e = Acl::parse("\n allow all nothing \"a\"").expect_err("invalid");
    assert_eq!((e.line, e.column), (2, 12));
}

/// Every filter of up to three levels over `a`, `$SYS`, `+` and `#` (`#` last only).
fn small_filters() -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut layer = vec![String::new()];
    for depth in 0..3 {
        let mut next = Vec::new();
        for prefix in &layer {
            for level in ["a", "$SYS", "+", "#"] {
                let filter = if depth == 0 {
                    level.to_string()
                } else {
                    format!("{prefix}/{level}")
                };
                all.push(filter.clone());
                if level != "#" {
                    next.push(filter);
                }
            }
        }
        layer = next;
    }
    all
}

#[test]
fn covers_and_intersects_agree_with_the_reference_on_every_small_filter() {
    let filters = small_filters();
    let w = anyone();
    for pattern in &filters {
        let allow = acl(&format!("allow all subscribe \"{pattern}\" qos <= 1\n"));
        let deny = acl(&format!(
            "deny all subscribe \"{pattern}\"\nallow all subscribe \"#\"\n"
        ));
        for filter in &filters {
            for a in [&allow, &deny] {
                assert_eq!(
                    a.may_subscribe(&w, filter, Q2),
                    reference::may_subscribe(a, &w, filter, Q2),
                    "{pattern} / {filter}"
                );
            }
        }
        for topic in ["a", "a/a", "$SYS/a", "a/$SYS/a", "$SYS"] {
            assert!(
                !publishes(&allow, &w, topic),
                "subscribe rules grant no publish"
            );
            let both = acl(&format!("allow all publish \"{pattern}\"\n"));
            assert_eq!(
                publishes(&both, &w, topic),
                reference::may_publish(&both, &w, topic, Q0, false),
                "{pattern} matches {topic}"
            );
        }
    }
}
