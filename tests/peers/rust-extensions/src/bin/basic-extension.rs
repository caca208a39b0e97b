//! Test peer: the simplest `lambda-extension` extension; logs each event.

use lambda_extension::{service_fn, Error, LambdaEvent, NextEvent};

async fn events(event: LambdaEvent) -> Result<(), Error> {
    match event.next {
        NextEvent::Invoke(e) => println!(
            "[basic-extension] INVOKE {} deadline {}",
            e.request_id, e.deadline_ms
        ),
        NextEvent::Shutdown(e) => println!("[basic-extension] SHUTDOWN {}", e.shutdown_reason),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_extension::run(service_fn(events)).await
}
