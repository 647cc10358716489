//! Median and range of one figure over the rounds of `--repeat`.

/// The median, minimum and maximum of the finite values of a figure (rounds where it could not
/// be measured are left out).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: Option<f64>,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// How many rounds had the figure.
    pub(crate) n: usize,
}

impl Spread {
    pub(crate) fn of(values: impl IntoIterator<Item = Option<f64>>) -> Spread {
        let mut v: Vec<f64> = values
            .into_iter()
            .flatten()
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median: Some(median),
            min: v[0],
            max: v[n - 1],
            n,
        }
    }

    /// `median (min–max)`, or just the value when there is one, or `n/a` (the tests' shorthand
    /// for [`Spread::show_with`] without a unit).
    #[cfg(test)]
    pub(crate) fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        self.show_with(fmt, "", 0)
    }

    /// `median (min–max)`, or just the value when there is one, or `n/a`, with `unit` after the range (`5 (4–6) ms`), and `(k of n rounds)` when
    /// only k of the `rounds` had the figure (the others could not measure it, e.g. no step within
    /// limits).
    pub(crate) fn show_with(
        &self,
        fmt: impl Fn(f64) -> String,
        unit: &str,
        rounds: usize,
    ) -> String {
        let Some(m) = self.median else {
            return "n/a".into();
        };
        let mut out = if self.n == 1 || fmt(self.min) == fmt(self.max) {
            format!("{}{unit}", fmt(m))
        } else {
            format!("{} ({}–{}){unit}", fmt(m), fmt(self.min), fmt(self.max))
        };
        if rounds > 1 && self.n < rounds {
            out.push_str(&format!(" ({} of {rounds} rounds)", self.n));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn median_and_range() {
        let s = Spread::of([Some(3.0), None, Some(1.0), Some(f64::NAN), Some(2.0)]);
        assert_eq!((s.median, s.min, s.max, s.n), (Some(2.0), 1.0, 3.0, 3));
        assert_eq!(s.show(|v| format!("{v:.1}")), "2.0 (1.0–3.0)");
        let even = Spread::of([Some(4.0), Some(1.0)]);
        assert_eq!(even.median, Some(2.5));
        assert_eq!(Spread::of([Some(7.0)]).show(|v| format!("{v}")), "7");
        assert_eq!(Spread::of([None]).show(|v| format!("{v}")), "n/a");
        assert_eq!(
            s.show_with(|v| format!("{v:.0}"), " ms", 4),
            "2 (1–3) ms (3 of 4 rounds)"
        );
    }
}
