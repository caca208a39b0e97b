//! The real [`Host`]: the environment's processes, through
//! [`crate::process`].
//!
//! Each extension and the runtime is spawned in its own process group with
//! exactly the environment [`crate::env`] builds (nothing of the host's),
//! optionally inside the private mount namespace of [`crate::isolation`].
//! A task per process waits for its exit and reports it to the driver with
//! its Init generation, so that exits of an old environment cannot be
//! mistaken for the new one's. Signals go to whole process groups.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rustix::process::Signal as OsSignal;

use crate::cgroup::Cgroup;
use crate::isolation::Isolation;
use crate::lifecycle::{ExitStatus, LaunchFailure, Proc, Signal};
use crate::ports::{Exits, Host};
use crate::process::{self, LaunchErrorType, LineSink, PeakMemory, Source, Spec};

/// An external extension to launch.
#[derive(Debug, Clone)]
pub(crate) struct ExtensionSpec {
    /// Its name: the executable's file name.
    pub name: String,
    /// The path to execute (inside the sandbox's view of the file system).
    pub path: PathBuf,
}

/// The runtime to start.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its working directory (`None`: lext's own).
    pub cwd: Option<PathBuf>,
    /// Start in the isolation's `/var/task` instead of `cwd`.
    pub in_task: bool,
}

/// Live process groups by process, shared with the exit watchers.
type Groups = Arc<Mutex<HashMap<Proc, (u64, u32)>>>;

/// Runs the environment's processes for the driver.
pub(crate) struct ProcessHost {
    extensions: Vec<ExtensionSpec>,
    runtime: RuntimeSpec,
    runtime_env: Vec<(String, String)>,
    extension_env: Vec<(String, String)>,
    isolation: Option<Arc<Isolation>>,
    /// The environment's cgroup, when there is one: freeze, kill and
    /// memory go through it.
    cgroup: Option<Arc<Cgroup>>,
    /// The environment's PID namespace, when there is one.
    pid_ns: Option<Arc<crate::pidns::PidNamespace>>,
    /// The uid and gid to run the processes as (`--user`).
    user: Option<(u32, u32)>,
    sink: LineSink,
    groups: Groups,
    peak: PeakMemory,
    /// When `peak` was last sampled (see `peak_memory_mb`).
    sampled: Option<std::time::Instant>,
    generation: u64,
}

impl std::fmt::Debug for ProcessHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHost")
            .field("extensions", &self.extensions)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl ProcessHost {
    /// A host for these processes. `sink` receives every output line.
    pub(crate) fn new(
        extensions: Vec<ExtensionSpec>,
        runtime: RuntimeSpec,
        runtime_env: Vec<(String, String)>,
        extension_env: Vec<(String, String)>,
        isolation: Option<Arc<Isolation>>,
        cgroup: Option<Arc<Cgroup>>,
        sink: LineSink,
    ) -> Self {
        Self {
            extensions,
            runtime,
            runtime_env,
            extension_env,
            isolation,
            cgroup,
            pid_ns: None,
            user: None,
            sink,
            groups: Arc::default(),
            peak: PeakMemory::new(),
            sampled: None,
            generation: 0,
        }
    }

    /// Starts every process in `pid_ns`.
    pub(crate) fn with_pid_namespace(
        mut self,
        pid_ns: Option<Arc<crate::pidns::PidNamespace>>,
    ) -> Self {
        self.pid_ns = pid_ns;
        self
    }

    /// Runs every process as `user` (uid, gid).
    pub(crate) fn with_user(mut self, user: Option<(u32, u32)>) -> Self {
        self.user = user;
        self
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<Proc, (u64, u32)>> {
        // Nothing panics while holding the lock; a poisoned map is still
        // the right map.
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new Init: forget the previous environment's memory peak.
    fn new_generation(&mut self, generation: u64) {
        if generation != self.generation {
            self.generation = generation;
            self.peak = PeakMemory::new();
            self.sampled = None;
            if let Some(cgroup) = &self.cgroup {
                cgroup.reset_peak();
            }
        }
    }

    fn spawn(
        &mut self,
        spec: Spec,
        proc: Proc,
        generation: u64,
        exits: &Exits,
    ) -> Result<(), process::LaunchError> {
        let mut spec = spec;
        spec.cgroup = self.cgroup.as_ref().map(|c| c.join_fds());
        spec.pid_ns = self.pid_ns.clone();
        spec.user = self.user;
        let mut child = process::spawn(spec, self.sink.clone())?;
        let pgid = child.pid();
        self.groups().insert(proc, (generation, pgid));
        let groups = self.groups.clone();
        let cgroup = self.cgroup.clone();
        let exits = exits.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                // A failure while the cgroup's OOM killer struck: the kill
                // itself (SIGKILL), or a shell reporting its child's
                // (`sh -c` exits 137).
                Ok(info)
                    if info.code != Some(0)
                        && cgroup.as_ref().is_some_and(|c| c.new_oom_kill()) =>
                {
                    ExitStatus::OutOfMemory
                }
                Ok(info) => match (info.code, info.signal) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(sig)) => ExitStatus::Signal(sig),
                    (None, None) => ExitStatus::Code(-1),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for a process failed");
                    ExitStatus::Code(-1)
                }
            };
            {
                let mut groups = groups.lock().unwrap_or_else(PoisonError::into_inner);
                if groups
                    .get(&proc)
                    .is_some_and(|&(g, p)| g == generation && p == pgid)
                {
                    groups.remove(&proc);
                }
            }
            // Dropping `child` SIGKILLs what is left of its group
            // (grandchildren), so nothing outlives the process.
            drop(child);
            exits.report(generation, proc, status);
        });
        Ok(())
    }
}

