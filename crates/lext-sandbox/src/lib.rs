//! A local AWS Lambda execution environment, to run and test extensions.
//!
//! `lext-sandbox` runs a function runtime and its extensions the way Lambda
//! does: it launches the extensions, serves the Runtime, Extensions,
//! Telemetry and Logs APIs on one HTTP listener, runs the Init / Invoke /
//! Shutdown lifecycle with Lambda's timings, errors and limits, delivers
//! telemetry to subscribers for real, and writes CloudWatch's platform
//! lines. The processes are real: an extension under test is the binary you
//! ship.
//!
//! [`Environment`] is the front door, and all of it: `lext run` is a thin
//! client of it, and so is a test.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let layer = dir.path().join("layer");
//! # std::fs::create_dir_all(layer.join("extensions"))?;
//! # let extension = layer.join("extensions/quiet-extension");
//! # // An external extension that registers, then waits for events.
//! # std::fs::write(&extension, QUIET_EXTENSION)?;
//! # std::fs::set_permissions(&extension, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
//! use lext_protocol::telemetry::Record;
//! use lext_sandbox::{Capture, Environment, InvokeRequest};
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let capture = Capture::new();
//!     // A layer (zip or directory) with the extension under test, and the
//!     // built-in echo runtime as the function.
//!     let env = Environment::new()
//!         .layer(&layer)
//!         .sink(capture.clone())
//!         .start()
//!         .await?;
//!     env.ready().await?;
//!     for n in 0..2 {
//!         let response = env.invoke(InvokeRequest::new(format!(r#"{{"n":{n}}}"#))).await?;
//!         assert_eq!(response.payload(), format!(r#"{{"n":{n}}}"#));
//!     }
//!     // REPORT comes once every extension is done with the invoke.
//!     env.idle().await;
//!     let reports = capture.records("platform.report");
//!     assert_eq!(reports.len(), 2);
//!     for report in &reports {
//!         let Record::Report(report) = report else { unreachable!() };
//!         assert!(report.metrics.duration_ms >= 0.0);
//!     }
//!     let lines = capture.platform_lines();
//!     assert!(lines[0].starts_with("INIT_START Runtime Version: provided:al2023.v1"));
//!     assert!(lines[1].starts_with("EXTENSION\tName: quiet-extension\tState: Ready"));
//!     let summary = env.stop().await?;
//!     assert_eq!(summary.invokes, 2);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! # const QUIET_EXTENSION: &str = r#"#!/usr/bin/env python3
//! # import json, os, urllib.request
//! # api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
//! # request = urllib.request.Request(api + "/register", method="POST",
//! #     data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
//! #     headers={"Lambda-Extension-Name": "quiet-extension"})
//! # with urllib.request.urlopen(request) as answer:
//! #     id = answer.headers["Lambda-Extension-Identifier"]
//! # while True:
//! #     next = urllib.request.Request(api + "/event/next", headers={"Lambda-Extension-Identifier": id})
//! #     with urllib.request.urlopen(next) as answer:
//! #         if json.load(answer)["eventType"] == "SHUTDOWN":
//! #             break
//! # "#;
//! ```
//!
//! The test harness guide (`docs/harness.md` in the repository) shows the
//! same from an extension's own `cargo test`.
//!
//! It depends on `lext-protocol` for every wire type and never on the SDK,
//! so a bug in the SDK cannot be hidden by the same bug here.
//!
//! # Layout
//!
//! The public face: [`Environment`] (the builder) and
//! [`RunningEnvironment`]; [`Function`] and [`RunningFunction`]; [`FunctionConfig`]; [`InvokeRequest`] and
//! [`InvokeResponse`], shared with the Invoke API; the [`Sink`]s. Inside:
//!
//! - `environment`: the front door; it assembles the parts below.
//! - `function`: [`Function`], several environments of one function, as
//!   invokes need them (concurrency, spin-down, tenant isolation).
//! - `config`, `invocation`, `sink`: the leaf vocabulary of the face.
//! - `lifecycle`: the pure state machine (`transition(input, now) ->
//!   effects | refusal`) with every rule of Init, Invoke and Shutdown, and
//!   its typed refusals; on-demand, and Lambda Managed Instances
//!   ([`Environment::managed_instances`]).
//! - `driver`: the one task that owns the lifecycle, feeds it API calls,
//!   invokes, process exits and deadlines, and carries out its effects.
//! - `ports`: the traits the driver needs from the host and from
//!   telemetry.
//! - `events`: each lifecycle event as its platform line (`logline`) and
//!   its telemetry record (`platform`).
//! - `api`: the HTTP server of the Runtime, Extensions, Telemetry and Logs
//!   APIs; thin handlers that parse and refuse bad input as AWS does.
//! - `invoke`: the Lambda Invoke API endpoint.
//! - `host`, `process`, `env`, `isolation`: the real processes, in their
//!   own process groups, with a clean environment, output captured line by
//!   line, inside a private mount namespace that shows the layers at `/opt`.
//! - `tmp`: the environment's own `/tmp` of its ephemeral storage size.
//! - `pidns`: the environment's PID namespace, whose init is the guard.
//! - `telemetry`: the Telemetry and Logs API delivery engine.
//! - `echo`: the built-in echo runtime (also built as its own program).
//! - `ids`: fresh ids without a system call each.
//! - `marks`: the moments of each process's life no record tells, for
//!   a sink that draws a timeline ([`Sink::mark`]).

mod api;
mod cgroup;
mod config;
mod driver;
#[path = "../echo/runtime.rs"]
mod echo;
mod embedded;
mod env;
mod environment;
mod events;
mod eventstream;
mod function;
mod host;
mod ids;
mod invocation;
mod invoke;
mod isolation;
mod jsonlog;
mod lifecycle;
mod logline;
mod marks;
mod pidns;
mod platform;
mod ports;
mod process;
mod sink;
mod spool;
mod state;
mod stream;
mod tail;
mod telemetry;
#[cfg(test)]
mod test_support;
mod tmp;

pub use config::{FunctionConfig, LogFormat, LogLevel, Logging, DEFAULT_RUNTIME_VERSION};
pub use driver::{QueueLimit, Summary};
pub use environment::{
    kill_all_processes, Environment, EnvironmentError, EnvironmentHandle, RunningEnvironment,
    Runtime,
};
pub use function::{Function, FunctionHandle, RunningFunction, DEFAULT_IDLE_TIMEOUT};
pub use invocation::{InvokeRequest, InvokeResponse, InvokeResult};
/// The largest payload of a synchronous invoke (6 MB), as the Invoke API takes it.
pub use invoke::MAX_REQUEST_PAYLOAD as MAX_SYNC_PAYLOAD;
pub use marks::{Mark, MarkExit, MarkKind, MarkProcess};
pub use sink::{
    Capture, ConsoleSink, JsonLinesSink, LineSource, LogLine, Sink, OUTPUT_BUFFER_BYTES,
};

/// Runs the built-in echo runtime in this process until its Runtime API
/// connection ends (for a binary's hidden subcommand; environments run it
/// as a program of its own).
pub fn run_echo_runtime() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    echo::run().map_err(Into::into)
}
