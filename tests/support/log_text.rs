//! Reading the real binary's text-format log lines (`<time>  INFO <target>: <message> <fields>`):
//! operators grep these, so tests match the message exactly and read fields by name.

/// The message of a text-format log line is exactly `message` (followed by nothing or by fields).
pub fn text_message_is(line: &str, message: &str) -> bool {
    let Some(after_level) = ["  INFO ", "  WARN ", " ERROR ", " DEBUG ", " TRACE "]
        .iter()
        .find_map(|level| line.split_once(level).map(|(_, rest)| rest))
    else {
        return false;
    };
    let Some((_target, rest)) = after_level.split_once(": ") else {
        return false;
    };
    rest == message
        || rest
            .strip_prefix(message)
            .is_some_and(|fields| fields.starts_with(' '))
}

/// The value of `name=` in a text-format log line.
pub fn text_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(name)?.strip_prefix('='))
}
