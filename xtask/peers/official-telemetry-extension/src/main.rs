//! The benchmark's reference telemetry extension on the official
//! `lambda-extension` crate: registers for INVOKE and SHUTDOWN, subscribes
//! to `platform`, `function` and `extension` with the same buffering as the
//! lext subjects (1,000 items, 262,144 bytes, 25 ms), and for every batch
//! the crate decoded into its typed `LambdaTelemetry` events writes one line
//! to stdout: their number. Nothing else is written.
//!
//! The crate listens on a fixed port (default 9003) on 0.0.0.0; the
//! benchmark picks a free one and passes it in `BENCH_TELEMETRY_PORT`. The
//! crate keeps polling after SHUTDOWN, so the events processor exits the
//! process itself, as users of the crate must.

use std::io::Write;

use lambda_extension::{
    service_fn, Error, Extension, LambdaEvent, LambdaTelemetry, LogBuffering, NextEvent,
    SharedService,
};

async fn events(event: LambdaEvent) -> Result<(), Error> {
    if let NextEvent::Shutdown(_) = event.next {
        std::process::exit(0);
    }
    Ok(())
}

async fn telemetry(batch: Vec<LambdaTelemetry>) -> Result<(), Error> {
    // One write of the whole line (stdout is line-buffered).
    let _ = writeln!(std::io::stdout().lock(), "{}", batch.len());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let port: u16 = std::env::var("BENCH_TELEMETRY_PORT")
        .map_err(|_| "BENCH_TELEMETRY_PORT is not set")?
        .parse()?;
    Extension::new()
        .with_events(&["INVOKE", "SHUTDOWN"])
        .with_events_processor(service_fn(events))
        .with_telemetry_types(&["platform", "function", "extension"])
        .with_telemetry_buffering(LogBuffering {
            timeout_ms: 25,
            max_bytes: 262_144,
            max_items: 1000,
        })
        .with_telemetry_port_number(port)
        .with_telemetry_processor(SharedService::new(service_fn(telemetry)))
        .run()
        .await
}
