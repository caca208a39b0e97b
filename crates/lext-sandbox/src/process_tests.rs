//! Unit tests of [`crate::process`]: output lines, the environment, launch
//! errors, exit status; group signals (freeze/thaw, kill), no orphan or
//! zombie after drop, PR_SET_PDEATHSIG when lext itself dies, `kill_all`,
//! peak memory of a tree.

use std::io::{BufRead as _, BufReader};
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use super::*;
use crate::process;

fn collect() -> (LineSink, Arc<StdMutex<Vec<OutputLine>>>) {
    let lines = Arc::new(StdMutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let sink: LineSink = Arc::new(move |batch: OutputLines| {
        sink_lines.lock().unwrap().extend(batch.into_lines());
    });
    (sink, lines)
}

fn sh(script: &str, env: Vec<(String, String)>) -> Spec {
    let mut spec = Spec::new("/bin/sh", env, Source::Extension("ext".into()));
    spec.args = vec!["-c".into(), script.into()];
    spec
}

#[tokio::test]
async fn lines_are_split_tagged_and_capped() {
    let (sink, lines) = collect();
    // A CRLF line, an empty line, an over-long line, and a last line
    // without newline.
    let script = "printf 'a\\r\\n\\n'; head -c 300000 /dev/zero | tr '\\0' x; printf '\\nlast'; echo err >&2";
    let mut process = spawn(sh(script, vec![]), sink).unwrap();
    let exit = process.wait().await.unwrap();
    assert!(exit.success());
    let lines = lines.lock().unwrap();
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.line.as_str())
        .collect();
    assert_eq!(
        stdout.len(),
        5,
        "{:?}",
        stdout.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert_eq!(stdout[0], "a");
    assert_eq!(stdout[1], "");
    assert_eq!(stdout[2].len(), MAX_LINE_BYTES);
    assert_eq!(stdout[3].len(), 300_000 - MAX_LINE_BYTES);
    assert_eq!(stdout[4], "last");
    let stderr: Vec<&OutputLine> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stderr)
        .collect();
    assert_eq!(stderr.len(), 1);
    assert_eq!(stderr[0].line, "err");
    assert!(lines
        .iter()
        .all(|l| l.source == Source::Extension("ext".into())));
}

#[tokio::test]
async fn the_environment_is_exactly_the_given_one() {
    std::env::set_var("LEXT_SECRET_FROM_HOST", "leaked");
    let (sink, lines) = collect();
    let env = vec![("ONLY".to_owned(), "this".to_owned())];
    let mut process = spawn(sh("env", env), sink).unwrap();
    process.wait().await.unwrap();
    let lines: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.line.clone())
        .collect();
    // sh itself adds PWD (and possibly SHLVL/_); nothing from the host.
    assert!(lines.contains(&"ONLY=this".to_owned()), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("LEXT_SECRET_FROM_HOST")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("HOME=")), "{lines:?}");
}

#[tokio::test]
async fn launch_errors_map_to_lambdas_error_types() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = collect();
    let not_exec = dir.path().join("not-exec");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let err = spawn(Spec::new(&not_exec, vec![], Source::Function), sink.clone()).unwrap_err();
    assert_eq!(err.error_type, LaunchErrorType::PermissionDenied);
    assert_eq!(
        err.message,
        format!("fork/exec {}: permission denied", not_exec.display())
    );

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, [0x7f, b'E', b'L', b'F', 0, 0, 0, 0]).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = spawn(Spec::new(&garbage, vec![], Source::Function), sink.clone()).unwrap_err();
    assert_eq!(err.error_type, LaunchErrorType::UnknownError);
    assert_eq!(
        err.message,
        format!("fork/exec {}: exec format error", garbage.display())
    );

    let mut in_missing_dir = Spec::new("/bin/sh", vec![], Source::Function);
    in_missing_dir.cwd = Some(dir.path().join("no-such-dir"));
    let err = spawn(in_missing_dir, sink.clone()).unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "chdir {}: no such file or directory",
            dir.path().join("no-such-dir").display()
        )
    );

    let missing = dir.path().join("missing");
    let err = spawn(Spec::new(&missing, vec![], Source::Function), sink).unwrap_err();
    assert_eq!(err.error_type, LaunchErrorType::UnknownError);
    assert!(
        err.message.ends_with(": no such file or directory"),
        "{}",
        err.message
    );
    assert_eq!(
        LaunchErrorType::PermissionDenied.as_str(),
        "PermissionDenied"
    );
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let (sink, _) = collect();
    let mut p = spawn(sh("exit 3", vec![]), sink.clone()).unwrap();
    let exit = p.wait().await.unwrap();
    assert_eq!(
        exit,
        ExitInfo {
            code: Some(3),
            signal: None
        }
    );
    assert_eq!(exit.describe(), "exit status 3");
    assert_eq!(p.wait().await.unwrap(), exit, "wait is idempotent");

    let mut p = spawn(sh("sleep 30", vec![]), sink).unwrap();
    p.kill().unwrap();
    let exit = p.wait().await.unwrap();
    assert_eq!(exit.signal, Some(9));
    assert_eq!(exit.describe(), "signal: killed");
}

