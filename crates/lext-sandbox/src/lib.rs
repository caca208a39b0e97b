//! A local AWS Lambda execution environment.
//!
//! `lext-sandbox` runs a function runtime and its extensions the way Lambda
//! does: it launches the extensions, serves the Runtime, Extensions,
//! Telemetry and Logs APIs on one HTTP listener, runs the Init / Invoke /
//! Shutdown lifecycle with Lambda's timings, delivers telemetry to
//! subscribers, and prints CloudWatch's platform lines. It depends on
//! `lext-protocol` for every wire type and never on the SDK, so a bug in the
//! SDK cannot be hidden by the same bug here.
//!
//! # Layout
//!
//! - [`lifecycle`]: the pure state machine (`transition(input, now) ->
//!   effects | refusal`); every rule of the lifecycle lives here.
//! - [`refusal`]: every refused request, with its AWS status, `errorType`
//!   and message.
//! - [`api`]: the HTTP server (axum) of the Runtime, Extensions, Telemetry
//!   and Logs APIs; thin handlers that parse, refuse bad input as AWS does,
//!   and hand well-formed calls to the driver.
//! - [`driver`]: the one task that owns the lifecycle, feeds it API calls,
//!   invokes, process exits and deadlines, and carries out its effects;
//!   [`driver::Sandbox`] is the entry point.
//! - [`host`]: the driver's processes, through [`process`] and [`env`](mod@env).
//! - [`platform`]: the `platform.*` telemetry records with real figures.
//! - [`invoke`]: the Lambda Invoke API endpoint (`--serve`), compatible with
//!   `aws lambda invoke --endpoint-url` and the SDKs.
//! - [`echo`]: the built-in echo runtime (a separate process).
//! - [`ids`]: fresh request, extension, event and trace ids without a
//!   system call each.
//! - [`process`]: launching the runtime and extensions in their own process
//!   groups with a clean environment, output captured line by line, signals
//!   (terminate, kill, freeze, thaw), exit status, peak memory.
//! - [`env`](mod@env): the runtime's and the extensions' environment variables.
//! - [`isolation`]: the private mount namespace that shows the layers at
//!   `/opt` and resolves `sandbox.localdomain` to loopback.
//! - [`telemetry`]: the Telemetry and Logs API delivery engine (batching,
//!   init replay, `platform.logsDropped`, `--telemetry-out`).
//! - [`logline`]: the CloudWatch text platform lines (`START`, `REPORT`, ...).

pub mod api;
pub mod driver;
pub mod echo;
pub mod env;
pub mod host;
pub mod ids;
pub mod invoke;
pub mod isolation;
pub mod lifecycle;
pub mod logline;
pub mod platform;
pub mod process;
pub mod refusal;
pub mod telemetry;
