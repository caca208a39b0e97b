//! Processes of the execution environment: the runtime and the extensions.
//!
//! This module owns everything the sandbox does to an OS process: launching
//! it in its own process group with exactly the environment it is given
//! ([`Command::env_clear`](tokio::process::Command::env_clear) first: the
//! host environment may hold secrets and is never passed through), capturing
//! its stdout and stderr line by line into a [`LineSink`], signalling the
//! whole group (terminate, kill, freeze with SIGSTOP, thaw with SIGCONT),
//! waiting for its exit, mapping launch failures to Lambda's `LaunchError`
//! error types, and measuring the peak memory of the process tree.
//!
//! No zombie and no orphan may outlive the sandbox, so three mechanisms
//! overlap on purpose:
//! - dropping a [`Process`] SIGKILLs its group (tokio then reaps the child
//!   in the background, so no zombie is left either);
//! - each child asks the kernel for SIGKILL when lext dies
//!   (`PR_SET_PDEATHSIG`), which covers a crashed or SIGKILLed lext;
//! - [`kill_all`] SIGKILLs every group still alive, for a Ctrl-C handler that
//!   is about to exit the process without running destructors.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process. [`spawn`] must therefore be called from a thread that
//! lives as long as the sandbox: a tokio worker or the main thread (any
//! `async fn`), never from inside `spawn_blocking`, whose threads retire
//! after a few idle seconds.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::task::JoinHandle;

use crate::isolation::Isolation;

/// Longest line handed to the sink as one record. A process that writes a
/// longer line (or binary data without newlines) is cut into chunks of this
/// size, so one line can never make the sandbox's memory grow without
/// bound. 256 KiB is CloudWatch's limit for one log event.
pub(crate) const MAX_LINE_BYTES: usize = 256 * 1024;

/// `ETXTBSY`, and how many times a spawn that meets it is retried (2 ms
/// apart) before it counts as a launch error.
const TEXT_BUSY: i32 = rustix::io::Errno::TXTBSY.raw_os_error();
const TEXT_BUSY_RETRIES: u32 = 50;

/// How long [`Process::wait`] waits, after the process exited, for its
/// output pipes to drain. A grandchild that inherited the pipes can keep
/// them open forever; its later lines still reach the sink, but the exit is
/// not held up by it.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Who wrote a line: the function (runtime process) or an extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The runtime and the function code in it (`function` telemetry records).
    Function,
    /// An external extension, by name (`extension` telemetry records).
    Extension(String),
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputLine {
    /// When the sandbox read the line (wall clock, for the telemetry `time`).
    pub time: SystemTime,
    /// Who wrote it.
    pub source: Source,
    /// Which pipe.
    pub stream: Stream,
    /// The line without its `\n` (or `\r\n`); invalid UTF-8 is replaced by
    /// U+FFFD.
    pub line: String,
}

/// The lines of one pipe that one read brought: they were all written by
/// then, so they share its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputLines {
    /// When the sandbox read them (wall clock, for the telemetry `time`).
    pub time: SystemTime,
    /// Who wrote them.
    pub source: Source,
    /// Which pipe.
    pub stream: Stream,
    /// The lines, each as [`OutputLine::line`], in order.
    pub lines: Vec<String>,
}

impl OutputLines {
    /// The lines one by one.
    pub(crate) fn into_lines(self) -> impl Iterator<Item = OutputLine> {
        let Self {
            time,
            source,
            stream,
            lines,
        } = self;
        lines.into_iter().map(move |line| OutputLine {
            time,
            source: source.clone(),
            stream,
            line,
        })
    }
}

/// Where output lines go. It is called from the reader tasks, once per read
/// of a pipe, in order per pipe; it must not block for long (push into a
/// channel or the telemetry hub).
pub(crate) type LineSink = Arc<dyn Fn(OutputLines) + Send + Sync>;