impl Host for ProcessHost {
    fn launch_extension(
        &mut self,
        index: usize,
        generation: u64,
        exits: &Exits,
    ) -> Result<(), LaunchFailure> {
        self.new_generation(generation);
        let Some(ext) = self.extensions.get(index).cloned() else {
            return Err(LaunchFailure::UnknownError);
        };
        let mut spec = Spec::new(
            &ext.path,
            self.extension_env.clone(),
            Source::Extension(ext.name.clone()),
        );
        spec.isolation = self.isolation.clone();
        self.spawn(spec, Proc::Extension(index), generation, exits).map_err(|e| {
            // Lambda's own wording goes to the log, as rapid writes it.
            tracing::warn!(extension = ?ext.name, error = %crate::logline::printable(&e.message), "extension launch failed");
            (self.sink)(process::OutputLines {
                time: std::time::SystemTime::now(),
                source: Source::Extension(ext.name.clone()),
                stream: process::Stream::Stderr,
                // The message names the file: escaped, so that a name with
                // a newline cannot forge a line of the log.
                lines: vec![
                    crate::logline::printable(&format!("Error: {}", e.message)).into_owned(),
                ],
            });
            match e.error_type {
                LaunchErrorType::PermissionDenied => LaunchFailure::PermissionDenied,
                LaunchErrorType::UnknownError => LaunchFailure::UnknownError,
            }
        })
    }

    fn start_runtime(&mut self, generation: u64, exits: &Exits) -> Result<(), String> {
        self.new_generation(generation);
        let mut spec = Spec::new(
            &self.runtime.program,
            self.runtime_env.clone(),
            Source::Function,
        );
        spec.args = self.runtime.args.clone();
        spec.cwd = self.runtime.cwd.clone();
        spec.in_task = self.runtime.in_task;
        spec.isolation = self.isolation.clone();
        self.spawn(spec, Proc::Runtime, generation, exits)
            .map_err(|e| e.message)
    }

    fn signal(&mut self, proc: Proc, signal: Signal) {
        let Some(&(_, pgid)) = self.groups().get(&proc) else {
            return;
        };
        let os = match signal {
            Signal::Term => OsSignal::TERM,
            Signal::Kill => OsSignal::KILL,
        };
        if let Err(e) = process::signal_group(pgid, os) {
            tracing::debug!(?proc, error = %e, "signal not delivered");
        }
    }

    fn freeze(&mut self, frozen: bool) {
        // The cgroup freezes every process at once, those that left their
        // group too; SIGSTOP to each group is the fallback.
        if let Some(cgroup) = self.cgroup.as_ref().filter(|c| c.can_freeze()) {
            match cgroup.freeze(frozen) {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "cgroup freezer failed; signalling"),
            }
        }
        let signal = if frozen {
            OsSignal::STOP
        } else {
            OsSignal::CONT
        };
        let pgids: Vec<u32> = self.groups().values().map(|&(_, p)| p).collect();
        for pgid in pgids {
            if let Err(e) = process::signal_group(pgid, signal) {
                tracing::debug!(pgid, error = %e, "freeze/thaw not delivered");
            }
        }
    }

    fn sweep(&mut self) -> usize {
        self.cgroup.as_ref().map_or(0, |c| c.sweep())
    }

    fn peak_memory_mb(&mut self) -> u64 {
        // Without a cgroup, a sample reads /proc for every process (tens of
        // µs), too much for every invoke at thousands of invokes per
        // second. VmHWM is a per-process high-water mark, so a sample taken
        // a little later still sees a peak reached in between: sampling at
        // most every 50 ms loses only the peak of a process that grew and
        // exited within that window.
        // The cgroup's own peak comes first: every process, exited ones
        // included, as Lambda measures the environment, and one pread of
        // a file kept open, cheap enough for every invoke.
        if let Some(bytes) = self.cgroup.as_ref().and_then(|c| c.peak_bytes()) {
            self.peak.observe(bytes);
            return self.peak.peak_mb();
        }
        let now = std::time::Instant::now();
        if self
            .sampled
            .is_some_and(|at| now.duration_since(at) < std::time::Duration::from_millis(50))
        {
            return self.peak.peak_mb();
        }
        self.sampled = Some(now);
        let roots: Vec<u32> = self.groups().values().map(|&(_, p)| p).collect();
        self.peak.sample(&roots);
        self.peak.peak_mb()
    }
}
