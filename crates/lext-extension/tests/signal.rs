//! SIGTERM ends a blocking event loop that is blocked in a long poll.
//!
//! Its own test binary (one process), because the signal disposition and the
//! "signal received" flag are process-wide.

// Test helpers outside #[test] fns: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{registered_then, Reply};
use lext_extension::{Extension, RunEnd, Signal};

#[test]
fn sigterm_interrupts_a_blocked_event_next() {
    // The long poll never ends on its own.
    let api = registered_then(Reply::Hold);
    let registered = Extension::builder()
        .name("sig-ext")
        .runtime_api(api.api())
        .register()
        .unwrap();
    let api = std::sync::Arc::new(api);
    let seen = api.clone();
    let killer = std::thread::spawn(move || {
        // Let the loop block in /event/next first: wait until the fake API
        // has the poll, then a little more for the read to start.
        seen.wait_for(2);
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
    let start = Instant::now();
    let end = registered.run(|_| Ok(())).unwrap();
    killer.join().unwrap();
    assert_eq!(end, RunEnd::Signal(Signal::Term));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        api.paths().len(),
        2,
        "register and one poll: {:?}",
        api.paths()
    );
}