#[test]
fn peak_memory_rounds_up_and_never_decreases() {
    let mut peak = PeakMemory::new();
    let me = std::process::id();
    let first = peak.sample(&[me]);
    assert!(
        first > 1024 * 1024,
        "a test process uses more than 1 MiB: {first}"
    );
    assert_eq!(peak.peak_mb(), first.div_ceil(1024 * 1024));
    // A tree that no longer exists adds nothing and lowers nothing.
    assert_eq!(peak.sample(&[u32::MAX - 1]), first.max(peak.peak_bytes()));
    assert_eq!(tree_peak_rss_bytes(&[u32::MAX - 1]), 0);
}

// ----- Process groups, signals and the process tree -----

/// `/bin/sh -c script` as the function, with a `PATH`.
fn sh_on_path(script: &str) -> Spec {
    let mut spec = Spec::new(
        "/bin/sh",
        vec![("PATH".into(), "/usr/bin:/bin".into())],
        Source::Function,
    );
    spec.args = vec!["-c".into(), script.into()];
    spec
}

/// The state letter of /proc/<pid>/stat (`R`, `S`, `T`, `Z`...), `None`
/// once the process is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// Wait until `pid` is gone (reaped), failing after 5 s.
async fn assert_gone(pid: u32, what: &str) {
    let start = Instant::now();
    while let Some(s) = state(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} (pid {pid}) still exists in state {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait for a line starting with `prefix` and return the rest.
async fn wait_line(lines: &Arc<StdMutex<Vec<OutputLine>>>, prefix: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.line.strip_prefix(prefix).map(str::to_owned))
        {
            return line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no line starting with {prefix:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_and_thaw_stop_and_continue_the_whole_group() {
    let (sink, lines) = collect();
    let mut p = process::spawn(sh_on_path("sleep 300 & echo child $!; wait"), sink).unwrap();
    let child: u32 = wait_line(&lines, "child ").await.parse().unwrap();
    p.freeze().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(p.pid()), Some('T'), "leader frozen");
    assert_eq!(state(child), Some('T'), "descendant frozen");
    p.thaw().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_ne!(state(p.pid()), Some('T'));
    assert_ne!(state(child), Some('T'));
    // SIGKILL reaches a frozen group too.
    p.freeze().unwrap();
    p.kill().unwrap();
    let exit = p.wait().await.unwrap();
    assert_eq!(exit.signal, Some(9));
    assert_gone(child, "grandchild after a group kill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_process_leaves_no_orphan_and_no_zombie() {
    let (sink, lines) = collect();
    let p = process::spawn(sh_on_path("sleep 300 & echo child $!; wait"), sink).unwrap();
    let leader = p.pid();
    let child: u32 = wait_line(&lines, "child ").await.parse().unwrap();
    drop(p);
    assert_gone(child, "orphan after drop").await;
    // The leader is our child: gone means reaped, not a zombie.
    assert_gone(leader, "leader after drop (zombie?)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_lets_a_process_exit_cleanly() {
    let (sink, lines) = collect();
    let mut p = process::spawn(
        sh_on_path("trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"),
        sink,
    )
    .unwrap();
    wait_line(&lines, "ready").await;
    p.terminate().unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(5), p.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(lines.lock().unwrap().iter().any(|l| l.line == "got TERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_covers_the_whole_tree() {
    let python = crate::test_support::python();
    let (sink, lines) = collect();
    // A child that touches 64 MiB and then waits.
    let script = format!(
        "{} -c 'import sys,time; b=bytearray(64*1024*1024); print(\"ready\", flush=True); time.sleep(300)' & wait",
        python.display()
    );
    let mut p = process::spawn(sh_on_path(&script), sink).unwrap();
    wait_line(&lines, "ready").await;
    let mut peak = PeakMemory::new();
    let bytes = peak.sample(&[p.pid()]);
    assert!(
        bytes >= 64 * 1024 * 1024,
        "the grandchild's 64 MiB is counted: {bytes}"
    );
    assert!(peak.peak_mb() >= 64);
    p.kill().unwrap();
    p.wait().await.unwrap();
    // After the processes are gone the peak stays.
    assert_eq!(peak.sample(&[p.pid()]), bytes);
}

/// The name libtest knows a test of this module by
/// (`process::tests::<name>`), for running this test binary again with
/// `--exact` and only that test.
fn test_name(name: &str) -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::{name}")
}

/// Env var that turns `pdeathsig_helper` into the parent process of
/// `parent_death_kills_children`.
const HELPER_ENV: &str = "LEXT_SANDBOX_PDEATHSIG_HELPER";

#[test]
#[ignore = "helper process started by parent_death_kills_children; not a test by itself"]
fn pdeathsig_helper() {
    assert!(
        std::env::var_os(HELPER_ENV).is_some(),
        "pdeathsig_helper only runs as the child of parent_death_kills_children"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (sink, _) = collect();
        let p = process::spawn(
            Spec {
                args: vec!["300".into()],
                ..Spec::new("/bin/sleep", vec![], Source::Function)
            },
            sink,
        )
        .unwrap();
        // The test reads this line and then SIGKILLs this process.
        #[allow(clippy::print_stdout)]
        {
            println!("CHILD {}", p.pid());
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(p);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_death_kills_children() {
    // Run this test binary again as the "lext" that dies.
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &test_name("pdeathsig_helper"),
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let child: u32 = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                // libtest prints `test process::tests::pdeathsig_helper ... `
                // before it.
                let at = l.find("CHILD ")?;
                l[at + "CHILD ".len()..].trim().parse().ok()
            })
            .expect("the helper printed its child's pid")
    })
    .await
    .unwrap();
    assert!(state(child).is_some(), "the grandchild runs");
    helper.kill().unwrap(); // SIGKILL: no destructor runs in the helper
    helper.wait().unwrap();
    // Only the kernel's parent-death signal can kill it now. Once killed it
    // is reparented and reaped by init; a zombie would also mean it died.
    let start = Instant::now();
    while let Some(s) = state(child) {
        if s == 'Z' {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the child of a dead lext survives (state {s})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Env var that turns `kill_all_helper` into the process of
/// `kill_all_kills_every_live_group`.
const KILL_ALL_HELPER_ENV: &str = "LEXT_SANDBOX_KILL_ALL_HELPER";
/// What `kill_all_helper` prints once every assertion held.
const KILL_ALL_HELPER_DONE: &str = "KILL_ALL_HELPER_DONE";

/// `kill_all` (the Ctrl-C path) SIGKILLs every live process group. In a
/// process of its own, because it kills every group this process started:
/// here it would kill other tests' children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process started by kill_all_kills_every_live_group; not a test by itself"]
async fn kill_all_helper() {
    assert!(
        std::env::var_os(KILL_ALL_HELPER_ENV).is_some(),
        "kill_all_helper only runs as the child of kill_all_kills_every_live_group"
    );
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
    #[allow(clippy::print_stdout)]
    {
        println!("{KILL_ALL_HELPER_DONE}");
    }
}

#[test]
fn kill_all_kills_every_live_group() {
    // Run this test binary again with only `kill_all_helper`, so that
    // `kill_all` there meets no other test's processes. This process must
    // not call `kill_all` itself.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &test_name("kill_all_helper"),
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_ALL_HELPER_ENV, "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kill_all_helper failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(KILL_ALL_HELPER_DONE),
        "kill_all_helper did not run to its end:\n{stdout}\n{stderr}"
    );
}

mod split {
    use proptest::prelude::*;

    use super::super::{split_lines, text, MAX_LINE_BYTES};

    /// The lines of `bytes` read in the given pieces, and the last partial
    /// line at EOF.
    fn read_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(at, bytes.len());
            split_lines(&bytes[at..cut], &mut partial, &mut lines);
            at = cut;
        }
        if !partial.is_empty() {
            lines.push(text(&partial));
        }
        lines
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_at_the_limit_across_reads() {
        let mut bytes = vec![b'x'; MAX_LINE_BYTES + 10];
        bytes.extend_from_slice(b"\r\nnext\n");
        let lines = read_in_pieces(&bytes, &[1000, MAX_LINE_BYTES - 1, MAX_LINE_BYTES + 3]);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "x".repeat(10));
        assert_eq!(lines[2], "next");
        // In one read, after a short line: the same cut.
        let mut one = b"short\n".to_vec();
        one.extend_from_slice(&bytes);
        let lines = read_in_pieces(&one, &[]);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "short");
        assert_eq!(lines[1].len(), MAX_LINE_BYTES);
        assert_eq!(lines[2], "x".repeat(10));
        assert_eq!(lines[3], "next");
    }

    proptest! {
        /// However the pipe's bytes are cut into reads, the lines are the
        /// same: a line split across reads is joined, `\r\n` ends a line as
        /// `\n` does, and the last line needs no newline.
        #[test]
        fn the_lines_do_not_depend_on_how_the_reads_cut_them(
            pieces in proptest::collection::vec(
                // Mostly valid UTF-8 (a read of valid text takes a faster
                // way), a two-byte character that a cut may split, and
                // now and then an invalid byte.
                prop_oneof![
                    3 => Just(&b"\n"[..]),
                    2 => Just(&b"\r"[..]),
                    6 => Just(&b"a"[..]),
                    2 => Just("é".as_bytes()),
                    1 => Just(&b"\xff"[..]),
                ],
                0..400,
            ),
            mut cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let bytes = pieces.concat();
            cuts.sort_unstable();
            let whole = read_in_pieces(&bytes, &[]);
            prop_assert_eq!(read_in_pieces(&bytes, &cuts), whole.clone());
            let expected: Vec<String> = {
                let mut v: Vec<String> = bytes
                    .split(|&b| b == b'\n')
                    .map(text)
                    .collect();
                // The split after a final newline is no line.
                if bytes.last().is_none_or(|&b| b == b'\n') {
                    v.pop();
                }
                v
            };
            prop_assert_eq!(whole, expected);
        }
    }
}
