//! The cost table: one row per extension, for the page and, as one block
//! of `name  value` lines per extension, for `-v`.

use std::fmt::Write as _;

use super::figures::Figures;

/// A figure for a table: two decimals, `+` for an increase, `-` when
/// unknown.
fn signed(ms: Option<f64>) -> String {
    match ms {
        Some(v) if v >= 0.0 => format!("+{v:.2}"),
        Some(v) => format!("{v:.2}"),
        None => "-".to_owned(),
    }
}

fn plain(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// The columns of the cost table: header, then one row per cost.
pub(super) fn cost_rows(figures: &Figures) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "extension",
        "Init added (ms)",
        "post-runtime p50 (ms)",
        "post-runtime p99 (ms)",
        "added p50 / p99 (ms)",
        "Duration added p50 (ms)",
        "Max Memory Used added (MB)",
        "CPU added (ms)",
        "log lines / bytes",
        "subscriptions",
        "records of its types",
        "failed invokes",
    ];
    let rows = figures
        .costs
        .iter()
        .map(|c| {
            let subs: Vec<String> = c
                .subscriptions
                .iter()
                .map(|s| format!("{} [{}]", s.api, s.types.join(", ")))
                .collect();
            vec![
                c.subject.clone(),
                signed(c.init_added_ms),
                plain(c.post_runtime_ms.p50),
                plain(c.post_runtime_ms.p99),
                format!(
                    "{} / {}",
                    signed(c.post_runtime_added_ms.p50),
                    signed(c.post_runtime_added_ms.p99)
                ),
                signed(c.duration_added_ms.p50),
                c.max_memory_added_mb
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:+}")),
                signed(c.cpu_added_ms),
                format!("{} / {}", c.log_lines, c.log_bytes),
                match subs.is_empty() {
                    true => "none".to_owned(),
                    false => subs.join("; "),
                },
                c.records_of_subscribed_types.to_string(),
                c.failed_invokes.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

/// The cost table as text, for `-v`: one `name: value` block per
/// extension (a wide table does not fit a terminal).
pub(super) fn text(figures: &Figures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lext: what the extensions cost ({} invoke(s) per run; baseline: the function alone)",
        figures.invokes_per_run
    );
    if let Some(base) = figures.runs.first() {
        let _ = writeln!(
            out,
            "  baseline: Init {} ms, Duration p50 {} ms, p99 {} ms, Max Memory Used {} MB, CPU {} ms",
            plain(base.init_ms),
            plain(base.duration_ms.p50),
            plain(base.duration_ms.p99),
            base.max_memory_used_mb
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            plain(base.cpu_ms),
        );
    }
    let (header, rows) = cost_rows(figures);
    let width = header.iter().map(|h| h.len()).max().unwrap_or(0);
    for row in rows {
        for (name, value) in header.iter().zip(&row) {
            let _ = writeln!(out, "  {name:<width$}  {value}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_figures() {
        assert_eq!(signed(Some(1.234)), "+1.23");
        assert_eq!(signed(Some(-0.5)), "-0.50");
        assert_eq!(signed(None), "-");
        assert_eq!(plain(None), "-");
    }
}
