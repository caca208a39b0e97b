//! Signals for a running environment: Ctrl-C (SIGINT) or SIGTERM asks for
//! a spindown, as Lambda spins an environment down; a second Ctrl-C kills
//! every process at once and exits with 130, for a user who will not wait
//! for the shutdown budget.

use lext_sandbox::EnvironmentHandle;

/// Ctrl-C (or SIGTERM): a spindown shutdown. A second Ctrl-C kills every
/// process at once and exits.
pub(crate) fn watch(handle: EnvironmentHandle) {
    let signals = handle.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        note!("lext: shutting down (Ctrl-C again to kill at once)");
        signals.shutdown();
        let _ = tokio::signal::ctrl_c().await;
        lext_sandbox::kill_all_processes();
        std::process::exit(130);
    });
    tokio::spawn(async move {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            handle.shutdown();
        }
    });
}
