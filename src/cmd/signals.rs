//! Signals for a running environment: Ctrl-C (SIGINT), SIGTERM, SIGHUP or
//! SIGQUIT asks for a spindown, as Lambda spins an environment down; a
//! second Ctrl-C kills every process at once, removes the environment's
//! directory and exits with 130, for a user who will not wait for the
//! shutdown budget.

use lext_sandbox::EnvironmentHandle;

/// Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT): a spindown shutdown. A second
/// Ctrl-C kills every process at once and exits.
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
    // SIGTERM, SIGHUP (the terminal went away) and SIGQUIT: a spindown too,
    // so that nothing is left behind, the environment's directory included.
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ] {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Ok(mut s) = signal(kind) {
                s.recv().await;
                handle.shutdown();
            }
        });
    }
}
