//! [`LogSafe`]: a `Display` for strings that came from the network.
//!
//! Anything a peer sends (a node name, a client version, a subscription type, an error string from
//! a remote datastore) may contain newlines, ANSI escapes or Unicode line separators that would
//! forge or hide log lines, and may be arbitrarily long. Wrap it in `LogSafe` wherever it reaches a
//! log line: control and invisible formatting characters are escaped (`\n`, `\u{1b}`, …), a
//! backslash is doubled so an escape cannot be faked, and the output is cut after
//! [`LogSafe::MAX_CHARS`] characters with a note of the full length.

use std::fmt::{self, Write};

/// A client-supplied string, escaped and bounded for logging. See the module documentation.
#[derive(Clone, Copy)]
pub struct LogSafe<'a>(pub &'a str);

impl LogSafe<'_> {
    /// Characters shown before the rest is elided.
    pub const MAX_CHARS: usize = 256;

    /// Whether `c` is escaped: for output that escapes in its own syntax (JSON's `\uXXXX`).
    pub fn needs_escape(c: char) -> bool {
        needs_escape(c)
    }
}

/// Characters that must never reach a log line raw: C0/C1 controls (newline, escape, …), the
/// Unicode line and paragraph separators, and the bidirectional/zero-width formatting characters
/// that can make a line read differently from what it contains.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == Self::MAX_CHARS {
                return write!(f, "…({} bytes)", self.0.len());
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::LogSafe;

    #[test]
    fn escapes_controls_and_bounds_length() {
        let forged = "n1\n2025-01-01T00:00:00Z  INFO x: Sending in-sync update\u{1b}[2J\u{2028}\\n";
        let shown = LogSafe(forged).to_string();
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(
            shown,
            "n1\\n2025-01-01T00:00:00Z  INFO x: Sending in-sync update\\u{1b}[2J\\u{2028}\\\\n"
        );
        assert_eq!(LogSafe("node-1.example").to_string(), "node-1.example");
        let long = "a".repeat(1 << 20);
        let shown = LogSafe(&long).to_string();
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with("…(1048576 bytes)"));
    }
}
