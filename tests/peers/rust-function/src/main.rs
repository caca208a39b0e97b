//! Test peer: an echo function on `lambda_runtime`. A payload with a `fail`
//! key makes it return an error; `sleep_ms` makes it wait first. Each
//! answer says which process served it (`instance`, random for each start:
//! pids repeat across environments, each in a PID namespace of its own) and
//! how many invokes that process has served (a count kept in a global, as a
//! warm environment keeps it), the tenant `Context` read, and the
//! `served-by-*` files in `/tmp`: each invoke leaves one named by its
//! process, so a `/tmp` shared between environments shows.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

/// Invokes this process has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// This process's random id.
fn instance() -> u64 {
    static INSTANCE: OnceLock<u64> = OnceLock::new();
    *INSTANCE.get_or_init(|| RandomState::new().hash_one(std::process::id()))
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    println!("[lambda_runtime] handling {}", event.context.request_id);
    let mark = format!("/tmp/served-by-{}", instance());
    std::fs::write(&mark, b"")?;
    if let Some(ms) = event.payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if event.payload.get("fail").is_some() {
        return Err("requested failure".into());
    }
    let mut tmp: Vec<String> = std::fs::read_dir("/tmp")?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("served-by-"))
        .collect();
    tmp.sort();
    Ok(json!({
        "tmp": tmp,
        "echo": event.payload,
        "requestId": event.context.request_id,
        "deadline": event.context.deadline,
        "arn": event.context.invoked_function_arn,
        "tenantId": event.context.tenant_id,
        "pid": std::process::id(),
        "instance": instance().to_string(),
        "served": SERVED.fetch_add(1, Ordering::Relaxed) + 1,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