/// What to launch.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The executable. A path containing `/` is executed as is; a bare name
    /// is searched on the `PATH` given in [`Spec::env`] (inside the sandbox's
    /// view of the file system), never the host's.
    pub program: PathBuf,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// The complete environment: nothing else is passed.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` keeps lext's own (as RIE does for
    /// extensions).
    pub cwd: Option<PathBuf>,
    /// Whose output this is.
    pub source: Source,
    /// The private mount namespace to start the process in, if any (see
    /// [`crate::isolation`]).
    pub isolation: Option<Arc<Isolation>>,
    /// Start in the isolation's `/var/task` (the runtime).
    pub in_task: bool,
    /// The environment's cgroup to start the process in, if any: the
    /// files it writes itself into before exec (see
    /// [`crate::cgroup`]).
    pub cgroup: Option<Arc<Vec<std::os::fd::OwnedFd>>>,
    /// The environment's PID namespace to start the process in, if any
    /// (see [`crate::pidns`]); lext stays its parent.
    pub pid_ns: Option<Arc<crate::pidns::PidNamespace>>,
    /// Run as this uid and gid instead of lext's (lext must be root).
    pub user: Option<(u32, u32)>,
}

impl Spec {
    /// A spec with no arguments, no working directory and no isolation.
    pub(crate) fn new(
        program: impl Into<PathBuf>,
        env: Vec<(String, String)>,
        source: Source,
    ) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env,
            cwd: None,
            source,
            isolation: None,
            in_task: false,
            cgroup: None,
            pid_ns: None,
            user: None,
        }
    }
}

/// The error types of an extension Lambda could not launch (`EXTENSION ...
/// State: LaunchError ... Error Type: <type>`), as RIE maps a failed spawn
/// (github.com/aws/aws-lambda-runtime-interface-emulator,
/// `internal/lambda/core/registrations.go`,
/// `MapErrorToAgentInfoErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaunchErrorType {
    /// The file is not executable (EACCES).
    PermissionDenied,
    /// Anything else, including a wrong architecture (`exec format error`)
    /// and a missing file.
    UnknownError,
}

impl LaunchErrorType {
    /// `PermissionDenied` or `UnknownError`, as in the log line.
    #[cfg(test)]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LaunchErrorType::PermissionDenied => "PermissionDenied",
            LaunchErrorType::UnknownError => "UnknownError",
        }
    }
}

/// A process could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LaunchError {
    /// The error type, as the `EXTENSION` log line prints it.
    pub error_type: LaunchErrorType,
    /// Lambda's (Go's) wording: `fork/exec /opt/extensions/x: exec format error`.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl LaunchError {
    fn new(program: &Path, source: io::Error) -> Self {
        let error_type = match source.raw_os_error() {
            Some(code) if code == rustix::io::Errno::ACCESS.raw_os_error() => {
                LaunchErrorType::PermissionDenied
            }
            _ => LaunchErrorType::UnknownError,
        };
        let message = format!(
            "fork/exec {}: {}",
            program.display(),
            go_error_text(&source)
        );
        Self {
            error_type,
            message,
            source,
        }
    }
}

/// Go prints errno texts in lowercase without Rust's ` (os error N)` suffix:
/// `exec format error`, `permission denied`, `no such file or directory`.
fn go_error_text(error: &io::Error) -> String {
    let text = match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => error.to_string(),
    };
    let text = match text.find(" (os error") {
        Some(cut) => &text[..cut],
        None => &text[..],
    };
    text.to_lowercase()
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitInfo {
    /// The exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that killed it, otherwise.
    pub signal: Option<i32>,
}

