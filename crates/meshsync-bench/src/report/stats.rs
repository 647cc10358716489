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

    /// `median (min–max)`, or just the value when there is one, or `n/a`.
    pub(crate) fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        match self.median {
            None => "n/a".into(),
            Some(m) if self.n == 1 || fmt(self.min) == fmt(self.max) => fmt(m),
            Some(m) => format!("{} ({}–{})", fmt(m), fmt(self.min), fmt(self.max)),
        }
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
    }
}
