//! Go's text forms of numbers and durations, as Calico's config processor prints and parses
//! them (`%v` floats, `time.Duration`'s `String` and `ParseDuration`): config values must be the
//! exact strings Felix would get from Typha.

pub(super) const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub(super) const NANOS_PER_MILLI: i64 = 1_000_000;

/// `fmt.Sprintf("%v", d.Seconds())`.
pub(super) fn go_seconds(d: i64) -> String {
    let secs = d / NANOS_PER_SECOND;
    let nanos = d % NANOS_PER_SECOND;
    go_float(secs as f64 + nanos as f64 / 1e9)
}

/// The milliseconds form: `float64(d/ms) + float64(d%ms)/1e6` in `%v`.
pub(super) fn go_millis(d: i64) -> String {
    let ms = d / NANOS_PER_MILLI;
    let rest = d % NANOS_PER_MILLI;
    go_float(ms as f64 + rest as f64 / 1e6)
}

/// Go's `%v` of a float64: the shortest digits that round-trip, in `%e` form when the decimal
/// exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`), else in `%f` form.
pub(super) fn go_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
        .to_owned();
    }
    // Rust's `{:e}` is the shortest round-tripping form too: `-1.2345e6`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= n {
        format!("{digits}{}", "0".repeat((point - n) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

/// The largest magnitude of a Go duration in nanoseconds (`1<<63`, for `-1<<63`).
const DURATION_LIMIT: u64 = 1 << 63;

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`), in nanoseconds.
pub(super) fn go_parse_duration(text: &str) -> Option<i64> {
    let mut s = text.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (v, rest) = duration_segment(s)?;
        s = rest;
        // Go's uint64 wraps here (two segments of exactly 2^63 ns add up to 0); so does this.
        total = total.wrapping_add(v);
        if total > DURATION_LIMIT {
            return None;
        }
    }
    if neg {
        // -(1<<63) is representable.
        return Some((total as i64).wrapping_neg());
    }
    i64::try_from(total).ok()
}

/// One `<number><unit>` segment of a duration (the body of `ParseDuration`'s loop): its value in
/// nanoseconds and the text after it.
fn duration_segment(s: &[u8]) -> Option<(u64, &[u8])> {
    if !s.first().is_some_and(|&c| c == b'.' || c.is_ascii_digit()) {
        return None;
    }
    // The integer part.
    let (mut v, digits) = leading_int(s)?;
    let pre = digits > 0;
    let mut s = &s[digits..];
    // The fraction.
    let (mut f, mut scale, mut post) = (0, 1.0, false);
    if s.first() == Some(&b'.') {
        let digits;
        (f, scale, digits) = leading_fraction(&s[1..]);
        post = digits > 0;
        s = &s[1 + digits..];
    }
    if !pre && !post {
        return None;
    }
    // The unit.
    let end = s
        .iter()
        .position(|&c| c == b'.' || c.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let unit = duration_unit(&s[..end])?;
    if v > DURATION_LIMIT / unit {
        return None;
    }
    v *= unit;
    if f > 0 {
        v += (f as f64 * (unit as f64 / scale)) as u64;
        if v > DURATION_LIMIT {
            return None;
        }
    }
    Some((v, &s[end..]))
}

/// Go's `leadingInt`: the value of the leading digits and how many there are; `None` past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if v > DURATION_LIMIT / 10 {
            return None;
        }
        v = v * 10 + u64::from(s[i] - b'0');
        if v > DURATION_LIMIT {
            return None;
        }
        i += 1;
    }
    Some((v, i))
}

/// Go's `leadingFraction`: the leading digits as a value and its scale (10^digits kept), and how
/// many digits there are. Digits past the point where the value would overflow are skipped.
fn leading_fraction(s: &[u8]) -> (u64, f64, usize) {
    let mut f: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut i = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        if !overflow {
            if f > (DURATION_LIMIT - 1) / 10 {
                overflow = true;
            } else {
                let y = f * 10 + u64::from(s[i] - b'0');
                if y > DURATION_LIMIT {
                    overflow = true;
                } else {
                    f = y;
                    scale *= 10.0;
                }
            }
        }
        i += 1;
    }
    (f, scale, i)
}

/// Go's `unitMap`: a duration unit's length in nanoseconds.
fn duration_unit(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        // `µs` as U+00B5 and as U+03BC.
        b"us" | [0xc2, 0xb5, b's'] | [0xce, 0xbc, b's'] => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60_000_000_000,
        b"h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn go_duration_string(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    // `v / 10^prec` with the fraction's trailing zeros (and a bare point) dropped.
    let with_fraction = |v: u64, prec: u32| {
        let scale = 10u64.pow(prec);
        let (int, frac) = (v / scale, v % scale);
        if frac == 0 {
            int.to_string()
        } else {
            let frac = format!("{frac:0width$}", width = prec as usize);
            format!("{int}.{}", frac.trim_end_matches('0'))
        }
    };
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".to_owned(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        return format!("{sign}{}{unit}", with_fraction(u, prec));
    }
    let seconds = with_fraction(u % 60_000_000_000, 9);
    let minutes = u / 60_000_000_000;
    if minutes == 0 {
        return format!("{sign}{seconds}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{sign}{}m{seconds}s", minutes % 60);
    }
    format!("{sign}{hours}h{}m{seconds}s", minutes % 60)
}
