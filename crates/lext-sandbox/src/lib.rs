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
//! - [`process`]: launching the runtime and extensions in their own process
//!   groups with a clean environment, output captured line by line, signals
//!   (terminate, kill, freeze, thaw), exit status, peak memory.
//! - [`env`]: the runtime's and the extensions' environment variables.
//! - [`isolation`]: the private mount namespace that shows the layers at
//!   `/opt` and resolves `sandbox.localdomain` to loopback.
//! - [`logline`]: the CloudWatch text platform lines (`START`, `REPORT`, ...).

pub mod lifecycle;
pub mod refusal;
pub mod env;
pub mod isolation;
pub mod logline;
pub mod process;
