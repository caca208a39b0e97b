//! The environments' own directories (unpacked layers, the hosts file, the
//! echo runtime), and the cleanup of what a killed lext left behind.
//!
//! Each directory is `lext-run-*` in the system's temporary directory and
//! holds a marker file, [`MARKER`], with the pid of the process that made
//! it. It is removed when its environment is dropped, by
//! [`remove_all`] when the process is about to exit at once (a second
//! Ctrl-C), and otherwise by the first environment the next lext process
//! starts: a
//! directory whose marker names a process that no longer exists is a
//! leftover. Only directories with lext's marker are ever touched.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The marker file: `pid\n` of the owner.
pub(crate) const MARKER: &str = ".lext-sandbox-owner";

/// The prefix of every environment directory.
const PREFIX: &str = "lext-run-";

/// Directories of this process's live environments.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A new environment directory, marked as this process's.
pub(crate) fn create() -> io::Result<tempfile::TempDir> {
    // Once per process: a leftover is a killed process's, and none appears
    // while this one runs (the scan reads the whole temporary directory).
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| remove_leftovers(&std::env::temp_dir()));
    let dir = tempfile::Builder::new().prefix(PREFIX).tempdir()?;
    std::fs::write(dir.path().join(MARKER), format!("{}\n", std::process::id()))?;
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(dir.path().to_owned());
    Ok(dir)
}

/// Forgets a directory its environment has removed.
pub(crate) fn forget(dir: &Path) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|d| d != dir);
}

/// Removes every live environment's directory now, for a process about to
/// exit without dropping its environments.
pub(crate) fn remove_all() {
    let dirs = std::mem::take(&mut *LIVE.lock().unwrap_or_else(PoisonError::into_inner));
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes the `lext-run-*` directories under `tmp` whose marker names a
/// process that is gone. A directory without the marker (someone else's,
/// or an environment still being made) is left alone.
pub(crate) fn remove_leftovers(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(owner) = std::fs::read_to_string(dir.join(MARKER)) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<i32>() else {
            continue;
        };
        if !alive(pid) {
            tracing::debug!(dir = %dir.display(), pid, "removing a killed environment's directory");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Whether a process with this pid exists (signal 0 finds it, or finds it
/// owned by someone else).
fn alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_directories_of_dead_owners_are_removed() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let make = |name: &str, owner: Option<String>| {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
            if let Some(owner) = owner {
                std::fs::write(dir.join(MARKER), owner).unwrap_or_else(|e| panic!("{e}"));
            }
            dir
        };
        // A pid that cannot exist (beyond the kernel's pid_max).
        let dead = make("lext-run-dead", Some("4194305\n".into()));
        let live = make("lext-run-live", Some(format!("{}\n", std::process::id())));
        let unmarked = make("lext-run-unmarked", None);
        let other = make("other-dead", Some("4194305\n".into()));
        remove_leftovers(tmp.path());
        assert!(!dead.exists());
        assert!(live.exists() && unmarked.exists() && other.exists());
    }
}
