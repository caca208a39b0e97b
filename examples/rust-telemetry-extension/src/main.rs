//! `rust-telemetry-extension`: an extension that subscribes to the Telemetry
//! API and prints every event it receives.
//!
//! Run with: `lext run --extension target/debug/rust-telemetry-extension
//! --function <your runtime> --invoke 2` (from this repository, after
//! `cargo build -p rust-telemetry-extension`), or against any Extensions API:
//! `AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001 rust-telemetry-extension`.
//!
//! It registers for INVOKE and SHUTDOWN (SHUTDOWN alone on Lambda Managed
//! Instances, the SDK's default there), subscribes to `platform`,
//! `function` and `extension` events with the shortest buffering Lambda
//! allows (25 ms, so batches arrive quickly), and prints one line per event:
//!
//! ```text
//! [rust-telemetry-extension] Registering...
//! [rust-telemetry-extension] Subscribing to the Telemetry API...
//! [rust-telemetry-extension] Subscribed: listening on 127.0.0.1:41234
//! [rust-telemetry-extension] telemetry: platform.initStart phase=init
//! [rust-telemetry-extension] telemetry: extension: [rust-telemetry-extension] Registering...
//! [rust-telemetry-extension] telemetry: platform.start requestId=8f6c...
//! [rust-telemetry-extension] telemetry: function: hello from the function
//! [rust-telemetry-extension] telemetry: platform.report requestId=8f6c... status=success durationMs=1.23
//! [rust-telemetry-extension] Received SHUTDOWN event (spindown)
//! [rust-telemetry-extension] 5 echoes of its own telemetry lines were not printed again
//! [rust-telemetry-extension] Exiting
//! ```
//!
//! Three things every telemetry extension has to get right, shown here:
//!
//! - **Batches arrive on the listener's thread, events on the main one.** The
//!   blocking event loop waits in `/event/next`; the batches received
//!   meanwhile wait in the subscription's channel and are drained at every
//!   event. (An extension that forwards telemetry would read them on a
//!   thread of its own, as the SDK's rustdoc example does.)
//! - **Its own output comes back.** An `extension` subscription includes
//!   this extension's own stdout, so printing a line for each of those
//!   would print a line about that line, forever. Lines this extension
//!   printed about telemetry are therefore counted, not printed again.
//! - **The last invoke's report comes after the invoke.** `platform.report`
//!   is sent when the invoke ends, and may still be on its way when SHUTDOWN
//!   arrives, so at SHUTDOWN the extension waits for it, until the shutdown
//!   deadline minus a safety margin at most (the SDK's
//!   `TelemetrySubscription::wait_for_report`).
//!
//! Nothing is dropped silently: elements that did not decode and batches
//! that were not a JSON array are printed as `warning:` lines.

use std::io::Write;
use std::process::ExitCode;

use lext_extension::{
    Buffering, Error, Extension, LogRecord, LogType, NextEvent, Record, RunEnd, SubscribeOutcome,
    TelemetryBatch, TelemetryConfig, TelemetryEvent,
};

/// The shortest batching window Lambda accepts (milliseconds).
const BUFFERING_TIMEOUT_MS: u32 = 25;

/// What every line about a telemetry event starts with (after the prefix);
/// also how this extension recognises its own lines when they come back.
const TELEMETRY_TAG: &str = "telemetry: ";

