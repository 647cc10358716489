//! Numbers and text as the Markdown tables print them: fixed digits, thousands separators,
//! milliseconds, `n/a`, and cell-safe one-line text.

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(super) fn num2(v: f64) -> String {
    num(v, 2)
}

pub(super) fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "n/a".into()
    }
}

/// Microseconds as milliseconds with about three significant digits.
pub(super) fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    num(v, digits)
}

/// An integer with thousands separators.
pub(crate) fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub(super) fn int_f(v: f64) -> String {
    if v.is_finite() && v >= 0.0 {
        int(v.round() as u64)
    } else {
        num(v, 0)
    }
}

pub(super) fn or_na(s: &str) -> &str {
    if s.trim().is_empty() { "n/a" } else { s }
}

/// Text safe inside a table cell.
pub(super) fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(int(0), "0");
        assert_eq!(int(1234), "1,234");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(ms(54_000), "54.0");
        assert_eq!(ms(2_100), "2.10");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
