//! The blocking subject: the event loop on the main thread, the batches read
//! on a thread of their own (as the SDK's documentation shows).

use std::process::ExitCode;

use lext_extension::{EventType, Extension};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lext-telemetry-blocking: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), lext_extension::Error> {
    let mut ext = Extension::builder()
        .events([EventType::Invoke, EventType::Shutdown])
        .register()?;
    let telemetry = ext.subscribe_telemetry(lext_telemetry_extension::config())?;
    std::thread::spawn(move || {
        while let Some(batch) = telemetry.recv() {
            lext_telemetry_extension::signal(&batch);
        }
    });
    ext.run(|_event| Ok(()))?;
    Ok(())
}
