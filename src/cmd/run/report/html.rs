//! The report as one self-contained HTML page: the cost table, the runs,
//! and the timeline as inline SVG (hover text from SVG `<title>`), with
//! inline CSS and no script, font or image from anywhere else.
//!
//! Every string from outside (extension names, request ids, error types,
//! reasons) goes through [`esc`].

use std::fmt::Write as _;

use super::figures::{Figures, RunFigures};
use super::scale::Scale;
use super::timeline::{Bar, BarKind, Timeline};

/// Escapes text for HTML and SVG, in text and in quoted attributes.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (a name with an escape sequence) are
            // shown, not passed on.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
p.sub, p.note { color: #556; margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d5dae3; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f1f4f9; font-weight: 600; white-space: normal; max-width: 120px; font-size: 13px; }
td:first-child, th:first-child { text-align: left; }
svg.timeline { display: block; margin: 8px 0; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2430; }
svg text.tick { fill: #667; font-size: 11px; }
.lane-bg { fill: #f7f8fb; }
.bar.init rect { fill: #8e7cc3; }
.bar.invoke rect.runtime-part { fill: #3c78d8; }
.bar.invoke rect.post-runtime { fill: #f1a340; }
.bar.shutdown rect.window { fill: #e8e8e8; stroke: #b8b8b8; stroke-dasharray: 3 2; }
.bar.shutdown rect.used { fill: #6aa84f; }
.bar.shutdown line.deadline { stroke: #333; stroke-width: 2; }
.bar.failed rect { stroke: #c00; stroke-width: 2; }
rect.freeze { fill: #9fc5e8; opacity: 0.35; }
.break line { stroke: #999; stroke-dasharray: 2 2; }
.break text { fill: #777; font-size: 10px; }
.marker path { stroke: #fff; stroke-width: 1; }
.marker.timeout path { fill: #c00; }
.marker.crash path { fill: #900; }
.marker.error path { fill: #e06666; }
.marker.logs-dropped path { fill: #b45f06; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
"#;

/// The whole page.
pub(super) fn page(figures: &Figures, timeline: &Timeline, timeline_run: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("lext report: {}", figures.function.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(out, "<h1>What the extensions cost the function</h1>");
    let _ = writeln!(
        out,
        "<p class=\"sub\">Function {} ({} MB, timeout {} s). The same {} invoke(s) ran in \
         each environment: the function alone (the baseline), with every extension, and \
         with each one alone when there are several. Each figure is the run's minus the \
         baseline's.</p>",
        esc(&figures.function.name),
        figures.function.memory_mb,
        figures.function.timeout_s,
        figures.invokes_per_run
    );
    cost_table(&mut out, figures);
    runs_table(&mut out, &figures.runs);
    if let Some(run) = figures.runs.iter().find(|r| r.label == timeline_run) {
        processes_table(&mut out, run);
    }
    let _ = writeln!(
        out,
        "<h2>Timeline: the {} run</h2>\n<p class=\"note\">One lane per process. Hover a bar \
         for its request id and durations. Long idle stretches are cut (dashed lines, \
         with the time they stand for).</p>",
        esc(timeline_run)
    );
    legend(&mut out);
    svg(&mut out, timeline);
    notes(&mut out);
    out.push_str("</body></html>\n");
    out
}

fn cost_table(out: &mut String, figures: &Figures) {
    let (header, rows) = super::table::cost_rows(figures);
    out.push_str("<table class=\"costs\"><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr class=\"cost\">");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn runs_table(out: &mut String, runs: &[RunFigures]) {
    out.push_str(
        "<h2>Runs</h2><table class=\"runs\"><thead><tr><th>run</th><th>extensions</th>\
         <th>Init (ms)</th><th>Duration p50 / p99 (ms)</th><th>runtime p50 (ms)</th>\
         <th>post-runtime p50 / p99 (ms)</th><th>Max Memory Used (MB)</th><th>CPU (ms)</th>\
         <th>failed invokes</th><th>logsDropped (records)</th></tr></thead><tbody>\n",
    );
    for run in runs {
        let names: Vec<&str> = run.subjects.iter().map(String::as_str).collect();
        let failed = run.invokes.iter().filter(|i| i.status != "success").count();
        let _ = writeln!(
            out,
            "<tr class=\"run\"><td>{}</td><td>{}</td><td>{}{}</td><td>{} / {}</td><td>{}</td>\
             <td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&run.label),
            esc(&match names.is_empty() {
                true => "none".to_owned(),
                false => names.join(", "),
            }),
            opt(run.init_ms),
            match run.init_status.as_deref() {
                Some("success") | None => String::new(),
                Some(status) => format!(" ({})", esc(status)),
            },
            opt(run.duration_ms.p50),
            opt(run.duration_ms.p99),
            opt(run.runtime_ms.p50),
            opt(run.post_runtime_ms.p50),
            opt(run.post_runtime_ms.p99),
            run.max_memory_used_mb
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            opt(run.cpu_ms),
            failed,
            run.logs_dropped.records,
        );
    }
    out.push_str("</tbody></table>\n");
}

/// Each process of one run: what it wrote and subscribed to, and (an
/// extension) its own post-runtime time.
fn processes_table(out: &mut String, run: &RunFigures) {
    let _ = writeln!(
        out,
        "<h2>Processes of the {} run</h2><table class=\"processes\"><thead><tr>\
         <th>process</th><th>own post-runtime p50 / p99 (ms)</th><th>log lines</th>\
         <th>log bytes</th><th>subscriptions</th><th>records of its types</th></tr></thead>\
         <tbody>",
        esc(&run.label)
    );
    for p in &run.processes {
        let subs: Vec<String> = p
            .subscriptions
            .iter()
            .map(|s| format!("{} [{}]", s.api, s.types.join(", ")))
            .collect();
        let own = match p.kind {
            "runtime" => "-".to_owned(),
            _ => format!(
                "{} / {}",
                opt(p.own_post_runtime_ms.p50),
                opt(p.own_post_runtime_ms.p99)
            ),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.process),
            own,
            p.log_lines,
            p.log_bytes,
            esc(&match subs.is_empty() {
                true => "none".to_owned(),
                false => subs.join("; "),
            }),
            p.records_of_subscribed_types,
        );
    }
    out.push_str("</tbody></table>\n");
}

fn legend(out: &mut String) {
    let items = [
        ("#8e7cc3", "Init (start to first /next)"),
        ("#3c78d8", "invoke: the runtime's part"),
        ("#f1a340", "invoke: post-runtime"),
        ("#6aa84f", "shutdown (to exit)"),
        ("#e8e8e8", "shutdown budget (to the deadline, black line)"),
        ("#9fc5e8", "frozen"),
        ("#c00", "timeout"),
        ("#900", "crash / SIGKILL"),
        ("#e06666", "error"),
        ("#b45f06", "platform.logsDropped"),
    ];
    out.push_str("<p class=\"legend\">");
    for (color, what) in items {
        let _ = write!(
            out,
            "<span><i style=\"background:{color}\"></i>{}</span>",
            esc(what)
        );
    }
    out.push_str("</p>\n");
}

const WIDTH: f64 = 1100.0;
const LABEL: f64 = 170.0;
const LANE: f64 = 30.0;
const TOP: f64 = 28.0;

/// A rectangle, at least 1 px wide.
fn rect(out: &mut String, class: &str, x0: f64, x1: f64, y: f64, h: f64) {
    let _ = write!(
        out,
        "<rect class=\"{class}\" x=\"{:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{h:.1}\"/>",
        x0,
        (x1 - x0).max(1.0)
    );
}

fn bar(out: &mut String, scale: &Scale, b: &Bar, y: f64) {
    let kind = match b.kind {
        BarKind::Init => "init",
        BarKind::Invoke => "invoke",
        BarKind::Shutdown => "shutdown",
    };
    let failed = if b.failed { " failed" } else { "" };
    let id = b
        .request_id
        .as_deref()
        .map(|id| format!(" data-request-id=\"{}\"", esc(id)))
        .unwrap_or_default();
    let _ = write!(out, "<g class=\"bar {kind}{failed}\"{id}>");
    let (x0, x1) = (LABEL + scale.x(b.start), LABEL + scale.x(b.end));
    let (y, h) = (y + 6.0, LANE - 12.0);
    match b.kind {
        BarKind::Init => rect(out, "init", x0, x1, y, h),
        BarKind::Invoke => {
            let xs = LABEL + scale.x(b.split.unwrap_or(b.end));
            rect(out, "runtime-part", x0, xs, y, h);
            if x1 - xs >= 0.5 {
                rect(out, "post-runtime", xs, x1, y, h);
            }
        }
        BarKind::Shutdown => {
            if let Some(deadline) = b.deadline {
                let xd = LABEL + scale.x(deadline);
                rect(out, "window", x0, xd, y + 3.0, h - 6.0);
                let _ = write!(
                    out,
                    "<line class=\"deadline\" x1=\"{xd:.2}\" x2=\"{xd:.2}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
                    y - 2.0,
                    y + h + 2.0
                );
            }
            rect(out, "used", x0, x1, y, h);
        }
    }
    let _ = write!(out, "<title>{}</title></g>", esc(&b.title));
}

fn svg(out: &mut String, t: &Timeline) {
    let busy: Vec<(f64, f64)> = t
        .lanes
        .iter()
        .flat_map(|l| &l.bars)
        .map(|b| (b.start, b.end))
        .chain(t.markers.iter().map(|m| (m.at, m.at)))
        .collect();
    let scale = Scale::new(&busy, t.end, WIDTH - LABEL - 10.0);
    let height = TOP + LANE * t.lanes.len() as f64 + 10.0;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-label=\"timeline\">"
    );
    for (i, _) in t.lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        rect(out, "lane-bg", 0.0, WIDTH, y + 1.0, LANE - 2.0);
    }
    let bottom = TOP + LANE * t.lanes.len() as f64;
    for &(a, b) in &t.freezes {
        let (x0, x1) = (LABEL + scale.x(a), LABEL + scale.x(b));
        let _ = write!(
            out,
            "<rect class=\"freeze\" x=\"{x0:.2}\" y=\"{TOP}\" width=\"{:.2}\" height=\"{:.1}\">\
             <title>frozen {:.2} ms</title></rect>",
            (x1 - x0).max(1.0),
            bottom - TOP,
            b - a
        );
    }
    ticks(out, &scale, WIDTH - LABEL - 60.0);
    // A cut's label only where it does not run into the previous one (the
    // hover text has it anyway).
    let mut labelled = f64::NEG_INFINITY;
    for &(x, idle) in &scale.breaks {
        let x = LABEL + x;
        let label = match x - labelled >= 56.0 {
            true => {
                labelled = x;
                format!(
                    "<text x=\"{x:.2}\" y=\"{:.1}\" text-anchor=\"middle\">+{}</text>",
                    TOP - 4.0,
                    human(idle)
                )
            }
            false => String::new(),
        };
        let _ = write!(
            out,
            "<g class=\"break\"><line x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.1}\" y2=\"{bottom:.1}\"/>\
             {label}<title>{:.2} ms cut</title></g>",
            TOP - 2.0,
            idle
        );
    }
    for (i, lane) in t.lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = write!(
            out,
            "<g class=\"lane\" data-process=\"{}\">",
            esc(&lane.name)
        );
        let _ = write!(
            out,
            "<text class=\"lane-label\" x=\"6\" y=\"{:.1}\">{}</text>",
            y + LANE / 2.0 + 4.0,
            esc(&shorten(&lane.name, 24))
        );
        for b in &lane.bars {
            bar(out, &scale, b, y);
        }
        out.push_str("</g>");
    }
    for m in &t.markers {
        let x = LABEL + scale.x(m.at);
        let (y0, y1) = match m.lane {
            Some(i) => (TOP + LANE * i as f64, TOP + LANE * (i as f64 + 1.0)),
            None => (TOP, bottom),
        };
        let process = m
            .lane
            .and_then(|i| t.lanes.get(i))
            .map(|l| format!(" data-process=\"{}\"", esc(&l.name)))
            .unwrap_or_default();
        // A downward triangle at the top of the lane, and a thin stem.
        let _ = write!(
            out,
            "<g class=\"marker {}\"{process}><path d=\"M{:.2} {:.1} l-6 -9 h12 z M{:.2} {:.1} v{:.1} h-1.5 v-{:.1} z\"/>\
             <title>{}</title></g>",
            m.kind.class(),
            x,
            y0 + 10.0,
            x + 0.75,
            y0 + 10.0,
            y1 - y0 - 12.0,
            y1 - y0 - 12.0,
            esc(&m.title)
        );
    }
    out.push_str("</svg>\n");
}

/// Tick labels along the top, every 100 px, at the time under each (the
/// scale is piecewise, so the labels are where they are, not round).
fn ticks(out: &mut String, scale: &Scale, width: f64) {
    let mut x = 0.0;
    while x <= width {
        if let Some(t) = scale.t(x) {
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{:.2}\" y=\"12\">{}</text>",
                LABEL + x,
                human(t)
            );
        }
        x += 100.0;
    }
}

/// `0.25 ms`, `12.5 ms`, `1.99 s`.
fn human(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn shorten(name: &str, max: usize) -> String {
    match name.chars().count() > max {
        true => format!("{}…", name.chars().take(max - 1).collect::<String>()),
        false => name.to_owned(),
    }
}

fn notes(out: &mut String) {
    out.push_str(
        "<h2>How each figure is measured</h2><ul class=\"notes\">\
         <li><b>Init added</b>: the run's <code>platform.initReport</code> duration (REPORT's \
         Init Duration) minus the baseline's.</li>\
         <li><b>Post-runtime</b>: per invoke, REPORT's Duration minus \
         <code>platform.runtimeDone</code>'s: the time the extensions took after the runtime \
         was done (Lambda's PostRuntimeExtensionsDuration, part of the billed Duration). p50 and p99 are nearest \
         rank over the run's invokes; <b>added</b> is the run's minus the baseline's.</li>\
         <li><b>Max Memory Used added</b>: the highest REPORT Max Memory Used of the run (the \
         environment's cgroup peak, whole MB) minus the baseline's.</li>\
         <li><b>CPU added</b>: user + system time of the run's processes (getrusage of the \
         reaped children, so lext's own work serving their API calls is not in it), minus \
         the baseline's.</li>\
         <li><b>Log lines / bytes</b>: what the extension wrote to stdout and stderr. \
         <b>Records of its types</b>: the telemetry records of the streams it subscribed to \
         during the run, as a Telemetry API subscriber is sent them before any drop.</li>\
         <li>Timing noise: the runs are one after the other on a shared machine, and each \
         has one Init, so <b>Init added</b> is a single difference; rerun before reading much \
         into a few milliseconds of Init or a few tenths of a millisecond per invoke.</li>\
         </ul>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_break_out() {
        assert_eq!(
            esc("<a href=\"x\">'&</a>\u{1b}[31m"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&lt;/a&gt;\\u{1b}[31m"
        );
    }

    #[test]
    fn steps_and_times_read_well() {
        assert_eq!(human(1990.0), "1.99 s");
        assert_eq!(human(0.25), "0.25 ms");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
