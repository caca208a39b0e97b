//! SIGTERM and SIGINT for the blocking flavour, without a thread.
//!
//! This module owns the process's SIGTERM/SIGINT disposition while a blocking
//! extension runs. Lambda sends SIGTERM to extensions that did not register
//! for SHUTDOWN (and at the end of the shutdown window); a developer sends
//! SIGINT with Ctrl-C. Either must end the event loop cleanly, including when
//! the loop is blocked in a `/event/next` long poll that has no timeout.
//!
//! How, and why this way: `install` sets a `sigaction` handler (no
//! `SA_RESTART`, so a blocked `read` in the receiving thread returns `EINTR`).
//! The handler stores the signal number in an atomic and calls
//! `shutdown(2)` on the socket the blocking transport is currently using
//! (registered through `ActiveSocket`). Both calls are async-signal-safe
//! (POSIX lists `shutdown`). The shutdown wakes the blocked read even when the
//! signal is delivered to another thread, and closes the race where the
//! signal lands between checking the flag and entering `read`: the transport
//! publishes its fd first, then checks the flag, then reads, so either it sees
//! the flag or the read returns at once. No thread is spawned and no pipe is
//! created, so start-up pays only two `sigaction` calls (about 1 us).
//!
//! The state is process-wide (one "current socket"), which fits Lambda's
//! model of one extension per process: run one blocking event loop at a time
//! with signal handling on; others can use `handle_signals(false)`.
//!
//! One consequence to know about: without `SA_RESTART`, a blocking system
//! call in the extension's own handler can also return `EINTR` when SIGTERM
//! arrives (std's `read_exact`/`write_all` retry it; a bare `read` returns
//! `ErrorKind::Interrupted`). Turn signal handling off with
//! `Builder::handle_signals(false)` if that matters to the handler's code.
//!
//! The async flavour uses `tokio::signal` instead; only [`Signal`] is shared.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// A termination signal that ended the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGTERM, sent by Lambda (and by `kill`).
    Term,
    /// SIGINT, sent by Ctrl-C.
    Int,
}

impl Signal {
    /// The conventional name, e.g. `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }

    /// The signal number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
        }
    }

    fn from_number(n: i32) -> Option<Self> {
        match n {
            libc::SIGTERM => Some(Signal::Term),
            libc::SIGINT => Some(Signal::Int),
            _ => None,
        }
    }
}

/// Displays the description Go's `os.Signal.String()` gives (`terminated`,
/// `interrupt`), which the Go sample prints as `Received terminated`.
impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Term => "terminated",
            Signal::Int => "interrupt",
        })
    }
}

/// The signal received, or 0. Written only by the handler (and reset by tests).
static PENDING: AtomicI32 = AtomicI32::new(0);
/// The socket a blocking call is waiting on, or -1.
static ACTIVE_FD: AtomicI32 = AtomicI32::new(-1);
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signum: libc::c_int) {
    // Only async-signal-safe work here: two atomics and shutdown(2).
    PENDING.store(signum, Ordering::SeqCst);
    let fd = ACTIVE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown(2) on an fd number has no memory-safety
        // preconditions. The fd is the transport's open socket: the
        // transport clears ACTIVE_FD before it drops the socket.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers once per process.
///
/// # Errors
/// The OS error if `sigaction` fails (it does not for these signals).
pub(crate) fn install() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    for signum in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `action` is fully initialised (zeroed, then the handler and
        // an empty mask set) before sigaction reads it; the handler is an
        // `extern "C" fn(c_int)` as sa_sigaction expects without SA_SIGINFO.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            // No SA_RESTART: a blocked read must return EINTR.
            action.sa_flags = 0;
            libc::sigaction(signum, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            INSTALLED.store(false, Ordering::SeqCst);
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The termination signal received so far, if any.
pub(crate) fn pending() -> Option<Signal> {
    Signal::from_number(PENDING.load(Ordering::SeqCst))
}

/// Publishes a socket as the one to shut down on a signal, for as long as
/// the guard lives. Clear it (drop the guard) before closing the socket.
#[derive(Debug)]
pub(crate) struct ActiveSocket(());

impl ActiveSocket {
    pub(crate) fn publish(fd: i32) -> Self {
        ACTIVE_FD.store(fd, Ordering::SeqCst);
        ActiveSocket(())
    }
}

impl Drop for ActiveSocket {
    fn drop(&mut self) {
        ACTIVE_FD.store(-1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_go() {
        assert_eq!(Signal::Term.to_string(), "terminated");
        assert_eq!(Signal::Int.to_string(), "interrupt");
        assert_eq!(Signal::from_number(libc::SIGTERM), Some(Signal::Term));
        assert_eq!(Signal::from_number(0), None);
        assert_eq!(Signal::Int.name(), "SIGINT");
        assert_eq!(Signal::Term.number(), libc::SIGTERM);
    }
}
