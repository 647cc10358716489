//! The selector syntax tree and its evaluation.
//!
//! The tree is public so callers can build or rewrite selectors (e.g. the syncer's
//! `global()` → `!has(projectcalico.org/namespace)` rewrite). Keys and values are plain strings;
//! a tree built by hand only renders to re-parseable text if its keys are valid label keys and no
//! value contains both `'` and `"` (the language has no escapes).

use crate::labels::Labels;

/// A de-duplicated set of strings kept in byte order, so membership is a binary search and the
/// canonical rendering is simply the stored order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ValueSet(Vec<String>);

impl ValueSet {
    /// Builds a set, sorting and de-duplicating `values`.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut v: Vec<String> = values.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    /// Whether `value` is a member (binary search, no allocation).
    pub fn contains(&self, value: &str) -> bool {
        self.0.binary_search_by(|m| m.as_str().cmp(value)).is_ok()
    }

    /// The members, sorted by byte order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: Into<String>> FromIterator<S> for ValueSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self::new(iter.into_iter().map(Into::into))
    }
}

/// One node of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: evaluates like `all()`; only meaningful to the syncer's namespaceSelector rewrite.
    Global,
    /// `has(k)`: the label is present (even with an empty value).
    Has(String),
    /// `k == "v"`.
    Eq(String, String),
    /// `k != "v"` (true when the label is absent).
    Ne(String, String),
    /// `k contains "v"`.
    Contains(String, String),
    /// `k starts with "v"`.
    StartsWith(String, String),
    /// `k ends with "v"`.
    EndsWith(String, String),
    /// `k in {...}`.
    In(String, ValueSet),
    /// `k not in {...}` (true when the label is absent).
    NotIn(String, ValueSet),
    /// `!X`.
    Not(Box<Expr>),
    /// `A && B && ...`; an empty list is true.
    And(Vec<Expr>),
    /// `A || B || ...`; an empty list is false.
    Or(Vec<Expr>),
}

impl Expr {
    /// `!self`, collapsing a double negation so `!!X` is `X`.
    pub fn negate(self) -> Expr {
        match self {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// Evaluates against `labels`. Short-circuits and allocates nothing.
    pub fn evaluate<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => labels.get(k).is_some(),
            Expr::Eq(k, v) => labels.get(k) == Some(v.as_str()),
            Expr::Ne(k, v) => labels.get(k) != Some(v.as_str()),
            Expr::Contains(k, v) => labels.get(k).is_some_and(|x| x.contains(v.as_str())),
            Expr::StartsWith(k, v) => labels.get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => labels.get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Expr::In(k, set) => labels.get(k).is_some_and(|x| set.contains(x)),
            Expr::NotIn(k, set) => !labels.get(k).is_some_and(|x| set.contains(x)),
            Expr::Not(inner) => !inner.evaluate(labels),
            Expr::And(ops) => ops.iter().all(|e| e.evaluate(labels)),
            Expr::Or(ops) => ops.iter().any(|e| e.evaluate(labels)),
        }
    }
}
