//! Test peer: a `lambda-extension` Telemetry API subscriber. It prints the
//! records it receives (not its own extension lines, which would loop).
//! The listener port comes from `TELEMETRY_PORT` so tests can run in
//! parallel.

use lambda_extension::{
    service_fn, Error, Extension, LambdaTelemetry, LambdaTelemetryRecord, SharedService,
};

async fn handler(events: Vec<LambdaTelemetry>) -> Result<(), Error> {
    for event in events {
        match event.record {
            LambdaTelemetryRecord::Function(line) => println!("[telemetry-extension] function: {line}"),
            LambdaTelemetryRecord::PlatformStart { request_id, .. } => {
                println!("[telemetry-extension] platform.start {request_id}")
            }
            LambdaTelemetryRecord::PlatformReport { request_id, metrics, .. } => println!(
                "[telemetry-extension] platform.report {request_id} maxMemoryUsedMB={} billedDurationMs={}",
                metrics.max_memory_used_mb, metrics.billed_duration_ms
            ),
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let port: u16 = std::env::var("TELEMETRY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9003);
    Extension::new()
        .with_telemetry_processor(SharedService::new(service_fn(handler)))
        .with_telemetry_types(&["platform", "function"])
        .with_telemetry_port_number(port)
        .run()
        .await
}
