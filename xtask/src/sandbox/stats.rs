//! Summaries of latency samples: nearest-rank percentiles over all samples.

use std::time::Duration;

/// Latencies (ns) and the wall time they took.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    pub latencies_ns: Vec<u64>,
    pub elapsed: Duration,
}

impl Series {
    /// Adds another round's samples; rates are then over the total.
    pub(crate) fn extend(&mut self, other: Series) {
        self.latencies_ns.extend(other.latencies_ns);
        self.elapsed += other.elapsed;
    }

    /// Invokes per second over the whole wall time.
    pub(crate) fn rate(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn median_us(&self) -> f64 {
        percentile(&self.latencies_ns, 50.0) as f64 / 1000.0
    }

    pub(crate) fn p99_us(&self) -> f64 {
        percentile(&self.latencies_ns, 99.0) as f64 / 1000.0
    }
}

/// The nearest-rank percentile `p` (0-100) of `samples`; 0 when empty.
pub(crate) fn percentile(samples: &[u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of durations.
pub(crate) fn median(samples: &[Duration]) -> Duration {
    let ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
    Duration::from_nanos(percentile(&ns, 50.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
