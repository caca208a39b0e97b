//! The benchmark's second reference: an extension on the official
//! `lambda-extension` crate that does what the floor does (register for
//! INVOKE and SHUTDOWN, wait for events) on a current-thread runtime.
//!
//! The crate keeps polling after SHUTDOWN, so the handler exits the process
//! itself, as users of the crate must.

use lambda_extension::{service_fn, Error, LambdaEvent, NextEvent};

async fn handler(event: LambdaEvent) -> Result<(), Error> {
    if let NextEvent::Shutdown(_) = event.next {
        std::process::exit(0);
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_extension::run(service_fn(handler)).await
}
