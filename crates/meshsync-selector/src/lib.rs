//! The Calico selector language: the grammar is in `parser`, the canonical form in `render`.
//!
//! A selector such as `app == "web" && !has(canary)` picks endpoints by their labels. meshsync needs
//! three things from it, and each shapes the design:
//!
//! * **Exact Calico compatibility of the canonical form and unique ID.** Calico identifies a
//!   selector by `"s:" + base64url(SHA-224("s:" + canonical))`, so the renderer (`render.rs`) must
//!   reproduce Calico's canonical text byte for byte: flattened `&&`/`||` chains wrapped in
//!   parentheses, `!` collapsed by parity, set members de-duplicated and sorted.
//! * **Errors are values, for any input.** Selectors arrive from the datastore and from users. The
//!   lexer (`lexer.rs`) works on bytes with an explicit cursor, never indexes past the end and only
//!   slices the input at ASCII bytes (always UTF-8 boundaries), so arbitrary text yields a
//!   [`ParseError`] with a byte offset rather than a panic.
//! * **Cheap evaluation.** A selector is parsed once and evaluated against many label sets. The
//!   AST ([`ast`]) stores `in`/`not in` sets sorted and de-duplicated so membership is a binary
//!   search, and [`Selector::evaluate`] allocates nothing.
//!
//! The language is context sensitive (function names are only recognised where an operand is
//! expected, operator keywords only straight after a label), so the lexer is driven by the parser
//! (`parser.rs`) with an explicit mode instead of producing a token stream up front.

pub mod ast;
mod error;
pub mod labels;
mod lexer;
mod parser;
mod render;
mod selector;

pub use ast::{Expr, ValueSet};
pub use error::ParseError;
pub use labels::Labels;
pub use selector::Selector;

/// Parses a selector. Empty or whitespace-only input is `all()`.
pub fn parse(input: &str) -> Result<Selector, ParseError> {
    parser::parse(input).map(Selector::from_expr)
}
