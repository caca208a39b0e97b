//! `kill_all` (the Ctrl-C path) SIGKILLs every live process group. In its
//! own test binary, because it kills every group this process started.

// Test helpers: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lext_sandbox::process::{self, LineSink, Source, Spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_kills_every_live_group() {
    let sink: LineSink = Arc::new(|_| {});
    let spawn = || {
        let mut spec = Spec::new("/bin/sh", vec![], Source::Extension("e".into()));
        spec.args = vec!["-c".into(), "sleep 300 & wait".into()];
        process::spawn(spec, sink.clone()).unwrap()
    };
    let mut a = spawn();
    let mut b = spawn();
    assert_eq!(process::kill_all(), 2);
    for p in [&mut a, &mut b] {
        let exit = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit.signal, Some(9));
    }
    drop((a, b));
    assert_eq!(process::kill_all(), 0, "dropped processes are forgotten");
}