impl ExitInfo {
    fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt as _;
        Self {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// Exit code 0.
    #[cfg(test)]
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Go's wording, as rapid logs it: `exit status 1`, `signal: killed`.
    pub(crate) fn describe(&self) -> String {
        crate::logline::describe_exit(self.code, self.signal)
    }
}

/// Live process groups, for [`kill_all`]. A std mutex: nothing awaits while
/// holding it, and `kill_all` must work from any context.
static LIVE_GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn register_group(pgid: i32) {
    let mut groups = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    groups.get_or_insert_with(HashSet::new).insert(pgid);
}

fn unregister_group(pgid: i32) {
    let mut groups = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(groups) = groups.as_mut() {
        groups.remove(&pgid);
    }
}

/// SIGKILL every process group this module started that is still alive.
///
/// For a Ctrl-C handler that exits without dropping the [`Process`]
/// handles. Returns how many groups were signalled.
pub(crate) fn kill_all() -> usize {
    let groups: Vec<i32> = {
        let guard = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
        guard.iter().flatten().copied().collect()
    };
    let mut killed = 0;
    for pgid in groups {
        if signal_group(pgid as u32, Signal::KILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// Send `signal` to every process of the group `pgid`.
///
/// An error of kind `NotFound` (ESRCH) means the group no longer exists.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "process group id 0"))?;
    rustix::process::kill_process_group(pid, signal).map_err(io::Error::from)
}

/// A launched process and its process group (whose id is its pid).
///
/// Dropping it SIGKILLs the whole group.
#[derive(Debug)]
pub(crate) struct Process {
    child: tokio::process::Child,
    pid: u32,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitInfo>,
}

/// Launch a process described by `spec`, its output going to `sink`.
///
/// The process gets its own process group, stdin from `/dev/null`, exactly
/// `spec.env`, and `PR_SET_PDEATHSIG = SIGKILL`. See the module
/// documentation for the thread it must be called from.
pub(crate) fn spawn(spec: Spec, sink: LineSink) -> Result<Process, LaunchError> {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: signals reach everything it starts, and a Ctrl-C
        // in lext's terminal is not delivered to it directly (lext decides
        // how the environment shuts down).
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        // Checked here because a failed chdir in the child comes back as
        // the same errno as a missing program, and the message would blame
        // the program.
        if !cwd.is_dir() {
            let source = io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
            return Err(LaunchError {
                error_type: LaunchErrorType::UnknownError,
                message: format!("chdir {}: {}", cwd.display(), go_error_text(&source)),
                source,
            });
        }
        command.current_dir(cwd);
    }
    if let Some(fds) = spec.cgroup.clone() {
        // SAFETY: runs in the forked child before exec: one write(2) per
        // descriptor, opened before the fork; no allocation, no locks. It
        // comes first, before the isolation may enter a user namespace in
        // which the cgroup files are no longer writable.
        unsafe {
            command.pre_exec(move || crate::cgroup::join(&fds));
        }
    }
    match &spec.isolation {
        Some(isolation) if spec.in_task => isolation.install_in_task(&mut command),
        Some(isolation) => isolation.install(&mut command),
        None => {}
    }
    if let Some((uid, gid)) = spec.user {
        // SAFETY: a few system calls on plain integers, no allocation, no
        // locks. After the mounts (which need root), before the
        // parent-death signal, which a change of uid clears.
        unsafe {
            command.pre_exec(move || become_user(uid, gid));
        }
    }
    // The parent as the child sees it: lext, or, from inside the
    // environment's PID namespace, no pid at all (0: it is outside).
    let parent = match spec.pid_ns {
        Some(_) => None,
        None => Some(rustix::process::getpid()),
    };
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes two system calls through rustix (no allocation, no locks), which
    // is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // lext may have died between fork and prctl: then the child was
            // already reparented (to the namespace's init, pid 1, inside
            // one) and would never get the signal.
            if rustix::process::getppid() != parent {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }

    // SAFETY: a few prctl/capset system calls on constants: no allocation,
    // no locks. After the mounts (which need the capabilities), before exec.
    unsafe {
        command.pre_exec(drop_capabilities);
    }

    // A path is executed with a plain execve as the last pre-exec step,
    // because std execs with `execvp`, which runs a file the kernel refuses
    // (ENOEXEC, e.g. a binary for the wrong architecture) through /bin/sh
    // instead of failing. Lambda (Go) fails with `exec format error`.
    if spec.program.as_os_str().as_bytes().contains(&b'/') {
        let exec = Arc::new(
            DirectExec::new(&spec.program, &spec.args, &spec.env)
                .map_err(|e| LaunchError::new(&spec.program, e))?,
        );
        // SAFETY: `DirectExec::exec` only calls execve on arrays prepared
        // before the fork; it neither allocates nor locks.
        unsafe {
            command.pre_exec(move || Err(exec.exec()));
        }
    }

    // A program written just before it runs (the environment's echo
    // runtime) can be briefly "busy": a child that another thread forked
    // while the file was open for writing holds that descriptor until it
    // execs, and the kernel refuses to exec a file open for writing
    // (ETXTBSY). It clears within moments, so wait a little, a bounded
    // number of times.
    let mut busy = 0;
    // Forks from this thread go into the environment's PID namespace until
    // `entered` is dropped, right after the fork: no await in between.
    let entered = match &spec.pid_ns {
        Some(ns) => Some(ns.enter().map_err(|e| LaunchError::new(&spec.program, e))?),
        None => None,
    };
    let spawned = loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(TEXT_BUSY) && busy < TEXT_BUSY_RETRIES => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            spawned => break spawned,
        }
    };
    drop(entered);
    let mut child = spawned.map_err(|e| LaunchError::new(&spec.program, e))?;
    // A spawned child always has a pid until it is reaped.
    let pid = child.id().unwrap_or_default();
    register_group(pid as i32);

