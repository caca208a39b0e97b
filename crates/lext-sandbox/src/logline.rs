//! CloudWatch text platform lines, formatted exactly as Lambda writes them.
//!
//! This module owns the text of every line the platform (not the function)
//! writes to the function's log: `EXTENSION`, `TELEMETRY`, `LOGS`, `START`,
//! `END`, `REPORT`, `INIT_REPORT` and
//! `Task timed out after N.NN seconds`, as AWS documents them ("Working with
//! Lambda function logs", <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html>)
//! and as real CloudWatch logs show them. It is pure: each function takes
//! the figures and returns the line, with no trailing newline, so that the
//! sandbox core decides where lines go and the formats are table-tested
//! against observed lines. It also owns the
//! ISO-8601 millisecond timestamp used by the telemetry envelope, because
//! both must agree on the clock format.
//!
//! Two rules are easy to get wrong and are therefore computed here, not by
//! callers: `Billed Duration` is the *ceiling* of the duration in whole
//! milliseconds (plus the init duration after a cold start, see
//! [`billed_duration_ms`]), and the success `REPORT` line ends with a TAB
//! while a failed one ends with its last `Status`/`Error Type` field.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use lext_protocol::telemetry::Phase;

/// A name as lext prints it: control characters (a newline, a TAB, an
/// escape sequence's ESC) written as Rust escapes (`\n`, `\t`, `\u{1b}`).
/// An extension's name is its file name, which may hold anything but `/`
/// and NUL; printed raw, a name with a newline would forge a line of the
/// log, and escape codes would reach the terminal.
pub(crate) fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `EXTENSION\tName: <name>\tState: <state>\tEvents: [INVOKE, SHUTDOWN]`,
/// with `\tError Type: <type>` appended when the extension failed.
///
/// `events` are written in the order given (Lambda's own order is not stable,
/// rapid builds the list from a Go map in RIE `internal/lambda/core/externalagent.go`),
/// joined by `", "`; `[]` when empty.
pub(crate) fn extension(
    name: &str,
    state: &str,
    events: &[&str],
    error_type: Option<&str>,
) -> String {
    let name = printable(name);
    let mut line = format!(
        "EXTENSION\tName: {name}\tState: {state}\tEvents: [{}]",
        events.join(", ")
    );
    if let Some(error_type) = error_type {
        let _ = write!(line, "\tError Type: {error_type}");
    }
    line
}

/// `INIT_START Runtime Version: <version>\tRuntime Version ARN: <arn>`, the
/// first line of every Init (observed in CloudWatch for managed and
/// `provided` runtimes).
pub(crate) fn init_start(version: &str, arn: &str) -> String {
    format!(
        "INIT_START Runtime Version: {}\tRuntime Version ARN: {}",
        printable(version),
        printable(arn)
    )
}

/// `TELEMETRY\tName: <ext>\tState: Subscribed\tTypes: [Platform, Function, Extension]`.
///
/// The Telemetry API line capitalises each type (`platform` -> `Platform`),
/// as observed in CloudWatch.
pub(crate) fn telemetry_subscription(extension: &str, types: &[&str]) -> String {
    let types: Vec<String> = types.iter().map(|t| capitalize(t)).collect();
    let extension = printable(extension);
    format!(
        "TELEMETRY\tName: {extension}\tState: Subscribed\tTypes: [{}]",
        types.join(", ")
    )
}

/// `LOGS\tName: <ext>\tState: Subscribed\tTypes: [platform]`.
///
/// Unlike the Telemetry API line, the Logs API line keeps the types as the
/// extension sent them (lowercase in the observed output).
pub(crate) fn logs_subscription(extension: &str, types: &[&str]) -> String {
    let extension = printable(extension);
    format!(
        "LOGS\tName: {extension}\tState: Subscribed\tTypes: [{}]",
        types.join(", ")
    )
}

