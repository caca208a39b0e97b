//! `rust-example-extension`: the Rust port of AWS's `go-example-extension`.
//!
//! Run with: `lext run` (from this repository), or against any Extensions
//! API: `AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001 rust-example-extension`.
//!
//! It registers for INVOKE and SHUTDOWN, prints the register response and
//! each event as tab-indented JSON, and exits after SHUTDOWN or on
//! SIGTERM/SIGINT, printing the same lines as the Go sample (the JSON is
//! indented with tabs, shown here as spaces):
//!
//! ```text
//! [rust-example-extension] Registering...
//! [rust-example-extension] Register response: {
//!     "functionName": "my-function",
//!     "functionVersion": "$LATEST",
//!     "handler": "function.handler"
//! }
//! [rust-example-extension] Waiting for event...
//! [rust-example-extension] Received event: {
//!     "eventType": "INVOKE",
//!     ...
//! }
//! [rust-example-extension] Received SHUTDOWN event
//! [rust-example-extension] Exiting
//! ```
//!
//! Differences from the Go sample, on purpose:
//! - Its bugs are not copied: `init/error`/`exit/error` succeed on 202 (the
//!   SDK's rule), and every line ends with a newline.
//! - A SHUTDOWN event prints its real fields (`eventType`, `deadlineMs`,
//!   `shutdownReason`); the Go struct printed empty INVOKE fields instead and
//!   dropped the reason. `tracing` is omitted when Lambda sends none.
//! - `accountId` is printed when present (the Go struct lacks the field).
//! - The lines go to stdout (Go's builtin `println` writes to stderr); Lambda
//!   captures both into the same log stream.
//! - A 403/500/garbage answer prints one `Error:` line on stderr and exits
//!   with status 1; the Go sample panics with a stack trace.
//!
//! The blocking flavour of `lext-extension` is used: no async runtime, so the
//! binary stays small and starts fast (see BENCHMARKS.md).

use std::io::Write;
use std::process::ExitCode;

use lext_extension::{Error, Extension, NextEvent, RunEnd, ShutdownEvent};
use serde::Serialize;

fn main() -> ExitCode {
    // Lambda requires the name of the executable's file; the SDK uses it by
    // default, and the prefix shows the same name, as the Go sample does.
    let name = match lext_extension::default_name() {
        Ok(name) => name,
        Err(err) => {
            eprintln!("[rust-example-extension] Error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let out = Out {
        prefix: format!("[{name}]"),
    };
    let builder = Extension::builder().name(name);

    out.line("Registering...");
    let registered = match builder.register() {
        Ok(r) => r,
        Err(Error::Interrupted { signal, .. }) => {
            out.lines(&[&format!("Received {signal}"), "Exiting"]);
            return ExitCode::SUCCESS;
        }
        Err(err) => return out.fail(&err),
    };
    // One write for both lines: start-up is what Lambda bills and waits for.
    out.lines(&[
        &format!("Register response: {}", pretty(registered.response())),
        "Waiting for event...",
    ]);
    let end = registered.run(|event| {
        match &event {
            NextEvent::Shutdown(shutdown) => {
                let shown = pretty(&ShutdownView::from(shutdown));
                out.line(&format!("Received event: {shown}"));
            }
            // Both lines in one write: one syscall per event on the hot path.
            NextEvent::Invoke(_) => out.lines(&[
                &format!("Received event: {}", pretty(&event)),
                "Waiting for event...",
            ]),
        }
        Ok(())
    });
    match end {
        Ok(RunEnd::Shutdown(_)) => {
            out.lines(&["Received SHUTDOWN event", "Exiting"]);
            ExitCode::SUCCESS
        }
        Ok(RunEnd::Signal(signal)) => {
            out.lines(&[&format!("Received {signal}"), "Exiting"]);
            ExitCode::SUCCESS
        }
        Err(err) => out.fail(&err),
    }
}

/// Writes the sample's prefixed lines.
struct Out {
    prefix: String,
}

impl Out {
    /// One message, written with a single `write` so that multi-line JSON is
    /// not interleaved with other output. A closed stdout is ignored: losing
    /// a log line must not kill the extension (println! would panic).
    fn line(&self, message: &str) {
        self.lines(&[message]);
    }

    /// Several messages, each on its own prefixed line, in one write.
    fn lines(&self, messages: &[&str]) {
        let len: usize = messages
            .iter()
            .map(|m| self.prefix.len() + m.len() + 2)
            .sum();
        let mut text = String::with_capacity(len);
        for message in messages {
            text.push_str(&self.prefix);
            text.push(' ');
            text.push_str(message);
            text.push('\n');
        }
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// One clear line on stderr and a failing exit status.
    fn fail(&self, err: &Error) -> ExitCode {
        eprintln!("{} Error: {err}", self.prefix);
        ExitCode::FAILURE
    }
}

/// The SHUTDOWN event in the order the sample prints events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShutdownView<'a> {
    event_type: &'static str,
    deadline_ms: u64,
    shutdown_reason: &'a str,
}

impl<'a> From<&'a ShutdownEvent> for ShutdownView<'a> {
    fn from(e: &'a ShutdownEvent) -> Self {
        Self {
            event_type: "SHUTDOWN",
            deadline_ms: e.deadline_ms,
            shutdown_reason: e.shutdown_reason.as_str(),
        }
    }
}

/// JSON indented with tabs, like Go's `json.MarshalIndent(v, "", "\t")`.
fn pretty<T: Serialize>(value: &T) -> String {
    let mut buf = Vec::with_capacity(256);
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    // Like the Go sample's prettyPrint, an unserializable value prints as
    // empty; these types always serialize.
    if value.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
