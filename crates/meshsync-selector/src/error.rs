//! The one error type: where parsing stopped and why.

/// A selector syntax error. `position` is a byte offset into the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {position}")]
pub struct ParseError {
    /// Byte offset of the offending input (always on a UTF-8 character boundary).
    pub position: usize,
    /// Human-readable description, e.g. `expected operator after label`.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}
