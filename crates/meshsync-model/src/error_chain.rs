//! [`error_chain`]: an error and every error under it, on one line.
//!
//! Transport errors say little at the top (`transport error`) and the reason at the bottom
//! (`Connection refused`); a log line or a status message wants both. Errors that already repeat
//! their source in their own text (`cannot read ca.pem: No such file`) would print it twice if
//! the chain were simply joined, so a source whose text is already there is skipped. Here, beside
//! [`crate::LogSafe`], because every meshsync crate that talks over the network can use it: the
//! agent, and the etcd client.

/// `e` and its [`source`](std::error::Error::source)s, joined by `: `; a source whose text is
/// already contained in what came before is left out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(&'static str, std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn joins_sources_and_skips_repeats() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            error_chain(&Outer("transport error", refused())),
            "transport error: refused"
        );
        assert_eq!(
            error_chain(&Outer("cannot read ca.pem: refused", refused())),
            "cannot read ca.pem: refused"
        );
        assert_eq!(error_chain(&refused()), "refused");
    }
}
