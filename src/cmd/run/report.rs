//! `lext run --report FILE.html` and `--report-json FILE`: what the
//! extensions cost the function.
//!
//! The same invokes run in several environments, one after the other: the
//! function alone (the baseline), with every extension, and, when there are
//! several, with each one alone, so that each gets figures of its own. Each
//! figure is a run's minus the baseline's, from what the sandbox already
//! reports (the `platform.*` records through a sink, and REPORT's figures),
//! plus the processes' CPU time and the sandbox's marks for the timeline.
//!
//! - `record`: the sink that keeps one run's records, volumes and marks;
//! - `figures`: the numbers, and the JSON and the `-v` table;
//! - `table`: the cost table's rows, for the page and for `-v`;
//! - `timeline`: the lanes, bars and markers of one run; `scale`, their
//!   time-to-pixels map;
//! - `html`: the page.

mod figures;
mod html;
mod record;
mod scale;
mod table;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use self::figures::{Figures, FunctionInfo, RunFigures};
use self::record::{Recorded, Recorder};
use super::Args;

/// Invokes per run when `--invoke` is not given.
const DEFAULT_INVOKES: u32 = 10;

/// The pause between two invokes of a run: long enough for the freeze to
/// land (lext freezes 2 ms after an invoke unless the next event comes
/// first), so that every invoke finds the environment frozen, as an invoke
/// does in Lambda unless invokes come back to back, and the timeline shows
/// the freeze gaps. Every run pays the same thaws, so they cancel out in
/// the differences.
const GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// What a run adds to the function: one `--extension` or one `--layer`.
#[derive(Debug, Clone)]
struct Subject {
    /// Its name in the report: the extension's file name, or `layer NAME`.
    name: String,
    extension: Option<PathBuf>,
    layer: Option<PathBuf>,
}

