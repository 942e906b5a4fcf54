//! Percentiles of latency samples (nanoseconds), nearest-rank on a sorted copy.

/// Sorted samples in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<u64>,
}

impl Samples {
    /// Sorts `values` once for every percentile asked later.
    pub fn new(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        Self { sorted: values }
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `p`-th percentile (0–100), nearest rank; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.sorted.is_empty() {
            return 0;
        }
        let n = self.sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        self.sorted[index]
    }

    /// The median.
    pub fn p50(&self) -> u64 {
        self.percentile(50.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> u64 {
        self.percentile(99.0)
    }

    /// The largest sample.
    pub fn max(&self) -> u64 {
        self.sorted.last().copied().unwrap_or(0)
    }
}

/// Nanoseconds as microseconds with one decimal, or as milliseconds from 10 ms up.
pub fn us(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.1} ms", ns as f64 / 1_000_000.0)
    } else {
        format!("{:.1} µs", ns as f64 / 1_000.0)
    }
}

/// A signed difference of two nanosecond values, like [`us`].
pub fn us_diff(a: u64, b: u64) -> String {
    let d = a as f64 - b as f64;
    if d.abs() >= 10_000_000.0 {
        format!("{:+.1} ms", d / 1_000_000.0)
    } else {
        format!("{:+.1} µs", d / 1_000.0)
    }
}

/// Nanoseconds as milliseconds with two decimals.
pub fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Samples::new((1..=100).rev().collect());
        assert_eq!(s.p50(), 50);
        assert_eq!(s.p99(), 99);
        assert_eq!(s.percentile(100.0), 100);
        assert_eq!(s.percentile(0.0), 1);
        assert_eq!(s.max(), 100);
        assert_eq!(Samples::new(vec![]).p99(), 0);
    }

    #[test]
    fn formats() {
        assert_eq!(us(1_500), "1.5 µs");
        assert_eq!(us(12_340_000), "12.3 ms");
        assert_eq!(us_diff(1_000, 3_000), "-2.0 µs");
        assert_eq!(us_diff(30_000_000, 0), "+30.0 ms");
        assert_eq!(ms(2_500_000), "2.50 ms");
    }
}
