//! Numbers as the charts print them: about three significant digits, thousands separators, and
//! short axis labels (`20k`, `1.5M`).

/// About three significant digits.
pub(super) fn sig3(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "n/a".into()
    } else if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A count with thousands separators (the report's formatter).
pub(super) fn fmt_count(n: usize) -> String {
    crate::report::format::int(n as u64)
}

/// Axis numbers: `k`/`M` suffixes from 10,000 on, otherwise up to 3 decimals, trailing zeros off.
pub(super) fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{scaled:.3}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    let s = if s == "-0" { "0" } else { s };
    format!("{s}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers() {
        assert_eq!(fmt_axis(0.1), "0.1");
        assert_eq!(fmt_axis(1000.0), "1000");
        assert_eq!(fmt_axis(20_000.0), "20k");
        assert_eq!(fmt_axis(1_500_000.0), "1.5M");
        assert_eq!(fmt_axis(0.6000000000000001), "0.6");
        assert_eq!(sig3(19.64), "19.6");
        assert_eq!(sig3(0.5), "0.500");
    }
}
