//! Processes: group signals (freeze/thaw, kill), no orphan or zombie after
//! drop, PR_SET_PDEATHSIG when lext itself dies, peak memory of a tree.

// Test helpers: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lext_sandbox::process::{self, LineSink, OutputLine, PeakMemory, Source, Spec};

mod support_common;

fn collect() -> (LineSink, Arc<Mutex<Vec<OutputLine>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let sink: LineSink = Arc::new(move |line| sink_lines.lock().unwrap().push(line));
    (sink, lines)
}

fn sh(script: &str) -> Spec {
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
async fn wait_line(lines: &Arc<Mutex<Vec<OutputLine>>>, prefix: &str) -> String {
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
    let mut p = process::spawn(sh("sleep 300 & echo child $!; wait"), sink).unwrap();
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
    let p = process::spawn(sh("sleep 300 & echo child $!; wait"), sink).unwrap();
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
        sh("trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"),
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
    let python = support_common::python();
    let (sink, lines) = collect();
    // A child that touches 64 MiB and then waits.
    let script = format!(
        "{} -c 'import sys,time; b=bytearray(64*1024*1024); print(\"ready\", flush=True); time.sleep(300)' & wait",
        python.display()
    );
    let mut p = process::spawn(sh(&script), sink).unwrap();
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
            "pdeathsig_helper",
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
                // libtest prints `test pdeathsig_helper ... ` before it.
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