    let mut readers = Vec::with_capacity(2);
    for pipe in [
        child.stdout.as_ref().map(AsFd::as_fd),
        child.stderr.as_ref().map(AsFd::as_fd),
    ]
    .into_iter()
    .flatten()
    {
        // Best effort: a smaller pipe only makes writes block sooner.
        let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_BYTES);
    }
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            stdout,
            spec.source.clone(),
            Stream::Stdout,
            sink.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(
            stderr,
            spec.source.clone(),
            Stream::Stderr,
            sink,
        )));
    }
    tracing::debug!(pid, program = %spec.program.display(), "process started");
    Ok(Process {
        child,
        pid,
        readers,
        exit: None,
    })
}

/// Between fork and exec: the process keeps its uid and gid but loses
/// every capability, for good, as Lambda runs functions unprivileged (AWS:
/// Lambda execution environment, the function runs as a user without
/// root's powers). As root it could otherwise unmount or remount `/opt`
/// and `/var/task` from inside. The secure bits stop a root process from
/// getting capabilities back at exec; the bounding set, the ambient set and
/// the process's own sets are emptied; `no_new_privs` stops set-uid
/// programs. Without capabilities to begin with (not root), the steps that
/// need them fail with EPERM and change nothing, which is the point.
fn drop_capabilities() -> io::Result<()> {
    use rustix::thread::{self as t, CapabilitiesSecureBits as Bits, CapabilitySet};
    let _ = t::set_capabilities_secure_bits(
        Bits::NO_ROOT | Bits::NO_ROOT_LOCKED | Bits::NO_SETUID_FIXUP | Bits::NO_SETUID_FIXUP_LOCKED,
    );
    empty_bounding_set();
    let _ = t::clear_ambient_capability_set();
    t::set_capabilities(
        None,
        t::CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    t::set_no_new_privs(true)?;
    Ok(())
}

/// Empties the capability bounding set, one capability a call, from 0 up
/// to the first that fails: EINVAL past the kernel's last capability, EPERM
/// without CAP_SETPCAP (nothing can be dropped then). Stopping there saves
/// the 20-odd calls past the last capability, and all 64 without root.
fn empty_bounding_set() {
    use rustix::thread::{self as t, CapabilitySet};
    for bit in 0..64 {
        if t::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << bit))
            .is_err()
        {
            break;
        }
    }
}

