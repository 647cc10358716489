//! Calico's selector language pinned by vectors: the unique IDs Calico computes, worked examples
//! (evaluation and canonical form), and the edge cases a parser must accept or refuse.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, HashMap};

use meshsync_selector::{Selector, parse};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(s: &str) -> Selector {
    parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn assert_round_trip(s: &Selector) {
    let again = sel(&s.canonical());
    assert_eq!(again.canonical(), s.canonical());
    assert_eq!(again.unique_id(), s.unique_id());
}

#[test]
fn unique_id_vectors() {
    for (canonical, uid) in [
        ("all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        (
            "!(has(b) || !has(a))",
            "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q",
        ),
        (
            "!(a == \"b\" && !c != \"d\")",
            "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w",
        ),
        ("a == \"b\"", "s:flMh0m0X_BowkAK_W3j3MgH8oQOsj3WxGDoXCQ"),
    ] {
        let s = sel(canonical);
        assert_eq!(s.canonical(), canonical);
        assert_eq!(s.unique_id(), uid, "{canonical}");
        assert_round_trip(&s);
    }
}

#[test]
fn rendering_rules() {
    for (input, canonical) in [
        ("has(k)", "has(k)"),
        ("global()", "global()"),
        ("k!='v'", "k != \"v\""),
        ("k contains 'v'", "k contains \"v\""),
        ("k startswith 'v'", "k starts with \"v\""),
        ("k ends   with 'v'", "k ends with \"v\""),
        ("k notin {'b','a'}", "k not in {\"a\", \"b\"}"),
        ("k == 'say \"hi\"'", "k == 'say \"hi\"'"),
    ] {
        let s = sel(input);
        assert_eq!(s.canonical(), canonical, "{input}");
        assert_round_trip(&s);
    }
    for (input, canonical) in [
        ("has(a) && has(b) && has(c)", "(has(a) && has(b) && has(c))"),
        ("has(a) || has(b) || has(c)", "(has(a) || has(b) || has(c))"),
        ("(a == \"b\")", "a == \"b\""),
        ("!(a == \"b\")", "!a == \"b\""),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("!(!has(a))", "has(a)"),
        (
            "(has(a) && has(b)) && has(c)",
            "((has(a) && has(b)) && has(c))",
        ),
        ("!all()", "!all()"),
    ] {
        let s = sel(input);
        assert_eq!(s.canonical(), canonical, "{input}");
        assert_round_trip(&s);
    }
}

#[test]
fn worked_examples_table() {
    let l1 = labels(&[("app", "web"), ("tier", "fe"), ("env", "prod")]);
    let l2 = labels(&[("app", "db"), ("env", ""), ("k8s-app", "kube-dns")]);
    let l3 = labels(&[]);
    // (selector, L1, L2, L3, canonical or "" when not given)
    let rows: &[(&str, bool, bool, bool, &str)] = &[
        ("app == 'web'", true, false, false, "app == \"web\""),
        ("app != \"web\"", false, true, true, "app != \"web\""),
        ("has(env)", true, true, false, "has(env)"),
        ("!has(tier)", false, true, true, "!has(tier)"),
        ("env == \"\"", false, true, false, "env == \"\""),
        (
            "app in {\"db\",\"web\",\"db\"}",
            true,
            true,
            false,
            "app in {\"db\", \"web\"}",
        ),
        (
            "app not in {\"web\"}",
            false,
            true,
            true,
            "app not in {\"web\"}",
        ),
        (
            "k8s-app starts with \"kube\"",
            false,
            true,
            false,
            "k8s-app starts with \"kube\"",
        ),
        (
            "app contains \"e\"",
            true,
            false,
            false,
            "app contains \"e\"",
        ),
        (
            "app ends with \"b\"",
            true,
            true,
            false,
            "app ends with \"b\"",
        ),
        (
            "app == \"web\" && env == \"prod\" || has(k8s-app)",
            true,
            true,
            false,
            "((app == \"web\" && env == \"prod\") || has(k8s-app))",
        ),
        (
            "!(tier == \"fe\" || !has(app))",
            false,
            true,
            false,
            "!(tier == \"fe\" || !has(app))",
        ),
        ("!!has(app)", true, true, false, "has(app)"),
        ("!!!has(app)", false, false, true, "!has(app)"),
        ("", true, true, true, "all()"),
        ("  ", true, true, true, "all()"),
        ("all()", true, true, true, "all()"),
        ("a in {}", false, false, false, "a in {}"),
        ("a not in {}", true, true, true, "a not in {}"),
        (
            "app in {\"'\", '\"'}",
            false,
            false,
            false,
            "app in {'\"', \"'\"}",
        ),
    ];
    for &(input, e1, e2, e3, canonical) in rows {
        let s = sel(input);
        assert_eq!(s.evaluate(&l1), e1, "{input} on L1");
        assert_eq!(s.evaluate(&l2), e2, "{input} on L2");
        assert_eq!(s.evaluate(&l3), e3, "{input} on L3");
        assert_eq!(s.canonical(), canonical, "{input}");
        assert_round_trip(&s);
        // HashMap gives the same answers.
        let h: HashMap<String, String> = l2.clone().into_iter().collect();
        assert_eq!(s.evaluate(&h), e2, "{input} on L2 (HashMap)");
    }
    let quoted = sel("app in {\"'\", '\"'}");
    assert!(quoted.evaluate(&labels(&[("app", "'")])));
    assert!(quoted.evaluate(&labels(&[("app", "\"")])));
}

#[test]
fn semantics_table() {
    let empty = labels(&[("k", "")]);
    assert!(sel("has(k)").evaluate(&empty));
    assert!(sel("global()").evaluate(&labels(&[])));
    assert!(!sel("!global()").evaluate(&labels(&[])));
    assert!(!sel("!all()").evaluate(&labels(&[("a", "b")])));
    assert!(sel("k contains \"\"").evaluate(&empty));
    assert!(!sel("k contains \"\"").evaluate(&labels(&[])));
    assert!(sel("k == 'A'").evaluate(&labels(&[("k", "A")])));
    assert!(!sel("k == 'A'").evaluate(&labels(&[("k", "a")])));
    assert!(sel("!a == \"x\" && b == \"y\"").evaluate(&labels(&[("b", "y")])));
}

#[test]
fn valid_edge_cases() {
    let long = "k".repeat(512);
    let cases = [
        ("a==\"b\"", "a == \"b\""),
        ("a  not  in  {\"x\"}", "a not in {\"x\"}"),
        ("a notin {\"x\"}", "a not in {\"x\"}"),
        ("label startswith \"v\"", "label starts with \"v\""),
        ("has( calico/k8s_ns )", "has(calico/k8s_ns)"),
        (
            "contains contains 'contains'",
            "contains contains \"contains\"",
        ),
        ("in in {\"x\"}", "in in {\"x\"}"),
        ("(all())", "all()"),
        ("a in {\"x\",}", "a in {\"x\"}"),
        ("a in{\"x\"}", "a in {\"x\"}"),
        ("a contains\"x\"", "a contains \"x\""),
        ("! !!has(a)", "!has(a)"),
        ("!! ! !has(a)", "has(a)"),
        ("all( )", "all()"),
        ("\thas(a)\t&&\tb == \"c\"", "(has(a) && b == \"c\")"),
        (
            "calico/k8s_NS-.1/role == '1'",
            "calico/k8s_NS-.1/role == \"1\"",
        ),
        ("1abc == 'x' || - == 'y'", "(1abc == \"x\" || - == \"y\")"),
        ("a == \"line\nbreak é\"", "a == \"line\nbreak é\""),
    ];
    for (input, canonical) in cases {
        let s = sel(input);
        assert_eq!(s.canonical(), canonical, "{input:?}");
        assert_round_trip(&s);
    }
    let s = sel(&format!("{long} == 'v'"));
    assert_eq!(s.canonical(), format!("{long} == \"v\""));
    assert_round_trip(&s);
    assert_eq!(
        sel(&format!("has({long})")).canonical(),
        format!("has({long})")
    );
}

#[test]
fn invalid_edge_cases() {
    let long = "k".repeat(513);
    let long_eq = format!("{long} == 'v'");
    let long_has = format!("has({long})");
    // (input, expected error position, substring of the message)
    let cases: Vec<(&str, usize, &str)> = vec![
        ("b == b", 5, "expected string"),
        ("'b1' == b", 0, "expected identifier"),
        ("b", 1, "expected operator after label"),
        ("a b", 2, "expected operator after label"),
        ("!", 1, "unexpected end"),
        ("foo == \"bar\" &", 13, "&&"),
        ("foo == \"bar\" |", 13, "||"),
        ("foo != ||", 7, "expected string"),
        ("foo in {\"\", ||", 12, "expected string literal or }"),
        ("foo in \"\"", 7, "expected set literal"),
        ("\"FOO", 0, "unterminated string"),
        ("'FOO", 0, "unterminated string"),
        ("\"FOO'", 0, "unterminated string"),
        ("(", 1, "unexpected end"),
        ("(a == \"foo\"", 11, "expected )"),
        (")", 0, "expected identifier"),
        ("()", 1, "expected identifier"),
        ("%", 0, "expected identifier"),
        ("a == \"b\" && %", 12, "expected identifier"),
        ("a ", 2, "expected operator after label"),
        ("has(foo) &&", 11, "unexpected end"),
        ("label = \"v\"", 6, "=="),
        ("all(", 4, "expected )"),
        ("global(", 7, "expected )"),
        ("has()", 4, "expected identifier"),
        ("has(foo", 7, "expected )"),
        ("has (foo)", 4, "expected operator after label"),
        ("a inf \"v\"", 2, "expected operator after label"),
        ("a ends withs \"..\"", 2, "expected operator after label"),
        ("label squiggles \"v\"", 6, "expected operator after label"),
        (&long_eq, 0, "label too long"),
        (&long_has, 4, "label too long"),
        ("a == \"b\"\n&& has(c)", 8, ""),
        ("a ==\n\"b\"", 4, ""),
        ("\nhas(a)", 0, "expected identifier"),
        ("a in {,}", 6, "expected }"),
        ("a in {\"x\" \"y\"}", 10, "expected }"),
        ("a == \"b\" c", 9, "unexpected content at end of selector"),
        ("\"b\" == a", 0, "expected identifier"),
        ("a == \"x\" é", 9, "unexpected character"),
        ("é", 0, "expected identifier"),
    ];
    for (input, position, message) in cases {
        match parse(input) {
            Ok(s) => panic!("{input:?} should fail, parsed as {s}"),
            Err(e) => {
                assert_eq!(e.position, position, "{input:?}: {e}");
                assert!(e.message.contains(message), "{input:?}: {e}");
                assert!(e.to_string().contains(&position.to_string()));
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(parse(&deep).is_err());
    let ok = format!("{}has(a){}", "(".repeat(200), ")".repeat(200));
    assert_eq!(sel(&ok).canonical(), "has(a)");
    let nots = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(sel(&nots).canonical(), "!has(a)");
}
