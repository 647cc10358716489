//! Property tests: canonical forms are stable under re-parsing, re-parsing preserves meaning, and
//! `parse` never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;

use meshsync_selector::{Expr, Selector, ValueSet, parse};
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "a",
    "b",
    "app",
    "in",
    "contains",
    "has",
    "all",
    "k8s.io/x-y_z",
    "1",
];
const VALUES: &[&str] = &["", "x", "web", "we", "'", "\"", "a b", "é", "\n", "{,}"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES).prop_map(str::to_owned)
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key().prop_map(Expr::Has),
        (key(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
        (key(), prop::collection::vec(value(), 0..4))
            .prop_map(|(k, v)| Expr::In(k, ValueSet::new(v))),
        (key(), prop::collection::vec(value(), 0..4))
            .prop_map(|(k, v)| Expr::NotIn(k, ValueSet::new(v))),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
            prop::collection::vec(inner, 0..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_is_stable_under_reparsing(e in expr()) {
        let original = Selector::from_expr(e);
        let reparsed = parse(&original.canonical())
            .map_err(|err| TestCaseError::fail(format!("{} failed: {err}", original.canonical())))?;
        prop_assert_eq!(reparsed.canonical(), original.canonical());
        prop_assert_eq!(reparsed.unique_id(), original.unique_id());
        let twice = parse(&reparsed.canonical()).unwrap();
        prop_assert_eq!(twice.canonical(), reparsed.canonical());
    }

    #[test]
    fn reparsing_preserves_meaning(e in expr(), maps in prop::collection::vec(label_map(), 1..8)) {
        let original = Selector::from_expr(e);
        let reparsed = parse(&original.canonical()).unwrap();
        for labels in &maps {
            prop_assert_eq!(reparsed.evaluate(labels), original.evaluate(labels),
                "{} on {:?}", original.canonical(), labels);
        }
    }

    #[test]
    fn parse_never_panics_on_strings(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parse_never_panics_on_selector_like_text(
        parts in prop::collection::vec(prop::sample::select(&[
            "a", "in", "not", "notin", "has(", "all(", "global(", ")", "(", "{", "}", ",", "==", "!=",
            "!", "&&", "||", "&", "|", "=", "\"", "'", "\"x\"", "'y'", " ", "\t", "\n", "contains",
            "starts", "with", "ends", "é", "%",
        ][..]), 0..24)
    ) {
        let s: String = parts.concat();
        if let Err(e) = parse(&s) {
            prop_assert!(e.position <= s.len());
            prop_assert!(s.is_char_boundary(e.position));
        } else {
            let sel = parse(&s).unwrap();
            let again = parse(&sel.canonical()).unwrap();
            prop_assert_eq!(again.canonical(), sel.canonical());
        }
    }
}
