//! End-to-end tests of `lext check` and `lext run --layer` against layers
//! built to break them: special files in a directory layer, zips whose
//! headers lie, ELF-looking bombs, duplicate names. Each test runs the built
//! `lext` binary with a deadline, reaps it with `wait4` to read its peak RSS,
//! and asserts what a user sees: the exit code and the line printed.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

#[path = "../crates/lext-layer/tests/support/mod.rs"]
mod support;

use std::ffi::{c_int, c_long};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Every run of lext here must end within this.
const DEADLINE: Duration = Duration::from_secs(20);

extern "C" {
    /// `pid_t wait4(pid_t, int *wstatus, int options, struct rusage *)`.
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
}

/// `WNOHANG` from `<sys/wait.h>`.
const WNOHANG: c_int = 1;

/// Linux's `struct rusage`: two `struct timeval` (two longs each), then
/// fourteen longs, the first of which is `ru_maxrss` in KiB.
#[repr(C)]
#[derive(Default)]
struct Rusage {
    times: [c_long; 4],
    ru_maxrss: c_long,
    rest: [c_long; 13],
}

/// What a run of lext left for its user.
#[derive(Debug)]
struct Outcome {
    /// The exit code; `None` when a signal ended it (or the deadline did).
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set size in KiB, from `wait4`.
    max_rss_kib: u64,
    elapsed: Duration,
    timed_out: bool,
}

impl Outcome {
    fn dump(&self) -> String {
        format!(
            "exit {:?} after {:?} (timed out: {}), peak RSS {} KiB\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.timed_out, self.max_rss_kib, self.stdout, self.stderr
        )
    }

    /// Asserts that lext ended in time, failed with exit code 1, did not
    /// panic, and printed a line containing every one of `needles`.
    #[track_caller]
    fn assert_refused_with(&self, needles: &[&str]) {
        assert!(!self.timed_out, "lext hung:\n{}", self.dump());
        assert_eq!(self.code, Some(1), "{}", self.dump());
        assert!(!self.stderr.contains("panicked"), "{}", self.dump());
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(
            all.lines().any(|l| needles.iter().all(|n| l.contains(n))),
            "no line containing all of {needles:?}:\n{}",
            self.dump()
        );
    }
}

/// Runs `lext ARGS` in `dir`, kills it at [`DEADLINE`], and reaps it with
/// `wait4` for its exit status and peak RSS.
// The child is reaped by `wait4` (std's `wait` cannot return rusage), which
// clippy cannot see.
#[allow(clippy::zombie_processes)]
fn lext(dir: &Path, args: &[&str]) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lext");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as c_int;
    let mut status: c_int = 0;
    let mut usage = Rusage::default();
    let mut timed_out = false;
    loop {
        // SAFETY: `status` and `usage` are valid for writes and `pid` is
        // our own child, not yet reaped (std never waits for it: `child` is
        // only used to kill it below).
        let reaped = unsafe { wait4(pid, &mut status, WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4: {}", std::io::Error::last_os_error());
        if reaped == pid {
            break;
        }
        if start.elapsed() > DEADLINE && !timed_out {
            timed_out = true;
            // Not reaped yet, so the pid is still ours.
            let _ = child.kill();
        }
        thread::sleep(Duration::from_millis(10));
    }
    let exited = status & 0x7f == 0;
    Outcome {
        code: exited.then_some((status >> 8) & 0xff),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        elapsed: start.elapsed(),
        timed_out,
    }
}

/// A directory layer with a good script extension and a FIFO.
fn layer_with_fifo(root: &Path, fifo: &str) -> std::path::PathBuf {
    let layer = root.join("layer");
    fs::create_dir_all(layer.join("extensions")).unwrap();
    fs::create_dir_all(layer.join("lib")).unwrap();
    let ok = layer.join("extensions/ok");
    fs::write(&ok, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&ok, fs::Permissions::from_mode(0o755)).unwrap();
    let status = Command::new("mkfifo")
        .arg(layer.join(fifo))
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    layer
}

#[test]
fn a_fifo_in_a_directory_layer_is_refused_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    for fifo in ["extensions/x", "lib/pipe"] {
        let scene = tmp.path().join(fifo.replace('/', "-"));
        fs::create_dir_all(&scene).unwrap();
        let layer = layer_with_fifo(&scene, fifo);
        let layer_arg = layer.display().to_string();
        let line = format!("{fifo}: a FIFO, not a regular file");

        let check = lext(&scene, &["check", &layer_arg]);
        check.assert_refused_with(&[&line, "Lambda layers are zip archives"]);

        let run = lext(&scene, &["run", "--layer", &layer_arg, "--invoke", "1"]);
        run.assert_refused_with(&["error: ", &line]);
        assert!(
            !run.stdout.contains("START"),
            "nothing ran:\n{}",
            run.dump()
        );
    }
}

#[test]
fn a_fifo_given_as_the_layer_itself_is_refused_not_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("layer.zip");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let arg = fifo.display().to_string();
    lext(tmp.path(), &["check", &arg]).assert_refused_with(&["layer.zip", "a FIFO"]);
    lext(tmp.path(), &["run", "--layer", &arg, "--invoke", "1"])
        .assert_refused_with(&["layer.zip", "a FIFO"]);
}