/// Between fork and exec (`--user`): becomes `uid`:`gid` with no
/// supplementary groups. The bounding set goes first, while the process
/// still has CAP_SETPCAP; the uid change then clears every capability.
fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    use rustix::process::{Gid, Uid};
    use rustix::thread as t;
    empty_bounding_set();
    t::set_thread_groups(&[])?;
    let gid = Gid::from_raw(gid);
    t::set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    t::set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

/// An `execve` call prepared before the fork: the path, argv and envp as
/// NUL-terminated strings plus the NULL-terminated pointer arrays into them.
struct DirectExec {
    path: CString,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    // Owners of the strings the pointer arrays point into; never mutated,
    // so the pointers stay valid for the life of this struct.
    _strings: Vec<CString>,
}

// SAFETY: the raw pointers point into `_strings`, which this struct owns and
// never mutates; sharing them between threads is as safe as sharing the
// `CString`s themselves.
unsafe impl Send for DirectExec {}
// SAFETY: see `Send`; nothing is mutated through a shared reference.
unsafe impl Sync for DirectExec {}

impl DirectExec {
    fn new(program: &Path, args: &[OsString], env: &[(String, String)]) -> io::Result<Self> {
        let nul = |_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a NUL byte in an argument or variable",
            )
        };
        let path = CString::new(program.as_os_str().as_bytes()).map_err(nul)?;
        let mut strings = Vec::with_capacity(1 + args.len() + env.len());
        strings.push(path.clone());
        for arg in args {
            strings.push(CString::new(arg.as_bytes()).map_err(nul)?);
        }
        for (key, value) in env {
            strings.push(CString::new(format!("{key}={value}")).map_err(nul)?);
        }
        let argc = 1 + args.len();
        let mut argv_ptrs: Vec<*const libc::c_char> =
            strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> =
            strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(Self {
            path,
            argv_ptrs,
            envp_ptrs,
            _strings: strings,
        })
    }

    /// Replace the (forked) process image; returns only on failure.
    fn exec(&self) -> io::Error {
        // SAFETY: both arrays are NULL-terminated and point to live
        // NUL-terminated strings owned by `self`.
        unsafe {
            libc::execve(
                self.path.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            );
        }
        io::Error::last_os_error()
    }
}

impl Process {
    /// The process id, which is also its process group id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Send `signal` to the process's whole group.
    #[cfg(test)]
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        signal_group(self.pid, signal)
    }

    /// SIGTERM to the group.
    #[cfg(test)]
    pub(crate) fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM)
    }

    /// SIGKILL to the group.
    #[cfg(test)]
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }

    /// Freeze the group (SIGSTOP), as Lambda freezes an idle environment.
    #[cfg(test)]
    pub(crate) fn freeze(&self) -> io::Result<()> {
        self.signal(Signal::STOP)
    }

    /// Thaw the group (SIGCONT).
    #[cfg(test)]
    pub(crate) fn thaw(&self) -> io::Result<()> {
        self.signal(Signal::CONT)
    }

    /// Wait for the process to exit, then (for at most half a second) for
    /// its output to be fully read, so that every line it wrote reached the
    /// sink before the exit is reported. Cancel-safe; calling it again after
    /// the exit returns the same result at once.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitInfo> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let status = self.child.wait().await?;
        let exit = ExitInfo::from_status(status);
        self.exit = Some(exit);
        let readers = std::mem::take(&mut self.readers);
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            for reader in readers {
                let _ = reader.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::debug!(
                pid = self.pid,
                "output pipes still open after exit (held by a descendant)"
            );
        }
        tracing::debug!(pid = self.pid, exit = %exit.describe(), "process exited");
        Ok(exit)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL works on stopped (frozen) processes too. The group may
        // hold descendants even when the leader has exited, so this is done
        // unconditionally; ESRCH (nothing left) is the normal case.
        let _ = signal_group(self.pid, Signal::KILL);
        unregister_group(self.pid as i32);
        // tokio reaps a dropped child in the background (its orphan queue),
        // so the killed leader does not stay a zombie.
    }
}

