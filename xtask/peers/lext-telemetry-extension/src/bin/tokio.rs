//! The tokio subject: the SDK's current-thread runtime; the event loop and a
//! task reading the batches share its one thread with the listener.

use std::process::ExitCode;

use lext_extension::{EventType, Extension};

fn main() -> ExitCode {
    let runtime = match lext_extension::tokio::runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("lext-telemetry-tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lext-telemetry-tokio: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), lext_extension::Error> {
    let mut ext = Extension::builder()
        .events([EventType::Invoke, EventType::Shutdown])
        .register_async()
        .await?;
    let mut telemetry = ext
        .subscribe_telemetry(lext_telemetry_extension::config())
        .await?;
    tokio::spawn(async move {
        while let Some(batch) = telemetry.recv().await {
            lext_telemetry_extension::signal(&batch);
        }
    });
    ext.run(|_event| async { Ok(()) }).await?;
    Ok(())
}