/// `START RequestId: <id> Version: <version>` (a single space, no TAB,
/// before `Version`).
pub(crate) fn start(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

/// `END RequestId: <id>`.
pub(crate) fn end(request_id: &str) -> String {
    format!("END RequestId: {request_id}")
}

/// How an invoke ended, as the `REPORT` and `INIT_REPORT` lines print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Success: no `Status` field at all.
    Success,
    /// `Status: timeout` (never with an error type).
    Timeout,
    /// `Status: error\tError Type: <type>`, for example `Runtime.ExitError`
    /// or `Extension.Crash`.
    Error(String),
}

impl Outcome {
    /// The `Status:` and `Error Type:` fields, TAB-separated, without a
    /// leading or trailing TAB; `None` for success.
    fn fields(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::Timeout => Some("Status: timeout".to_owned()),
            Outcome::Error(error_type) => Some(format!("Status: error\tError Type: {error_type}")),
        }
    }
}

/// The figures of one `REPORT` line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report<'a> {
    /// The invoke's request id.
    pub(crate) request_id: &'a str,
    /// Invoke duration in milliseconds (printed with 2 decimals).
    pub(crate) duration_ms: f64,
    /// Configured memory in MB.
    pub(crate) memory_size_mb: u32,
    /// Peak memory of the environment in MB.
    pub(crate) max_memory_used_mb: u64,
    /// Init duration in milliseconds; `Some` only on the invoke after a cold
    /// start. It is printed after `Max Memory Used` and billed.
    pub(crate) init_duration_ms: Option<f64>,
    /// How the invoke ended.
    pub(crate) outcome: Outcome,
}

/// `Billed Duration` in ms: `ceil(duration + init duration)`.
///
/// Lambda bills in 1 ms increments, rounding up (38.66 -> 39). The init
/// duration is billed for custom runtimes (`provided.*`), which is what a
/// local sandbox runs, and since 2025-08-01 for every on-demand function
/// (AWS Compute Blog, "AWS Lambda standardizes billing for INIT Phase",
/// effective 2025-08-01; observed: Duration 600000.00 + Init 476.75 -> 600477).
///
/// The sum is rounded to whole microseconds before the ceiling so that a
/// binary fraction such as `38.000000001` (from `f64` arithmetic on a
/// duration that was really 38 ms) does not bill an extra millisecond.
pub(crate) fn billed_duration_ms(duration_ms: f64, init_duration_ms: Option<f64>) -> u64 {
    let total_ms = duration_ms.max(0.0) + init_duration_ms.unwrap_or(0.0).max(0.0);
    // Rounding to µs first: see the doc comment. `as u64` saturates, so an
    // absurd input cannot wrap around.
    let micros = (total_ms * 1000.0).round() as u64;
    micros.div_ceil(1000)
}

/// The `REPORT` line.
///
/// Success: `REPORT RequestId: <id>\tDuration: 38.66 ms\tBilled Duration: 39 ms\tMemory Size: 128 MB\tMax Memory Used: 54 MB\t`
/// (trailing TAB; after a cold start `Init Duration: 203.69 ms\t` follows
/// `Max Memory Used`). On failure the `Status` (and `Error Type`) fields
/// end the line without a trailing TAB.
pub(crate) fn report(report: &Report<'_>) -> String {
    let billed = billed_duration_ms(report.duration_ms, report.init_duration_ms);
    let mut line = format!(
        "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
        report.request_id, report.duration_ms, report.memory_size_mb, report.max_memory_used_mb
    );
    if let Some(init) = report.init_duration_ms {
        let _ = write!(line, "Init Duration: {init:.2} ms\t");
    }
    if let Some(fields) = report.outcome.fields() {
        line.push_str(&fields);
    }
    line
}

/// `INIT_REPORT Init Duration: 154.03 ms\tPhase: init\tStatus: error\tError Type: Runtime.ExitError`.
///
/// Lambda writes it only when Init fails (for on-demand functions), so a
/// success outcome prints no `Status` field; a timeout prints
/// `Status: timeout` with no error type.
pub(crate) fn init_report(init_duration_ms: f64, phase: &Phase, outcome: &Outcome) -> String {
    let mut line = format!(
        "INIT_REPORT Init Duration: {init_duration_ms:.2} ms\tPhase: {}",
        phase.as_str()
    );
    if let Some(fields) = outcome.fields() {
        line.push('\t');
        line.push_str(&fields);
    }
    line
}

