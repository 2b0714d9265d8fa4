//! Summaries of repeated measurements.

use serde::Serialize;

/// A measurement over several runs: the median is the figure the report quotes; the samples
/// are kept so a reader can judge the spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stat {
    /// The middle sample (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// Every sample, in run order.
    pub samples: Vec<f64>,
}

impl Stat {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: Vec<f64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n.is_multiple_of(2) {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        } else {
            sorted[n / 2]
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.samples, [3.0, 1.0, 2.0]);
        assert_eq!(Stat::of(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(vec![]), None);
    }
}