/// What one read of an output pipe takes at most: the pipe's default
/// capacity, so that a full default pipe is emptied in one call.
const READ_BYTES: usize = 64 * 1024;

/// What an output pipe holds before the process's writes block: enough
/// that a burst of lines is written at the speed of the pipe while lext
/// turns the previous ones into records (the default is 64 KiB). The
/// system's `pipe-max-size` may hold it lower: then the default stays.
pub(crate) const PIPE_BYTES: usize = 1024 * 1024;

/// Read `pipe` into `sink` until EOF: each read's complete lines as one
/// batch, stamped once.
async fn read_lines<R: AsyncRead + Unpin>(
    mut pipe: R,
    source: Source,
    stream: Stream,
    sink: LineSink,
) {
    let mut buf = Vec::with_capacity(READ_BYTES);
    // A line begun in an earlier read (at most MAX_LINE_BYTES).
    let mut partial: Vec<u8> = Vec::new();
    loop {
        buf.clear();
        let n = match pipe.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(%error, "output pipe read failed");
                0
            }
        };
        let time = SystemTime::now();
        let mut lines = Vec::new();
        if n == 0 {
            // EOF: a last line without a newline is still a line.
            if !partial.is_empty() {
                lines.push(text(&partial));
            }
        } else {
            split_lines(&buf[..n], &mut partial, &mut lines);
        }
        if !lines.is_empty() {
            sink(OutputLines {
                time,
                source: source.clone(),
                stream,
                lines,
            });
        }
        if n == 0 {
            return;
        }
    }
}

/// Appends the complete lines of `bytes` to `lines`, continuing the line
/// in `partial` and leaving the last incomplete one there. A line that
/// reaches [`MAX_LINE_BYTES`] without a newline is cut there.
fn split_lines(mut bytes: &[u8], partial: &mut Vec<u8>, lines: &mut Vec<String>) {
    // A read nearly always ends inside a line: the first newline of the next
    // read completes it, and the lines after it take the one pass below.
    if !partial.is_empty() {
        let room = MAX_LINE_BYTES - partial.len();
        if let Some(end) = memchr::memchr(b'\n', &bytes[..bytes.len().min(room + 1)]) {
            partial.extend_from_slice(&bytes[..end]);
            lines.push(text(partial));
            partial.clear();
            bytes = &bytes[end + 1..];
        }
    }
    if partial.is_empty() {
        // The lines this read completes, checked as UTF-8 in one pass (a
        // newline is never inside a character): when they are valid, each
        // is a plain copy. Invalid text, and a line too long, go the way
        // below, which gives the same lines.
        let whole = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1);
        if let Ok(text) = std::str::from_utf8(&bytes[..whole]) {
            let mut rest = text;
            while let Some(end) = memchr::memchr(b'\n', rest.as_bytes()) {
                if end > MAX_LINE_BYTES {
                    break;
                }
                let line = &rest[..end];
                lines.push(line.strip_suffix('\r').unwrap_or(line).to_owned());
                rest = &rest[end + 1..];
            }
            bytes = &bytes[whole - rest.len()..];
        }
    }
    while !bytes.is_empty() {
        let room = MAX_LINE_BYTES - partial.len();
        match memchr::memchr(b'\n', bytes) {
            Some(end) if end <= room => {
                if partial.is_empty() {
                    lines.push(text(&bytes[..end]));
                } else {
                    partial.extend_from_slice(&bytes[..end]);
                    lines.push(text(partial));
                    partial.clear();
                }
                bytes = &bytes[end + 1..];
            }
            _ => {
                // No newline within reach: take what fits, and cut the
                // record when it is full.
                let take = bytes.len().min(room);
                partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if partial.len() >= MAX_LINE_BYTES {
                    lines.push(text(partial));
                    partial.clear();
                }
            }
        }
    }
}

