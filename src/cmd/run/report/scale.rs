//! Time to pixels for the timeline: linear where something happens, with
//! every long idle stretch (the wait for a shutdown deadline, a freeze) cut
//! to a small fixed width, so that sub-millisecond invokes stay visible
//! next to a 2 s shutdown budget.

/// Time to pixels: linear where something happens, with every idle
/// stretch longer than a threshold cut to [`Scale::BREAK_PX`].
#[derive(Debug, Clone)]
pub(super) struct Scale {
    /// Pieces `(t0, t1, x0, x1)`, in order, covering `[0, end]`.
    pieces: Vec<(f64, f64, f64, f64)>,
    /// Where a cut is: its x, and the idle time it stands for.
    pub(super) breaks: Vec<(f64, f64)>,
    /// Whether each piece is a cut.
    cut: Vec<bool>,
}

impl Scale {
    /// The width of a cut idle stretch, px (less when there are many).
    pub(super) const BREAK_PX: f64 = 24.0;

    /// A scale over `width` px for these busy intervals (ms), cutting
    /// idle stretches longer than max(1 ms, a fifth of the busy time).
    pub(super) fn new(busy: &[(f64, f64)], end: f64, width: f64) -> Self {
        let mut spans: Vec<(f64, f64)> = busy
            .iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|&(a, b)| (a.max(0.0), b.max(a).max(0.0)))
            .collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Their union.
        let mut union: Vec<(f64, f64)> = Vec::new();
        for (a, b) in spans {
            match union.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => union.push((a, b)),
            }
        }
        let end = end.max(union.last().map_or(0.0, |u| u.1));
        let busy_ms: f64 = union.iter().map(|(a, b)| b - a).sum();
        let threshold = (busy_ms / 5.0).max(1.0);
        // The stretches of [0, end]: busy or short idle (linear), or long
        // idle (cut).
        let mut stretches = Vec::new();
        let mut at = 0.0;
        for &(a, b) in &union {
            if a > at {
                stretches.push((at, a, a - at > threshold));
            }
            stretches.push((a, b, false));
            at = b;
        }
        if end > at {
            stretches.push((at, end, end - at > threshold));
        }
        let cuts = stretches.iter().filter(|s| s.2).count() as f64;
        let linear: f64 = stretches.iter().filter(|s| !s.2).map(|s| s.1 - s.0).sum();
        // Many cuts (a thousand frozen gaps) share at most half the width.
        let break_px = match cuts > 0.0 {
            true => Self::BREAK_PX.min(width / 2.0 / cuts),
            false => Self::BREAK_PX,
        };
        let room = width - cuts * break_px;
        let px_per_ms = match linear > 0.0 {
            true => room / linear,
            false => 0.0,
        };
        let mut pieces = Vec::with_capacity(stretches.len());
        let mut breaks = Vec::new();
        let mut cut_pieces = Vec::with_capacity(stretches.len());
        let mut x = 0.0;
        for (a, b, cut) in stretches {
            let w = match cut {
                true => break_px,
                false => (b - a) * px_per_ms,
            };
            if cut {
                breaks.push((x + w / 2.0, b - a));
            }
            cut_pieces.push(cut);
            pieces.push((a, b, x, x + w));
            x += w;
        }
        Self {
            pieces,
            breaks,
            cut: cut_pieces,
        }
    }

    /// The time (ms) at `x`, or `None` inside a cut or past the end.
    pub(super) fn t(&self, x: f64) -> Option<f64> {
        self.pieces
            .iter()
            .zip(&self.cut)
            .find(|((_, _, x0, x1), _)| x >= *x0 && x <= *x1)
            .filter(|(_, cut)| !**cut)
            .map(|(&(t0, t1, x0, x1), _)| match x1 > x0 {
                true => t0 + (x - x0) / (x1 - x0) * (t1 - t0),
                false => t0,
            })
    }

    /// The x of time `t` (ms).
    pub(super) fn x(&self, t: f64) -> f64 {
        for &(t0, t1, x0, x1) in &self.pieces {
            if t <= t1 {
                if t1 <= t0 {
                    return x0;
                }
                return x0 + (t.max(t0) - t0) / (t1 - t0) * (x1 - x0);
            }
        }
        self.pieces.last().map_or(0.0, |p| p.3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_idle_stretch_is_cut_and_the_rest_is_linear() {
        // Busy 0-2 ms and 2000-2001 ms; the 1998 ms between is cut.
        let scale = Scale::new(&[(0.0, 2.0), (2000.0, 2001.0)], 2001.0, 324.0);
        assert_eq!(scale.breaks.len(), 1);
        assert!((scale.breaks[0].1 - 1998.0).abs() < 1e-9);
        // 300 px for 3 ms of busy time: 100 px/ms.
        assert!((scale.x(1.0) - 100.0).abs() < 1e-9);
        assert!((scale.x(2.0) - 200.0).abs() < 1e-9);
        assert!((scale.x(2000.0) - 224.0).abs() < 1e-9);
        assert!((scale.x(2001.0) - 324.0).abs() < 1e-9);
        assert_eq!(scale.t(100.0), Some(1.0));
        assert_eq!(scale.t(210.0), None);
        assert_eq!(scale.t(1000.0), None);
        // Monotonic through the cut.
        assert!(scale.x(1000.0) > scale.x(2.0) && scale.x(1000.0) < scale.x(2000.0));
    }

    #[test]
    fn a_thousand_cuts_still_fit_the_width() {
        // 1 ms busy every second: every idle stretch (999 ms, over a fifth
        // of the 1,000 ms busy) is cut, and the last one runs to the end.
        let busy: Vec<(f64, f64)> = (0..1000)
            .map(|n| (f64::from(n) * 1000.0, f64::from(n) * 1000.0 + 1.0))
            .collect();
        let scale = Scale::new(&busy, 1_000_000.0, 900.0);
        assert_eq!(scale.breaks.len(), 1000);
        assert!(
            scale.x(1_000_000.0) <= 900.0 + 1e-6,
            "{}",
            scale.x(1_000_000.0)
        );
        assert!(scale.x(999_000.5) > scale.x(999_000.0));
    }

    #[test]
    fn nothing_busy_is_no_panic() {
        let scale = Scale::new(&[], 0.0, 100.0);
        assert_eq!(scale.x(5.0), 0.0);
        let scale = Scale::new(&[(f64::NAN, 1.0)], 3.0, 100.0);
        assert!(scale.x(1.0).is_finite());
    }
}
