//! A parsed selector with its canonical form and unique ID computed once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha224};

use crate::ast::Expr;
use crate::labels::Labels;

/// A selector ready for evaluation. The canonical text and unique ID are computed at construction,
/// because callers use them as map keys far more often than selectors are built.
#[derive(Clone, Debug)]
pub struct Selector {
    expr: Expr,
    canonical: String,
    unique_id: String,
}

impl Selector {
    /// Wraps a syntax tree (for example one rewritten by the caller). See [`crate::ast`] for when
    /// the canonical form of a hand-built tree re-parses.
    pub fn from_expr(expr: Expr) -> Self {
        let canonical = crate::render::canonical(&expr);
        let digest = Sha224::digest(format!("s:{canonical}").as_bytes());
        let unique_id = format!("s:{}", URL_SAFE_NO_PAD.encode(digest));
        Self {
            expr,
            canonical,
            unique_id,
        }
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Consumes the selector, returning its syntax tree.
    pub fn into_expr(self) -> Expr {
        self.expr
    }

    /// Whether `labels` match. Allocates nothing.
    pub fn evaluate(&self, labels: &impl Labels) -> bool {
        self.expr.evaluate(labels)
    }

    /// The canonical rendering (Calico's `String()`), e.g. `((a == "b" && has(c)) || !d in {"x"})`.
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// Borrowing form of [`Selector::canonical`].
    pub fn canonical_str(&self) -> &str {
        &self.canonical
    }

    /// `"s:" + base64url_nopad(SHA-224("s:" + canonical))`, Calico's `UniqueID()`.
    pub fn unique_id(&self) -> String {
        self.unique_id.clone()
    }

    /// Borrowing form of [`Selector::unique_id`].
    pub fn unique_id_str(&self) -> &str {
        &self.unique_id
    }
}

impl PartialEq for Selector {
    /// Two selectors are equal when their canonical forms are.
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Selector {}

impl std::hash::Hash for Selector {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl std::str::FromStr for Selector {
    type Err = crate::ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::parse(s)
    }
}
