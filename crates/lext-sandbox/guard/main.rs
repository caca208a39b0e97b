//! The cgroup guard: a small program (standard library only, compiled by
//! `build.rs`) that lext starts beside each environment's cgroup, outside
//! it, with a pipe on its standard input whose other end only lext holds.
//!
//! When lext ends in any way, a SIGKILL included, the pipe closes and the
//! guard wakes: it kills every process still in the cgroups named by its
//! arguments (those that left their process group, which
//! `PR_SET_PDEATHSIG` does not reach) and removes the cgroups. It does for
//! a killed lext what the end of a PID namespace's init does: nothing of
//! the environment outlives it. After a normal exit lext has removed the
//! cgroups already, and the guard finds nothing to do.
//!
//! Where the environment has a PID namespace (`src/pidns.rs`), the guard is
//! its init, pid 1: it also reaps the orphans reparented to it, and its
//! exit makes the kernel kill every process left in the namespace.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
    fn getpid() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
}

const SIGKILL: i32 = 9;

fn pids(dir: &Path) -> Vec<i32> {
    // A process outside the guard's PID namespace is listed as 0, and
    // kill(0) would signal the guard's own group: only real pids.
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .filter(|&pid| pid > 0)
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    // SAFETY: getpid(2) touches no memory.
    if unsafe { getpid() } == 1 {
        // The namespace's init: orphans become its children; reap them,
        // or their zombies would hold pids (and count against pids.max).
        std::thread::spawn(|| loop {
            let mut status = 0;
            // SAFETY: waitpid(2) writes the status into a local.
            if unsafe { waitpid(-1, &mut status, 0) } < 0 {
                // No child now: look again in a while.
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    // Wait for the end of lext: EOF, or an error, on the pipe.
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    while let Ok(n) = stdin.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    for dir in &dirs {
        if !dir.exists() {
            continue;
        }
        // A frozen process cannot die: thaw first (v1 and v2 files).
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        for _ in 0..200 {
            let left = pids(dir);
            if left.is_empty() {
                break;
            }
            for pid in left {
                // SAFETY: kill(2) with a pid read from the cgroup and a
                // constant signal; it touches no memory of ours.
                unsafe {
                    kill(pid, SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for dir in &dirs {
        for _ in 0..100 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