/// A line's text: without a trailing `\r`, invalid UTF-8 replaced.
fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Peak resident memory of process trees, for `Max Memory Used`.
///
/// Choice: the sum of `VmHWM` (each process's own peak resident set) over
/// the live processes of the trees rooted at the given pids (descendants
/// found through `/proc/<pid>/task/<tid>/children`), kept as a running
/// maximum across samples. Why: it needs no sampling thread, catches short
/// spikes that a sampler would miss, and costs a few `/proc` reads per
/// invoke. Its error, which docs/fidelity.md should state:
/// - it *overstates* when processes peak at different times (the sum of
///   peaks is not the peak of the sum) and counts shared pages (libc, a
///   shared runtime) once per process, while Lambda measures the cgroup;
/// - it *understates* by the page cache Lambda's cgroup counts, and by
///   processes that exited between samples or were reparented away from the
///   tree (a daemonizing grandchild); the running maximum keeps what earlier
///   samples saw.
///
/// Like Lambda's, the figure is the environment's peak so far, so it never
/// decreases between invokes of one environment.
#[derive(Debug, Default, Clone)]
pub(crate) struct PeakMemory {
    peak_bytes: u64,
}

impl PeakMemory {
    /// A tracker with no sample yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sample the trees under `roots` and return the peak so far, in bytes.
    pub(crate) fn sample(&mut self, roots: &[u32]) -> u64 {
        self.peak_bytes = self.peak_bytes.max(tree_peak_rss_bytes(roots));
        self.peak_bytes
    }

    /// Takes in a peak measured elsewhere (the environment's cgroup).
    pub(crate) fn observe(&mut self, bytes: u64) {
        self.peak_bytes = self.peak_bytes.max(bytes);
    }

    /// The peak so far in bytes.
    #[cfg(test)]
    pub(crate) fn peak_bytes(&self) -> u64 {
        self.peak_bytes
    }

    /// The peak so far in whole MB (MiB), rounded up, as `maxMemoryUsedMB`
    /// and `Max Memory Used` print it.
    pub(crate) fn peak_mb(&self) -> u64 {
        self.peak_bytes.div_ceil(1024 * 1024)
    }
}

/// Sum of `VmHWM` over the live processes in the trees rooted at `roots`
/// (see [`PeakMemory`] for what this measures). Processes that vanish while
/// being read are skipped.
pub(crate) fn tree_peak_rss_bytes(roots: &[u32]) -> u64 {
    let mut seen = HashSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    let mut total = 0;
    // One buffer for every /proc read: this runs once per invoke.
    let mut buf = String::with_capacity(4096);
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(status) = read_status(pid, &mut buf) else {
            continue; // gone meanwhile
        };
        total += status.vm_hwm_kb * 1024;
        push_children(pid, status.threads, &mut buf, &mut stack);
    }
    total
}

/// The two fields of `/proc/<pid>/status` the memory probe needs.
struct ProcStatus {
    vm_hwm_kb: u64,
    threads: u64,
}

fn read_proc(path: &str, buf: &mut String) -> bool {
    use std::io::Read as _;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_string(buf))
        .is_ok()
}

fn read_status(pid: u32, buf: &mut String) -> Option<ProcStatus> {
    if !read_proc(&format!("/proc/{pid}/status"), buf) {
        return None;
    }
    let field = |name: &str| -> Option<u64> {
        let line = buf.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(ProcStatus {
        // Kernel threads and zombies have no VmHWM: they hold no memory.
        vm_hwm_kb: field("VmHWM:").unwrap_or(0),
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Push the children of every thread of `pid`. A single-threaded process
/// (the common case) needs no directory listing: its only task is itself.
fn push_children(pid: u32, threads: u64, buf: &mut String, out: &mut Vec<u32>) {
    let mut read_children = |path: &str, buf: &mut String| {
        if read_proc(path, buf) {
            out.extend(buf.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    };
    if threads == 1 {
        read_children(&format!("/proc/{pid}/task/{pid}/children"), buf);
        return;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Some(path) = path.to_str() {
            read_children(path, buf);
        }
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