/// One run to make.
#[derive(Debug, Clone)]
struct RunSpec {
    label: String,
    subjects: Vec<Subject>,
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The baseline, all the subjects, and each alone when there are several.
fn runs(subjects: &[Subject]) -> Vec<RunSpec> {
    let mut runs = vec![
        RunSpec {
            label: "baseline".to_owned(),
            subjects: Vec::new(),
        },
        RunSpec {
            label: "all".to_owned(),
            subjects: subjects.to_vec(),
        },
    ];
    if subjects.len() > 1 {
        runs.extend(subjects.iter().map(|s| RunSpec {
            label: s.name.clone(),
            subjects: vec![s.clone()],
        }));
    }
    runs
}

/// Runs the report: every run, then the page, the JSON and (with `-v`)
/// the table.
pub(super) async fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let html_path = args.report.take();
    let json_path = args.report_json.take();
    let invokes = args.invoke.unwrap_or(DEFAULT_INVOKES);
    args.invoke = Some(invokes);
    if args.layers.is_empty() && args.extensions.is_empty() {
        args.extensions.extend(crate::cmd::example::build()?);
    }
    let subjects: Vec<Subject> = args
        .extensions
        .iter()
        .map(|p| Subject {
            name: file_name(p),
            extension: Some(p.clone()),
            layer: None,
        })
        .chain(args.layers.iter().map(|p| Subject {
            name: format!("layer {}", file_name(p)),
            extension: None,
            layer: Some(p.clone()),
        }))
        .collect();
    anyhow::ensure!(
        !subjects.is_empty(),
        "--report: there is no extension to measure (give --extension or --layer)"
    );
    // Refused now rather than after every run: an output that cannot be
    // written.
    for path in html_path.iter().chain(&json_path) {
        std::fs::File::create(path)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    let telemetry_out = args.telemetry_out.take();
    let specs = runs(&subjects);
    let mut signals: Option<crate::cmd::signals::Current> = None;
    let mut done: Vec<(RunSpec, Recorded, Option<f64>)> = Vec::new();
    let mut failed = false;
    warm_up(&args).await?;
    for (n, spec) in specs.iter().enumerate() {
        let names: Vec<&str> = spec.subjects.iter().map(|s| s.name.as_str()).collect();
        note!(
            "lext: report run {}/{}: {} ({})",
            n + 1,
            specs.len(),
            spec.label,
            match names.is_empty() {
                true => "no extension".to_owned(),
                false => names.join(", "),
            }
        );
        let mut run_args = args.clone();
        run_args.extensions = spec
            .subjects
            .iter()
            .filter_map(|s| s.extension.clone())
            .collect();
        run_args.layers = spec
            .subjects
            .iter()
            .filter_map(|s| s.layer.clone())
            .collect();
        // The telemetry file is the run with every extension's.
        run_args.telemetry_out = match spec.label.as_str() {
            "all" => telemetry_out.clone(),
            _ => None,
        };
        let plan = super::plan_with(run_args, false)?;
        let recorder = Recorder::default();
        let before = children_cpu_ms();
        let env = plan.environment.sink(recorder.clone()).start().await?;
        if n == 0 {
            for notice in env.notices() {
                note!("{notice}");
            }
        }
        match &signals {
            Some(current) => current.set(env.handle()),
            None => signals = Some(crate::cmd::signals::watch(env.handle())),
        }
        let failures = super::invoke_n(&env, &plan.payload, plan.invokes, GAP).await;
        env.shutdown();
        let summary = env.stopped().await?;
        let cpu = match (before, children_cpu_ms()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        failed |= failures > 0 || summary.failed_invokes > 0 || summary.init_failures > 0;
        done.push((spec.clone(), recorder.take(), cpu));
        if signals.as_ref().is_some_and(|s| s.stopping()) {
            note!("lext: interrupted; the report covers the runs that ran");
            break;
        }
    }
    let (figures, timeline, timeline_run) = assemble(&args, invokes, &done);
    if let Some(path) = &json_path {
        let json = serde_json::to_vec_pretty(&figures).context("encoding the report's JSON")?;
        std::fs::write(path, json)
            .with_context(|| format!("writing --report-json {}", path.display()))?;
        note!("lext: report figures written to {}", path.display());
    }
    if let Some(path) = &html_path {
        let page = html::page(&figures, &timeline, &timeline_run);
        std::fs::write(path, page)
            .with_context(|| format!("writing --report {}", path.display()))?;
        note!("lext: report written to {}", path.display());
    }
    if args.verbose > 0 {
        note!("{}", table::text(&figures));
    }
    Ok(match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

/// One invoke of the function alone, not measured: the first environment
/// of a process pays costs the next ones do not (measured: about 5 ms more
/// Init for the first of two identical runs), which would otherwise count
/// against the baseline.
async fn warm_up(args: &Args) -> anyhow::Result<()> {
    note!("lext: report warm-up: the function alone, 1 invoke (not measured)");
    let mut warm = args.clone();
    warm.extensions.clear();
    warm.layers.clear();
    warm.telemetry_out = None;
    warm.invoke = Some(1);
    let plan = super::plan_with(warm, false)?;
    let env = plan.environment.start().await?;
    let _ = env
        .invoke(lext_sandbox::InvokeRequest::new(plan.payload.clone()))
        .await;
    env.stop().await?;
    Ok(())
}

/// The figures of every run, the costs, and the timeline of the run with
/// every extension (or of the last run, when it was interrupted earlier).
fn assemble(
    args: &Args,
    invokes: u32,
    done: &[(RunSpec, Recorded, Option<f64>)],
) -> (Figures, timeline::Timeline, String) {
    let mut timelines = Vec::with_capacity(done.len());
    let runs: Vec<RunFigures> = done
        .iter()
        .map(|(spec, recorded, cpu)| {
            let names: Vec<String> = spec.subjects.iter().map(|s| s.name.clone()).collect();
            let mut run = figures::run(&spec.label, &names, recorded, *cpu);
            let timeline = timeline::build(recorded, &run.invokes, &run.extensions);
            figures::own_post_runtime(&mut run, &timeline);
            timelines.push(timeline);
            run
        })
        .collect();
    let mut costs = Vec::new();
    if let Some(baseline) = runs.first() {
        // One subject: the "all" run is its own. Several: each alone, then
        // all of them together.
        let single = done
            .get(1)
            .is_some_and(|(spec, _, _)| spec.subjects.len() == 1);
        for run in runs.iter().skip(1) {
            let is_all = run.label == "all";
            match (is_all, single) {
                (true, true) => {
                    let subject = run.subjects.first().cloned().unwrap_or_default();
                    costs.push(figures::cost(&subject, baseline, run));
                }
                (true, false) => {}
                (false, _) => costs.push(figures::cost(&run.label, baseline, run)),
            }
        }
        if !single {
            if let Some(all) = runs.iter().find(|r| r.label == "all") {
                costs.push(figures::cost("all together", baseline, all));
            }
        }
    }
    // The run with every extension (the second), or the only one.
    let index = done.len().min(2).saturating_sub(1);
    let label = runs.get(index).map(|r| r.label.clone()).unwrap_or_default();
    let timeline = match timelines.len() > index {
        true => timelines.swap_remove(index),
        false => timeline::Timeline::default(),
    };
    let figures = Figures {
        schema: figures::SCHEMA,
        function: FunctionInfo {
            name: args.function_name.clone(),
            memory_mb: args.memory,
            timeout_s: args.timeout,
        },
        invokes_per_run: invokes,
        runs,
        costs,
    };
    (figures, timeline, label)
}

/// User + system CPU time of this process's reaped children so far, ms:
/// every environment's processes, once it has stopped (they are all
/// waited for by then).
fn children_cpu_ms() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `struct rusage` to the pointer it is
    // given, which points to one; nothing else is touched.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: zeroed is a valid rusage (plain integers), and getrusage
    // succeeded.
    let usage = unsafe { usage.assume_init() };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Some(ms(usage.ru_utime) + ms(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(name: &str) -> Subject {
        Subject {
            name: name.to_owned(),
            extension: Some(PathBuf::from(name)),
            layer: None,
        }
    }

    #[test]
    fn one_extension_is_two_runs_several_are_each_alone_too() {
        let one = runs(&[subject("a")]);
        let labels: Vec<&str> = one.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["baseline", "all"]);
        let two = runs(&[subject("a"), subject("b")]);
        let labels: Vec<&str> = two.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["baseline", "all", "a", "b"]);
        assert!(two[0].subjects.is_empty());
        assert_eq!(two[3].subjects.len(), 1);
    }
}