/// `<ISO ts> <requestId> Task timed out after 45.05 seconds`, the line
/// written to the function's log when an invoke exceeds its timeout.
pub(crate) fn task_timed_out(time: SystemTime, request_id: &str, elapsed_seconds: f64) -> String {
    format!(
        "{} {request_id} {}",
        iso8601_ms(time),
        task_timed_out_message(elapsed_seconds)
    )
}

/// `Task timed out after 3.00 seconds`: the part shared by the log line and
/// the `Sandbox.Timedout` error message
/// (`RequestId: <id> Error: Task timed out after 3.00 seconds`).
pub(crate) fn task_timed_out_message(elapsed_seconds: f64) -> String {
    format!("Task timed out after {elapsed_seconds:.2} seconds")
}

/// Describe how a process ended the way Go's `os.ProcessState` does, which
/// is what rapid prints: `exit status 1`, or `signal: killed` for a signal.
///
/// `code` is the exit code, `signal` the terminating signal number; when
/// both are `None` (status unknown) the text is `exit status unknown`.
pub(crate) fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal: {}", signal_name(signal)),
        (None, None) => "exit status unknown".to_owned(),
    }
}

/// Go's lowercase descriptions of the common signals (`syscall.Signal.String`).
fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        other => return format!("signal {other}"),
    };
    name.to_owned()
}

/// Format a time as ISO-8601 UTC with milliseconds: `2022-10-21T14:05:03.165Z`.
///
/// This is the telemetry envelope's `time` format (Go layout
/// `2006-01-02T15:04:05.000Z`). A time before 1970 (a broken clock) is
/// printed as the epoch rather than failing: a log line must not be lost
/// over its timestamp.
pub(crate) fn iso8601_ms(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = (secs % 86_400) as u32;
    let year = match u32::try_from(year) {
        Ok(year) if year <= 9999 => year,
        // Five-digit years never come from a real clock; `format!` keeps
        // their text right.
        _ => {
            return format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60
            )
        }
    };
    // Digits written by hand: this runs for every printed log line, and
    // `format!` with padded integers cost about 2,800 instructions a call
    // (19% of lext's instructions per invoke in bench-sandbox's callgrind
    // profile); this is about 150.
    let mut out = String::with_capacity(24);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push('T');
    push_digits(&mut out, rem / 3600, 2);
    out.push(':');
    push_digits(&mut out, (rem % 3600) / 60, 2);
    out.push(':');
    push_digits(&mut out, rem % 60, 2);
    out.push('.');
    push_digits(&mut out, millis, 3);
    out.push('Z');
    out
}

/// Appends the last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut div = 10u32.pow(width.saturating_sub(1));
    while div > 0 {
        out.push(char::from(b'0' + ((value / div) % 10) as u8));
        div /= 10;
    }
}

