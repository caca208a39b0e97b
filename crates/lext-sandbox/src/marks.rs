//! Marks: the moments of each process's life that the platform records and
//! telemetry do not tell, for a sink that draws a timeline (`lext run
//! --report`).
//!
//! The `platform.*` records give the invoke as a whole: its start, the
//! runtime's part (`runtimeDone`) and its end (`report`), when the last
//! INVOKE-subscribed extension is back in `/event/next`. What each process
//! did in between is not in them: when each extension came back, when a
//! process was started, signalled or ended, when the environment was frozen
//! and thawed. The driver tells those here, as it sees them, through
//! [`Sink::mark`], whose default does nothing: a sink that does not draw
//! costs one clock read and an empty call per mark.

use std::time::SystemTime;

use crate::lifecycle::{ExitStatus, Lifecycle, Proc};
use crate::sink::Sink;

/// Which process a [`Mark`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkProcess<'a> {
    /// The function runtime.
    Runtime,
    /// An external extension, by name.
    Extension(&'a str),
    /// All of the environment's processes (freeze and thaw).
    Environment,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkExit {
    /// It exited with this code.
    Code(i32),
    /// A signal (this number) killed it.
    Signal(i32),
    /// The kernel killed it: the environment was over its memory.
    OutOfMemory,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkKind {
    /// The process was started (Init begins for it).
    Launched,
    /// Its long poll arrived and was accepted: the runtime's
    /// `/runtime/invocation/next`, an extension's `/event/next`. After an
    /// INVOKE, this is when the process was done with it.
    Next,
    /// SHUTDOWN was delivered to the extension; it must be gone by
    /// `deadline_ms` (Unix epoch milliseconds).
    Shutdown {
        /// The event's `deadlineMs`.
        deadline_ms: u64,
    },
    /// The process was sent SIGTERM (`kill: false`) or SIGKILL.
    Signalled {
        /// SIGKILL rather than SIGTERM.
        kill: bool,
    },
    /// The process ended.
    Exited(MarkExit),
    /// Every process was stopped until the next event (the freeze).
    Frozen,
    /// The processes were resumed.
    Thawed,
}

/// One moment of a process's life; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark<'a> {
    /// When the driver saw it (the clock of the log lines' times).
    pub time: SystemTime,
    /// Who.
    pub process: MarkProcess<'a>,
    /// What.
    pub kind: MarkKind,
}

/// Tells `sink` that `kind` happened to `proc` now.
pub(crate) fn tell(sink: &dyn Sink, lc: &Lifecycle, proc: Proc, kind: MarkKind) {
    let process = match proc {
        Proc::Runtime => MarkProcess::Runtime,
        Proc::Extension(index) => match lc.extension_name(index) {
            Some(name) => MarkProcess::Extension(name),
            None => return,
        },
    };
    tell_process(sink, process, kind);
}

/// Tells `sink` that `kind` happened to the extension with this id now
/// (nothing for an id the lifecycle does not know).
pub(crate) fn tell_extension(
    sink: &dyn Sink,
    lc: &Lifecycle,
    id: crate::lifecycle::ExtensionId,
    kind: MarkKind,
) {
    if let Some((_, name, _)) = lc.extension(id) {
        tell_process(sink, MarkProcess::Extension(name), kind);
    }
}

/// Tells `sink` that `kind` happened to `process` now.
pub(crate) fn tell_process(sink: &dyn Sink, process: MarkProcess<'_>, kind: MarkKind) {
    sink.mark(&Mark {
        time: SystemTime::now(),
        process,
        kind,
    });
}

/// A process's exit as a mark.
pub(crate) fn exited(status: ExitStatus) -> MarkKind {
    MarkKind::Exited(match status {
        ExitStatus::Code(code) => MarkExit::Code(code),
        ExitStatus::Signal(signal) => MarkExit::Signal(signal),
        ExitStatus::OutOfMemory => MarkExit::OutOfMemory,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::{Environment, InvokeRequest};

    /// The marks, as `process kind` text.
    #[derive(Clone, Default)]
    struct Marks(Arc<Mutex<Vec<(String, MarkKind)>>>);

    impl Sink for Marks {
        fn mark(&self, mark: &Mark<'_>) {
            let who = match mark.process {
                MarkProcess::Runtime => "runtime".to_owned(),
                MarkProcess::Extension(name) => name.to_owned(),
                MarkProcess::Environment => "environment".to_owned(),
            };
            self.0.lock().unwrap().push((who, mark.kind));
        }
    }

    /// An extension that registers for both events and exits at SHUTDOWN.
    const EXTENSION: &str = r#"
import http.client, json, os, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
def call(method, path, body=None, headers={}):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    return r.headers, r.read()
h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
            {"Lambda-Extension-Name": "marked"})
me = {"Lambda-Extension-Identifier": h["Lambda-Extension-Identifier"]}
while json.loads(call("GET", "/2020-01-01/extension/event/next", headers=me)[1])["eventType"] != "SHUTDOWN":
    pass
"#;

    #[tokio::test]
    async fn every_process_is_marked_from_launch_to_exit() {
        // A bound, so that a stuck environment fails the test with the
        // marks so far instead of holding the suite.
        let marks = Marks::default();
        let seen = marks.clone();
        if tokio::time::timeout(Duration::from_secs(60), marked_run(marks))
            .await
            .is_err()
        {
            panic!(
                "the environment did not run and stop within 60 s; marks: {:?}",
                seen.0.lock().unwrap()
            );
        }
    }

    async fn marked_run(marks: Marks) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marked");
        let script = format!("#!{}\n{EXTENSION}", crate::test_support::python().display());
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = Environment::new()
            .extension(&path)
            .sink(marks.clone())
            .start()
            .await
            .unwrap();
        env.ready().await.unwrap();
        let response = env.invoke(InvokeRequest::new("{}")).await.unwrap();
        assert!(response.is_success());
        env.idle().await;
        // Long enough for the freeze (2 ms after the invoke) to land.
        tokio::time::sleep(Duration::from_millis(50)).await;
        env.stop().await.unwrap();
        let marks = marks.0.lock().unwrap().clone();
        let of = |who: &str| -> Vec<MarkKind> {
            marks
                .iter()
                .filter(|(w, _)| w == who)
                .map(|(_, k)| *k)
                .collect()
        };
        // The extension: launched, back in /event/next after Init and after
        // the invoke, sent SHUTDOWN, exited with 0.
        let ext = of("marked");
        assert_eq!(
            ext[..3],
            [MarkKind::Launched, MarkKind::Next, MarkKind::Next]
        );
        assert!(matches!(ext[3], MarkKind::Shutdown { deadline_ms } if deadline_ms > 0));
        assert_eq!(ext[4..], [MarkKind::Exited(MarkExit::Code(0))]);
        // The runtime starts once the extension has registered: after it.
        let first = |who: &str| marks.iter().position(|(w, _)| w == who).unwrap();
        assert!(first("marked") < first("runtime"));
        let runtime = of("runtime");
        assert_eq!(
            runtime[..3],
            [MarkKind::Launched, MarkKind::Next, MarkKind::Next]
        );
        assert_eq!(runtime[3], MarkKind::Signalled { kill: false });
        assert!(
            matches!(runtime.last(), Some(MarkKind::Exited(_))),
            "{runtime:?}"
        );
        // Frozen after the invoke (and after Init, if the invoke came more
        // than 2 ms later), thawed for each event: pairs, in order.
        let environment = of("environment");
        assert!(!environment.is_empty(), "{marks:?}");
        for pair in environment.chunks(2) {
            assert_eq!(
                pair,
                [MarkKind::Frozen, MarkKind::Thawed],
                "{environment:?}"
            );
        }
    }
}
