//! The parts of `bench-sandbox` (see [`crate::bench_sandbox`]).
//!
//! - `http`: a minimal HTTP/1.1 client and server over std::net.
//! - `floor`: the loopback and process-start floors.
//! - `lext`: starting and invoking the release `lext run`.
//! - `telemetry`: the 100,000-line delivery figure and its two helper roles.
//! - `stats`: percentiles.

pub(crate) mod floor;
pub(crate) mod http;
pub(crate) mod lext;
pub(crate) mod stats;
pub(crate) mod telemetry;