/// The UTC calendar date `(year, month, day)` of a time, for names such as
/// the log stream's `YYYY/MM/DD` prefix.
pub(crate) fn utc_date(time: SystemTime) -> (i64, u32, u32) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    civil_from_days((secs / 86_400) as i64)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// well-known `civil_from_days` algorithm, restated): shift the era to start
/// on 0000-03-01 so that the leap day is the last day of the year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// name, state, events, error type, expected line.
    type ExtensionCase<'a> = (&'a str, &'a str, &'a [&'a str], Option<&'a str>, &'a str);

    #[test]
    fn extension_lines_match_observed_lines() {
        let table: &[ExtensionCase<'_>] = &[
            (
                "go-example-extension",
                "Ready",
                &["INVOKE", "SHUTDOWN"],
                None,
                "EXTENSION\tName: go-example-extension\tState: Ready\tEvents: [INVOKE, SHUTDOWN]",
            ),
            (
                "x",
                "Ready",
                &[],
                None,
                "EXTENSION\tName: x\tState: Ready\tEvents: []",
            ),
            (
                "x",
                "LaunchError",
                &[],
                Some("PermissionDenied"),
                "EXTENSION\tName: x\tState: LaunchError\tEvents: []\tError Type: PermissionDenied",
            ),
            (
                "x",
                "LaunchError",
                &[],
                Some("UnknownError"),
                "EXTENSION\tName: x\tState: LaunchError\tEvents: []\tError Type: UnknownError",
            ),
        ];
        for (name, state, events, error, want) in table {
            assert_eq!(extension(name, state, events, *error), *want);
        }
    }

    #[test]
    fn subscription_lines_match_observed_lines() {
        assert_eq!(
            telemetry_subscription("ext", &["platform", "function", "extension"]),
            "TELEMETRY\tName: ext\tState: Subscribed\tTypes: [Platform, Function, Extension]"
        );
        assert_eq!(
            logs_subscription("ext", &["platform"]),
            "LOGS\tName: ext\tState: Subscribed\tTypes: [platform]"
        );
    }

    #[test]
    fn names_cannot_forge_lines_or_reach_the_terminal() {
        assert_eq!(
            extension("x\nEXTENSION\tName: forged", "Ready", &[], None),
            "EXTENSION\tName: x\\nEXTENSION\\tName: forged\tState: Ready\tEvents: []"
        );
        assert_eq!(
            telemetry_subscription("e\u{1b}[31m", &["platform"]),
            "TELEMETRY\tName: e\\u{1b}[31m\tState: Subscribed\tTypes: [Platform]"
        );
        assert_eq!(printable("plain-name"), "plain-name");
    }

    #[test]
    fn start_and_end() {
        assert_eq!(
            start("6f7f0961f83442118a7af6fe80b88d56", "$LATEST"),
            "START RequestId: 6f7f0961f83442118a7af6fe80b88d56 Version: $LATEST"
        );
        assert_eq!(end("abc"), "END RequestId: abc");
    }

    #[test]
    fn report_lines_match_observed_lines() {
        let base = Report {
            request_id: "id",
            duration_ms: 38.66,
            memory_size_mb: 128,
            max_memory_used_mb: 54,
            init_duration_ms: None,
            outcome: Outcome::Success,
        };
        let table = [
            (
                base.clone(),
                "REPORT RequestId: id\tDuration: 38.66 ms\tBilled Duration: 39 ms\tMemory Size: 128 MB\tMax Memory Used: 54 MB\t",
            ),
            (
                // Cold start: the init duration is printed after Max Memory
                // Used and billed (custom runtime): ceil(38.66 + 203.69) = 243.
                Report { init_duration_ms: Some(203.69), ..base.clone() },
                "REPORT RequestId: id\tDuration: 38.66 ms\tBilled Duration: 243 ms\tMemory Size: 128 MB\tMax Memory Used: 54 MB\tInit Duration: 203.69 ms\t",
            ),
            (
                Report {
                    duration_ms: 600_000.0,
                    max_memory_used_mb: 64,
                    init_duration_ms: Some(476.75),
                    outcome: Outcome::Timeout,
                    ..base.clone()
                },
                "REPORT RequestId: id\tDuration: 600000.00 ms\tBilled Duration: 600477 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tInit Duration: 476.75 ms\tStatus: timeout",
            ),
            (
                Report { max_memory_used_mb: 64, outcome: Outcome::Timeout, ..base.clone() },
                "REPORT RequestId: id\tDuration: 38.66 ms\tBilled Duration: 39 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tStatus: timeout",
            ),
            (
                Report {
                    memory_size_mb: 1024,
                    max_memory_used_mb: 1024,
                    outcome: Outcome::Error("Runtime.OutOfMemory".into()),
                    ..base.clone()
                },
                "REPORT RequestId: id\tDuration: 38.66 ms\tBilled Duration: 39 ms\tMemory Size: 1024 MB\tMax Memory Used: 1024 MB\tStatus: error\tError Type: Runtime.OutOfMemory",
            ),
            (
                Report { outcome: Outcome::Error("Extension.Crash".into()), ..base.clone() },
                "REPORT RequestId: id\tDuration: 38.66 ms\tBilled Duration: 39 ms\tMemory Size: 128 MB\tMax Memory Used: 54 MB\tStatus: error\tError Type: Extension.Crash",
            ),
        ];
        for (input, want) in table {
            assert_eq!(report(&input), want);
        }
    }

    #[test]
    fn billing_rounds_up_to_whole_milliseconds() {
        assert_eq!(billed_duration_ms(38.66, None), 39);
        assert_eq!(billed_duration_ms(976.25, None), 977);
        assert_eq!(billed_duration_ms(38.0, None), 38);
        // f64 noise just above a whole millisecond is not billed.
        assert_eq!(billed_duration_ms(0.1 + 0.2 + 37.7, None), 38);
        assert_eq!(billed_duration_ms(38.001, None), 39);
        assert_eq!(billed_duration_ms(600_000.0, Some(476.75)), 600_477);
        assert_eq!(billed_duration_ms(0.0, None), 0);
        assert_eq!(billed_duration_ms(-5.0, None), 0);
        assert_eq!(billed_duration_ms(f64::NAN, None), 0);
    }

    #[test]
    fn init_report_lines_match_observed_lines() {
        assert_eq!(
            init_report(154.03, &Phase::Init, &Outcome::Error("Runtime.ExitError".into())),
            "INIT_REPORT Init Duration: 154.03 ms\tPhase: init\tStatus: error\tError Type: Runtime.ExitError"
        );
        assert_eq!(
            init_report(10_000.12, &Phase::Init, &Outcome::Timeout),
            "INIT_REPORT Init Duration: 10000.12 ms\tPhase: init\tStatus: timeout"
        );
        assert_eq!(
            init_report(1236.04, &Phase::Invoke, &Outcome::Error("Extension.Crash".into())),
            "INIT_REPORT Init Duration: 1236.04 ms\tPhase: invoke\tStatus: error\tError Type: Extension.Crash"
        );
    }

    #[test]
    fn timeout_and_fault_lines() {
        let t = UNIX_EPOCH + Duration::from_millis(1_666_361_103_165);
        assert_eq!(
            task_timed_out(t, "req-1", 45.05),
            "2022-10-21T14:05:03.165Z req-1 Task timed out after 45.05 seconds"
        );
        assert_eq!(
            task_timed_out_message(3.0),
            "Task timed out after 3.00 seconds"
        );
        assert_eq!(describe_exit(Some(1), None), "exit status 1");
        assert_eq!(describe_exit(None, Some(9)), "signal: killed");
        assert_eq!(describe_exit(None, Some(64)), "signal: signal 64");
        assert_eq!(describe_exit(None, None), "exit status unknown");
    }

    #[test]
    fn iso_timestamps() {
        let cases = [
            (0_u64, "1970-01-01T00:00:00.000Z"),
            (1_666_361_103_165, "2022-10-21T14:05:03.165Z"),
            // Leap day and the last millisecond of a leap year.
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_735_689_599_999, "2024-12-31T23:59:59.999Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(iso8601_ms(UNIX_EPOCH + Duration::from_millis(ms)), want);
        }
        // Before the epoch: clamped, never a panic.
        assert_eq!(
            iso8601_ms(UNIX_EPOCH - Duration::from_secs(10)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_millis(1_666_361_103_165)),
            (2022, 10, 21)
        );
    }

    #[test]
    fn iso_timestamps_match_the_formatted_reference() {
        // The hand-written digits against `format!`, over times spread
        // from 1970 to past year 10000 (where the fallback takes over).
        let reference = |ms: u64| {
            let secs = ms / 1000;
            let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
            let rem = secs % 86_400;
            format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                ms % 1000
            )
        };
        let mut ms = 0_u64;
        while ms < 260_000_000_000_000 {
            let time = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(iso8601_ms(time), reference(ms), "{ms}");
            ms = ms * 3 / 2 + 7_919_123;
        }
    }
}
