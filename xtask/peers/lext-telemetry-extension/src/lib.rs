//! What both lext subjects of `bench-telemetry` share: the subscription and
//! the signal to the benchmark.
//!
//! Each subject registers for INVOKE and SHUTDOWN, subscribes to the
//! Telemetry API (`platform`, `function`, `extension`; at most 1,000 items,
//! 262,144 bytes or 25 ms per batch; schema 2022-12-13), and for every batch
//! writes one line to stdout: the number of events the SDK decoded into its
//! typed [`TelemetryEvent`](lext_extension::TelemetryEvent)s. The benchmark
//! reads that line from a pipe; nothing else is written.

use std::io::Write;

use lext_extension::{Buffering, LogType, TelemetryBatch, TelemetryConfig};

/// The subscription both flavours send.
pub fn config() -> TelemetryConfig {
    TelemetryConfig::default()
        .types([LogType::Platform, LogType::Function, LogType::Extension])
        .schema_version("2022-12-13")
        .buffering(Buffering {
            max_items: Some(1000),
            max_bytes: Some(262_144),
            timeout_ms: Some(25),
        })
}

/// Tells the benchmark that one batch reached the handler: one line with the
/// number of typed events (0 for a batch that was not a JSON array).
pub fn signal(batch: &TelemetryBatch) {
    let decoded = match batch {
        TelemetryBatch::Events { events, failures } if failures.is_empty() => events.len(),
        _ => 0,
    };
    // One write of the whole line (stdout is line-buffered).
    let _ = writeln!(std::io::stdout().lock(), "{decoded}");
}
