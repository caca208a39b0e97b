//! A PID namespace per environment: when its init dies, the kernel kills
//! every process in it, so that nothing of the environment outlives lext,
//! even one that left its process group and its cgroup's reach; and the
//! processes see only each other in `/proc`, as in Lambda's microVM.
//!
//! The init is the cgroup guard (`guard/main.rs`): it holds the namespace
//! as its pid 1, reaps the orphans reparented to it, and when lext ends in
//! any way (its pipe closes), kills what is left in the cgroup and exits,
//! which ends the namespace.
//!
//! How the environment's processes get in, and stay lext's own children
//! (lext waits for them, reads their exit status, holds their pipes, and
//! signals their process groups, all as before): `setns(CLONE_NEWPID)` on
//! a thread moves only the processes that thread forks next, not the
//! thread (pid_namespaces(7)). So [`PidNamespace::enter`] is called by
//! [`crate::process::spawn`] just before its fork and undone just after,
//! on the same thread with no await in between. The namespace itself is
//! made the same way: `unshare(CLONE_NEWPID)` on the calling thread, the
//! guard spawned (it becomes pid 1), and the thread moved back.
//!
//! Root only: both calls need `CAP_SYS_ADMIN`, and a user namespace,
//! which would give it without root, cannot be entered by a multi-threaded
//! process. Without it the cgroup guard alone does the kill.
//! `LEXT_NO_PID_NAMESPACE=1` turns it off.

use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

/// The environment variable that turns the PID namespace off.
pub(crate) const NO_PID_NAMESPACE_VAR: &str = "LEXT_NO_PID_NAMESPACE";

/// An environment's PID namespace, held by its init (the guard).
/// Dropping it ends the guard, and with it the namespace.
#[derive(Debug)]
pub(crate) struct PidNamespace {
    /// The environment's namespace.
    ns: OwnedFd,
    /// lext's own, to go back to.
    own: OwnedFd,
    /// The guard, pid 1 inside, and the write end of its pipe.
    guard: Option<(std::process::Child, std::process::ChildStdin)>,
}

/// The thread forks into the environment's namespace until this is
/// dropped.
#[derive(Debug)]
pub(crate) struct Entered<'a>(&'a PidNamespace);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Err(error) = back(&self.0.own) {
            tracing::error!(%error, "could not leave the environment's PID namespace");
        }
    }
}

fn back(own: &OwnedFd) -> io::Result<()> {
    rustix::thread::move_into_link_name_space(own.as_fd(), Some(LinkNameSpaceType::ProcessID))
        .map_err(io::Error::from)
}

impl PidNamespace {
    /// A new namespace whose init is `guard` (the guard program) with the
    /// cgroup directories `dirs` to clear when lext ends; `Err` says why
    /// there is none.
    pub(crate) fn create(guard: &Path, dirs: &[PathBuf]) -> Result<Self, String> {
        use std::os::unix::process::CommandExt as _;
        if std::env::var_os(NO_PID_NAMESPACE_VAR).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(format!("{NO_PID_NAMESPACE_VAR} is set"));
        }
        let open = |path: &str| {
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("opening {path}: {e}"))
        };
        let own = open("/proc/thread-self/ns/pid")?;
        // SAFETY: CLONE_NEWPID changes only which namespace this thread's
        // future children are made in; nothing else in the process depends
        // on it, and the thread is moved back below before anything else
        // forks on it.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWPID) }
            .map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;
        let spawned = std::process::Command::new(guard)
            .args(dirs)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Not in the terminal's process group: a Ctrl-C is lext's.
            .process_group(0)
            .spawn();
        back(&own).map_err(|e| format!("leaving the new PID namespace: {e}"))?;
        let mut child = spawned.map_err(|e| format!("starting its init: {e}"))?;
        let ns = match open(&format!("/proc/{}/ns/pid", child.id())) {
            Ok(ns) => ns,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(why);
            }
        };
        let stdin = child.stdin.take();
        Ok(Self {
            ns,
            own,
            guard: stdin.map(|stdin| (child, stdin)),
        })
    }

    /// Makes the processes this thread forks from now on, until the guard
    /// is dropped, start in the namespace.
    pub(crate) fn enter(&self) -> io::Result<Entered<'_>> {
        rustix::thread::move_into_link_name_space(
            self.ns.as_fd(),
            Some(LinkNameSpaceType::ProcessID),
        )?;
        Ok(Entered(self))
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        // The guard reads EOF, kills what is left and exits; the kernel
        // then kills whatever else is in the namespace. Reaped, bounded.
        if let Some((mut child, stdin)) = self.guard.take() {
            if !crate::cgroup::end_guard(&mut child, stdin) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
