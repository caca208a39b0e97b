//! Signals for a running environment: Ctrl-C (SIGINT), SIGTERM, SIGHUP or
//! SIGQUIT asks for a spindown, as Lambda spins an environment down; a
//! second Ctrl-C kills every process at once, removes the environment's
//! directory and exits with 130, for a user who will not wait for the
//! shutdown budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lext_sandbox::{EnvironmentHandle, FunctionHandle};

/// What a signal shuts down: one environment, or every environment of a
/// function (each within its own shutdown budget, at once).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Environment(EnvironmentHandle),
    Function(FunctionHandle),
}

impl Target {
    fn shutdown(&self) {
        match self {
            Self::Environment(h) => h.shutdown(),
            Self::Function(h) => h.shutdown(),
        }
    }
}

impl From<EnvironmentHandle> for Target {
    fn from(handle: EnvironmentHandle) -> Self {
        Self::Environment(handle)
    }
}

impl From<FunctionHandle> for Target {
    fn from(handle: FunctionHandle) -> Self {
        Self::Function(handle)
    }
}

/// The environment the signals are for: `lext run --watch` replaces it at
/// every reload.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    handle: Arc<Mutex<Target>>,
    /// A signal asked for the end (also if it came between two
    /// environments of a reload).
    stopping: Arc<AtomicBool>,
}

impl Current {
    /// Signals go to `handle` from now on.
    pub(crate) fn set(&self, handle: EnvironmentHandle) {
        *self.handle.lock().unwrap_or_else(PoisonError::into_inner) = handle.into();
    }

    /// Whether a signal asked lext to stop.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shutdown();
    }
}

/// Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT): a spindown shutdown of `handle`'s
/// environment. A second Ctrl-C kills every process at once and exits.
pub(crate) fn watch(handle: impl Into<Target>) -> Current {
    let current = Current {
        handle: Arc::new(Mutex::new(handle.into())),
        stopping: Arc::new(AtomicBool::new(false)),
    };
    let signals = current.clone();
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
        let current = current.clone();
        tokio::spawn(async move {
            if let Ok(mut s) = signal(kind) {
                s.recv().await;
                current.shutdown();
            }
        });
    }
    current
}
