//! Test peer: a function on `lambda_runtime`'s `run_concurrent` (feature
//! `concurrency-tokio`), as Lambda Managed Instances run it: with
//! `AWS_LAMBDA_MAX_CONCURRENCY` > 1 it starts that many long-poll workers
//! in one process. Each invoke prints one JSON log line with its request
//! id, as JSON logging does. A payload's `dir` makes the handler write
//! `<dir>/arrived-<request id>` on entry and wait (at most 10 s) until
//! `<dir>/release` exists, so a test knows when invokes are in flight
//! together without timing them; `sleep_ms` makes it sleep, then. Run by
//! tests/sandbox_lmi.rs.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let request_id = event.context.request_id.clone();
    println!(
        "{}",
        json!({"level": "INFO", "message": "handling", "requestId": request_id})
    );
    if let Some(dir) = event.payload.get("dir").and_then(Value::as_str) {
        let dir = std::path::Path::new(dir);
        std::fs::write(dir.join(format!("arrived-{request_id}")), b"")?;
        for _ in 0..1000 {
            if dir.join("release").exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    if let Some(ms) = event.payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(json!({
        "requestId": request_id,
        "workers": std::env::var("AWS_LAMBDA_MAX_CONCURRENCY").ok(),
        "initializationType": std::env::var("AWS_LAMBDA_INITIALIZATION_TYPE").ok(),
        "logFormat": std::env::var("AWS_LAMBDA_LOG_FORMAT").ok(),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run_concurrent(service_fn(handler)).await
}