fn main() -> ExitCode {
    let name = match lext_extension::default_name() {
        Ok(name) => name,
        Err(err) => {
            eprintln!("[rust-telemetry-extension] Error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut printer = Printer::new(&name);

    printer.line("Registering...");
    // The SDK's default events: INVOKE and SHUTDOWN, or SHUTDOWN alone on
    // Lambda Managed Instances, which refuse INVOKE.
    let builder = Extension::builder().name(name);
    let mut registered = match builder.register() {
        Ok(registered) => registered,
        Err(err) => return printer.fail(&err),
    };

    // Subscribing is only allowed during Init, so it happens before the
    // event loop. The listener is bound before the subscription is sent:
    // Lambda replays the events of Init (and the lines printed above) at
    // once, and they must find it listening.
    printer.line("Subscribing to the Telemetry API...");
    let config = TelemetryConfig::default()
        .types([LogType::Platform, LogType::Function, LogType::Extension])
        .buffering(Buffering {
            timeout_ms: Some(BUFFERING_TIMEOUT_MS),
            ..Buffering::default()
        });
    let telemetry = match registered.subscribe_telemetry(config) {
        Ok(telemetry) => telemetry,
        Err(err) => return printer.fail(&err),
    };
    match telemetry.outcome() {
        SubscribeOutcome::Subscribed => printer.line(&format!(
            "Subscribed: listening on {}",
            telemetry.local_addr()
        )),
        // A local emulator without a Telemetry API: the extension still
        // works, it just receives nothing.
        other => printer.line(&format!("Not subscribed: {other:?}")),
    }

    // The request id of the latest INVOKE, so that SHUTDOWN knows which
    // `platform.report` to wait for.
    // (Managed Instances send no INVOKE: then the latest `platform.start`
    // received whose `platform.report` has not come yet stands for it.)
    let mut last_invoke: Option<String> = None;
    let end = registered.run(|event| {
        if let NextEvent::Invoke(invoke) = event {
            last_invoke = Some(invoke.request_id);
        }
        // Whatever arrived while we were waiting for this event.
        while let Some(batch) = telemetry.try_recv() {
            printer.batch(batch);
        }
        Ok(())
    });

    match end {
        Ok(RunEnd::Shutdown(shutdown)) => {
            printer.line(&format!(
                "Received SHUTDOWN event ({})",
                shutdown.shutdown_reason
            ));
            let subscribed = matches!(telemetry.outcome(), SubscribeOutcome::Subscribed);
            let last = last_invoke.or_else(|| printer.last_start.take());
            if let (true, Some(request_id)) = (subscribed, last) {
                // Until the deadline less the SDK's margin (300 ms), for
                // the printing and the exit.
                let arrived =
                    telemetry.wait_for_report(&request_id, &shutdown, |b| printer.batch(b));
                if !arrived {
                    printer.line(&format!(
                        "warning: no platform.report for {request_id} before the shutdown deadline"
                    ));
                }
            }
        }
        Ok(RunEnd::Signal(signal)) => printer.line(&format!("Received {signal}")),
        Err(err) => return printer.fail(&err),
    }
    // Batches that arrived last (nothing is left behind unprinted).
    while let Some(batch) = telemetry.try_recv() {
        printer.batch(batch);
    }
    printer.lines(&[
        format!(
            "{} echoes of its own telemetry lines were not printed again",
            printer.echoes
        ),
        "Exiting".to_owned(),
    ]);
    ExitCode::SUCCESS
}

/// Writes the extension's prefixed lines, and remembers what it has seen.
struct Printer {
    prefix: String,
    /// How this extension's own telemetry lines start.
    echo_start: String,
    /// Echoes of this extension's own telemetry lines, not printed again.
    echoes: u64,
    /// The request id of the latest `platform.start` received, until its
    /// `platform.report` comes.
    last_start: Option<String>,
}

impl Printer {
    fn new(name: &str) -> Self {
        Self {
            prefix: format!("[{name}]"),
            echo_start: format!("[{name}] {TELEMETRY_TAG}"),
            echoes: 0,
            last_start: None,
        }
    }

    /// One line on stdout (Lambda captures it into the log stream). A
    /// closed stdout is ignored: losing a log line must not kill the
    /// extension, as `println!` would.
    fn line(&self, message: &str) {
        self.lines(&[message.to_owned()]);
    }

    /// Several lines in one write, so they are not interleaved.
    fn lines(&self, messages: &[String]) {
        let mut text = String::new();
        for message in messages {
            text.push_str(&self.prefix);
            text.push(' ');
            text.push_str(message);
            text.push('\n');
        }
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// Prints one batch: a line per event, a warning per element that did
    /// not decode, or one warning for a body that was not a JSON array.
    fn batch(&mut self, batch: TelemetryBatch) {
        let mut out = Vec::new();
        match batch {
            TelemetryBatch::Events { events, failures } => {
                for event in &events {
                    if let Some(line) = self.describe(event) {
                        out.push(format!("{TELEMETRY_TAG}{line}"));
                    }
                }
                for failure in failures {
                    out.push(format!(
                        "warning: telemetry event #{} did not decode ({}): {}",
                        failure.index, failure.error, failure.raw
                    ));
                }
            }
            TelemetryBatch::Unparsed { error, body } => out.push(format!(
                "warning: telemetry batch not parsed ({error}): {}",
                String::from_utf8_lossy(&body)
            )),
            // TelemetryBatch may grow variants; say so rather than drop one.
            other => out.push(format!("warning: unknown telemetry batch: {other:?}")),
        }
        self.lines(&out);
    }

    /// The text of one event's line, or `None` for an echo of this
    /// extension's own telemetry line (printing it would loop forever).
    fn describe(&mut self, event: &TelemetryEvent) -> Option<String> {
        let kind = event.record.event_type();
        Some(match &event.record {
            Record::InitStart(init) => format!("{kind} phase={}", init.phase),
            Record::Start(start) => {
                self.last_start = Some(start.request_id.clone());
                format!("{kind} requestId={}", start.request_id)
            }
            Record::RuntimeDone(done) => {
                // A streamed response's spans: how long the first byte took
                // (responseLatency) and the rest of the stream
                // (responseDuration).
                let spans: String = done
                    .spans
                    .iter()
                    .flatten()
                    .map(|s| format!(" {}={}ms", s.name, s.duration_ms))
                    .collect();
                format!(
                    "{kind} requestId={} status={}{spans}",
                    done.request_id, done.status
                )
            }
            Record::Report(report) => {
                if self.last_start.as_deref() == Some(&report.request_id) {
                    self.last_start = None;
                }
                format!(
                    "{kind} requestId={} status={} durationMs={}",
                    report.request_id, report.status, report.metrics.duration_ms
                )
            }
            Record::Function(record) => format!("{kind}: {}", text(record)),
            Record::ExtensionLog(record) => {
                let line = text(record);
                if line.starts_with(&self.echo_start) {
                    self.echoes += 1;
                    return None;
                }
                format!("{kind}: {line}")
            }
            // Every other type (platform.initReport, platform.extension,
            // platform.logsDropped, types newer than this crate...) by name.
            _ => kind.to_owned(),
        })
    }

    /// One clear line on stderr and a failing exit status.
    fn fail(&self, err: &Error) -> ExitCode {
        eprintln!("{} Error: {err}", self.prefix);
        ExitCode::FAILURE
    }
}

/// A log record as one line: the text, or compact JSON for JSON records.
fn text(record: &LogRecord) -> String {
    match record {
        LogRecord::Text(line) => line.trim_end().to_owned(),
        LogRecord::Json(value) => value.to_string(),
    }
}
