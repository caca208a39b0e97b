//! The sandboxed processes' private view of the file system.
//!
//! Real layers refer to `/opt` paths (AWS's Python samples launch
//! `/opt/<name>/extension.py`), and AWS's samples bind their telemetry
//! listeners to `sandbox.localdomain`. This module owns making both true for
//! the processes lext launches, on Linux, without touching the host: each
//! process starts in a private mount namespace in which the unpacked layers
//! directory is bind-mounted (read-only, where the kernel allows it) on
//! `/opt`, and a generated hosts file with
//! `127.0.0.1 sandbox.localdomain sandbox` is bind-mounted on `/etc/hosts`.
//!
//! How: the mounts are made in the forked child, between fork and exec, by a
//! `pre_exec` hook ([`Isolation::install`], used by [`crate::process`]).
//! Without root this needs a user namespace as well (what `unshare -Urm`
//! does): the child maps its own uid and gid to themselves (after denying
//! `setgroups`, which the kernel requires for an unprivileged gid map), so
//! the process keeps its identity and loses the namespace's capabilities at
//! exec. As root a mount namespace alone is enough. A `pre_exec` hook was
//! chosen over a re-exec helper because every step is a plain system call on
//! data prepared before the fork (paths as `CString`s, map lines as bytes):
//! nothing allocates or locks in the child, which is what makes `pre_exec`
//! safe, and no helper binary has to be found or shipped.
//!
//! Whether this works is decided once at start-up by [`detect`], which runs
//! the very same hook in a throwaway child. Where it cannot work (no user
//! namespaces, no `/opt` mount point), the [`Decision`] says so with a fix,
//! and the sandbox falls back to rewriting (`/opt` paths replaced by the
//! layers directory, `sandbox.localdomain` rewritten to `127.0.0.1` in
//! subscription URIs) after printing [`Decision::fallback_line`].

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rustix::fs::{Mode as FileMode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

/// The mount point of the layers inside the sandbox.
pub(crate) const OPT: &str = "/opt";
/// The hosts file replaced inside the sandbox.
pub(crate) const ETC_HOSTS: &str = "/etc/hosts";
/// The function's code inside the sandbox (`LAMBDA_TASK_ROOT`).
pub(crate) const VAR_TASK: &str = "/var/task";
/// The generated hosts file: loopback names plus Lambda's sandbox names.
pub(crate) const HOSTS_CONTENT: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\tsandbox.localdomain sandbox\n";

/// How the private mount namespace is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A user namespace plus a mount namespace (unprivileged, like
    /// `unshare -Urm`), the process keeping its uid and gid.
    UserNamespace,
    /// A mount namespace alone (lext runs as root).
    MountNamespace,
}

impl Mode {
    /// The mode for the current user: a mount namespace alone as root, a
    /// user namespace otherwise.
    pub(crate) fn for_current_user() -> Self {
        if rustix::process::geteuid().is_root() {
            Mode::MountNamespace
        } else {
            Mode::UserNamespace
        }
    }
}

/// What the sandbox does about `/opt` and `sandbox.localdomain`, decided
/// once at start-up by [`detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Isolation works: processes get `/opt` and `/etc/hosts` through a
    /// private mount namespace.
    Isolate(Mode),
    /// Isolation is impossible here; the sandbox rewrites paths and
    /// destination host names instead.
    Rewrite {
        /// Why isolation is impossible.
        reason: String,
        /// What the user can do about it.
        fix: String,
    },
}

impl Decision {
    /// The one line to print when falling back to rewriting; `None` when
    /// isolation works.
    pub(crate) fn fallback_line(&self) -> Option<String> {
        match self {
            Decision::Isolate(_) => None,
            Decision::Rewrite { reason, fix } => Some(format!(
                "lext: cannot give the sandbox a private /opt and /etc/hosts ({reason}); layers are \
                 used from their unpacked directory and sandbox.localdomain does not resolve inside \
                 the processes. Fix: {fix}"
            )),
        }
    }
}

/// Isolation could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `/opt` (or `/etc/hosts`) does not exist on the host, so there is
    /// nothing to mount over, and lext is not root and cannot create it.
    #[error("{path} does not exist on this host, so the layers cannot be mounted there; create it once with `sudo mkdir {path}`")]
    MissingMountPoint {
        /// The missing path.
        path: &'static str,
    },
    /// A path contains a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    NulInPath(PathBuf),
    /// Writing the hosts file or creating `/opt` failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A prepared isolation: the layers directory to show at `/opt` and the
/// generated hosts file, ready to be applied to any number of processes.
#[derive(Debug, Clone)]
pub(crate) struct Isolation {
    plan: Arc<Plan>,
}

/// Everything the child needs, computed before the fork so that the hook
/// does not allocate.
#[derive(Debug)]
struct Plan {
    mode: Mode,
    layers: CString,
    hosts: CString,
    /// Flags of the mount that holds the layers directory, which must be
    /// kept when remounting read-only inside a user namespace (the kernel
    /// refuses to clear "locked" flags such as `nosuid`).
    locked_flags: MountFlags,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// The function's code directory, shown read-only at `/var/task`.
    task: Option<CString>,
    /// The environment's own `/tmp`, shown over the host's.
    tmp: Option<TmpPlan>,
    /// Mount a `proc` of the process's PID namespace on `/proc`.
    proc: bool,
}

/// The environment's `/tmp` (see [`crate::tmp`]) and the host paths under
/// the host's `/tmp` that the processes must still reach there.
#[derive(Debug)]
struct TmpPlan {
    source: TmpSource,
    keep: Vec<Keep>,
}

#[derive(Debug)]
enum TmpSource {
    /// The detached mount of the environment's file system, cloned onto
    /// `/tmp` by each process.
    Mount(crate::tmp::FileSystem),
    /// A plain directory, bound at `/tmp`.
    Dir(CString),
}

/// A host path under `/tmp` shown at the same path inside (a file or a
/// directory the user named, or lext's own echo runtime), so that what was
/// reachable stays reachable once `/tmp` is the environment's. Its mount
/// point, and the directories leading to it, are made in the
/// environment's `/tmp`.
#[derive(Debug)]
struct Keep {
    path: CString,
    parents: Vec<CString>,
    dir: bool,
}

/// At most this many host paths are kept reachable under `/tmp` (the
/// child has a fixed array for them: it may not allocate).
const MAX_KEPT: usize = 32;

impl Isolation {
    /// Prepare isolation in `mode`: `layers_dir` will appear at `/opt`, and
    /// a hosts file is written to `state_dir/hosts`.
    ///
    /// `/opt` must exist on the host as a mount point; as root it is created
    /// when missing, otherwise that is [`IsolationError::MissingMountPoint`].
    pub(crate) fn new(
        mode: Mode,
        layers_dir: &Path,
        state_dir: &Path,
    ) -> Result<Self, IsolationError> {
        ensure_mount_points()?;
        let hosts_file = state_dir.join("hosts");
        std::fs::write(&hosts_file, HOSTS_CONTENT).map_err(|source| IsolationError::Io {
            what: "cannot write the sandbox hosts file",
            path: hosts_file.clone(),
            source,
        })?;
        let cstring = |path: &Path| {
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| IsolationError::NulInPath(path.to_owned()))
        };
        let locked_flags = rustix::fs::statvfs(layers_dir)
            .map(|vfs| {
                let bits = vfs.f_flag.bits() as u32;
                MountFlags::from_bits_truncate(bits)
                    & (MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC
                        | MountFlags::NOATIME
                        | MountFlags::NODIRATIME
                        | MountFlags::RELATIME)
            })
            .map_err(|source| IsolationError::Io {
                what: "cannot read the mount flags of the layers directory",
                path: layers_dir.to_owned(),
                source: source.into(),
            })?;
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let plan = Plan {
            mode,
            layers: cstring(layers_dir)?,
            hosts: cstring(&hosts_file)?,
            locked_flags,
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            task: None,
            tmp: None,
            proc: false,
        };
        Ok(Self {
            plan: Arc::new(plan),
        })
    }

    /// Shows `code_dir` read-only at `/var/task` too, as Lambda shows the
    /// function's code. `/var/task` must exist on the host as a mount
    /// point; as root it is created, otherwise `Err` says so and the
    /// isolation goes on without it.
    pub(crate) fn with_task(mut self, code_dir: &Path) -> Result<Self, (Self, IsolationError)> {
        if !Path::new(VAR_TASK).is_dir() {
            let created =
                rustix::process::geteuid().is_root() && std::fs::create_dir_all(VAR_TASK).is_ok();
            if !created {
                return Err((self, IsolationError::MissingMountPoint { path: VAR_TASK }));
            }
        }
        let Ok(task) = CString::new(code_dir.as_os_str().as_bytes()) else {
            return Err((self, IsolationError::NulInPath(code_dir.to_owned())));
        };
        // Just made: the plan is not shared yet.
        if let Some(plan) = Arc::get_mut(&mut self.plan) {
            plan.task = Some(task);
        }
        Ok(self)
    }

    /// Shows `tmp` at `/tmp`, and keeps each of `keep` (host paths under
    /// the host's `/tmp`, at most [`MAX_KEPT`]) reachable at its path.
    pub(crate) fn with_tmp(mut self, tmp: crate::tmp::Tmp, keep: &[PathBuf]) -> Self {
        let cstring = |path: &Path| CString::new(path.as_os_str().as_bytes()).ok();
        let source = match tmp {
            crate::tmp::Tmp::Mount(fd) => TmpSource::Mount(fd),
            crate::tmp::Tmp::Dir(dir) => match cstring(&dir) {
                Some(dir) => TmpSource::Dir(dir),
                None => return self,
            },
        };
        let keep = keep
            .iter()
            .take(MAX_KEPT)
            .filter_map(|path| {
                let parents = path
                    .ancestors()
                    .skip(1)
                    .take_while(|p| p.starts_with("/tmp") && *p != Path::new("/tmp"))
                    .filter_map(cstring)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Some(Keep {
                    path: cstring(path)?,
                    parents,
                    dir: path.is_dir(),
                })
            })
            .collect();
        // Just made: the plan is not shared yet.
        if let Some(plan) = Arc::get_mut(&mut self.plan) {
            plan.tmp = Some(TmpPlan { source, keep });
        }
        self
    }

    /// Shows at `/proc` the processes of the PID namespace each process
    /// starts in (see [`crate::pidns`]), not the host's.
    pub(crate) fn with_proc(mut self) -> Self {
        if let Some(plan) = Arc::get_mut(&mut self.plan) {
            plan.proc = true;
        }
        self
    }

    /// Whether `/var/task` is shown.
    pub(crate) fn has_task(&self) -> bool {
        self.plan.task.is_some()
    }

    /// The mode in use.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.plan.mode
    }

    /// The host directory shown at `/opt`.
    #[cfg(test)]
    pub(crate) fn layers_dir(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(self.plan.layers.as_bytes()))
    }

    /// The generated hosts file shown at `/etc/hosts`.
    #[cfg(test)]
    pub(crate) fn hosts_file(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(self.plan.hosts.as_bytes()))
    }

    /// Make `command`'s child enter the private namespace before exec.
    /// A failure in the child makes the spawn fail with the errno of the
    /// step that failed.
    pub(crate) fn install(&self, command: &mut tokio::process::Command) {
        let plan = self.plan.clone();
        // SAFETY: `Plan::apply` only makes system calls on data prepared
        // before the fork; it neither allocates nor takes locks, so it is
        // safe to run in the forked child of a multi-threaded process.
        unsafe {
            command.pre_exec(move || plan.apply());
        }
    }

    /// As [`install`](Self::install), and the child starts in `/var/task`
    /// (the runtime, as Lambda starts it). The directory is changed after
    /// the mounts: a `current_dir` would be entered before them, in the
    /// host's empty `/var/task`.
    pub(crate) fn install_in_task(&self, command: &mut tokio::process::Command) {
        let plan = self.plan.clone();
        // SAFETY: as `install`, plus one chdir(2) on a static path.
        unsafe {
            command.pre_exec(move || {
                plan.apply()?;
                if plan.task.is_some() {
                    rustix::process::chdir(c"/var/task")?;
                }
                Ok(())
            });
        }
    }
}

impl Plan {
    /// Runs in the child between fork and exec. Async-signal-safe: no
    /// allocation (rustix takes the prepared `&CStr`s as they are, and its
    /// errors convert to `io::Error` by errno, without boxing).
    fn apply(&self) -> io::Result<()> {
        match self.mode {
            Mode::UserNamespace => {
                // SAFETY: the child has one thread, so no other thread can
                // observe the change of namespaces.
                unsafe {
                    rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)?
                };
                // The kernel accepts an unprivileged gid_map only once
                // setgroups is denied.
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
            }
            Mode::MountNamespace => {
                // SAFETY: as above, a single-threaded child.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS)? };
            }
        }
        // Nothing mounted below may propagate back to the host's namespace
        // (systemd makes / shared by default).
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        rustix::mount::mount_bind_recursive(self.layers.as_c_str(), c"/opt")?;
        // Lambda's /opt is read-only. Best effort: a kernel that refuses the
        // read-only remount (rare, with exotic locked flags) still gets the
        // layers at /opt, which is what matters for fidelity.
        let _ = rustix::mount::mount_remount(
            c"/opt",
            MountFlags::BIND | MountFlags::RDONLY | self.locked_flags,
            c"",
        );
        rustix::mount::mount_bind(self.hosts.as_c_str(), c"/etc/hosts")?;
        if let Some(task) = &self.task {
            rustix::mount::mount_bind_recursive(task.as_c_str(), c"/var/task")?;
            // Read-only as in Lambda (best effort, as /opt).
            let _ = rustix::mount::mount_remount(
                c"/var/task",
                MountFlags::BIND | MountFlags::RDONLY | self.locked_flags,
                c"",
            );
        }
        if self.proc {
            // Best effort: without it, the host's processes stay visible.
            let _ = rustix::mount::mount(
                c"proc",
                c"/proc",
                c"proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"",
            );
        }
        // Last: the sources above may lie under the host's /tmp.
        if let Some(tmp) = &self.tmp {
            tmp.apply()?;
        }
        Ok(())
    }
}

impl TmpPlan {
    /// In the child, after the other mounts: the kept host paths are taken
    /// (as detached copies of their mounts) while the host's `/tmp` is
    /// still visible, then the environment's `/tmp` covers it, then the
    /// kept paths are put back at their places. No allocation: the copies
    /// go into a fixed array, the paths were prepared before the fork.
    fn apply(&self) -> io::Result<()> {
        use rustix::fs::CWD;
        use rustix::mount::{MoveMountFlags, OpenTreeFlags};
        let clone = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let mut kept: [Option<std::os::fd::OwnedFd>; MAX_KEPT] = [const { None }; MAX_KEPT];
        for (slot, keep) in kept.iter_mut().zip(&self.keep) {
            *slot = rustix::mount::open_tree(
                CWD,
                keep.path.as_c_str(),
                clone | OpenTreeFlags::AT_RECURSIVE,
            )
            .ok();
        }
        match &self.source {
            TmpSource::Mount(fs) => {
                let copy = rustix::mount::open_tree(fs, c"", clone | OpenTreeFlags::AT_EMPTY_PATH)?;
                rustix::mount::move_mount(
                    &copy,
                    c"",
                    CWD,
                    c"/tmp",
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                )?;
            }
            TmpSource::Dir(dir) => rustix::mount::mount_bind(dir.as_c_str(), c"/tmp")?,
        }
        for (slot, keep) in kept.iter_mut().zip(&self.keep) {
            let Some(copy) = slot.take() else { continue };
            // Best effort: a path that cannot be put back fails later, at
            // its exec or open, with its own error.
            for parent in &keep.parents {
                let _ = rustix::fs::mkdir(parent.as_c_str(), FileMode::from_raw_mode(0o755));
            }
            let target = if keep.dir {
                rustix::fs::mkdir(keep.path.as_c_str(), FileMode::from_raw_mode(0o755))
            } else {
                rustix::fs::open(
                    keep.path.as_c_str(),
                    OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                    FileMode::from_raw_mode(0o644),
                )
                .map(drop)
            };
            if target.is_ok() || target == Err(rustix::io::Errno::EXIST) {
                let _ = rustix::mount::move_mount(
                    &copy,
                    c"",
                    CWD,
                    keep.path.as_c_str(),
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                );
            }
        }
        Ok(())
    }
}

fn write_file(path: &std::ffi::CStr, contents: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, FileMode::empty())?;
    let written = rustix::io::write(&fd, contents)?;
    if written != contents.len() {
        return Err(io::Error::from_raw_os_error(
            rustix::io::Errno::IO.raw_os_error(),
        ));
    }
    Ok(())
}

/// `/opt` and `/etc/hosts` must exist to be mounted over; as root a missing
/// `/opt` is created (an empty directory, harmless on the host).
fn ensure_mount_points() -> Result<(), IsolationError> {
    if !Path::new(ETC_HOSTS).exists() {
        return Err(IsolationError::MissingMountPoint { path: ETC_HOSTS });
    }
    if Path::new(OPT).is_dir() {
        return Ok(());
    }
    if rustix::process::geteuid().is_root() {
        std::fs::create_dir_all(OPT).map_err(|source| IsolationError::Io {
            what: "cannot create",
            path: PathBuf::from(OPT),
            source,
        })
    } else {
        Err(IsolationError::MissingMountPoint { path: OPT })
    }
}

/// Decide at start-up whether isolation works, by applying it once in a
/// throwaway child (with an empty layers directory) that exits right after
/// the mounts, without exec. The answer is the kernel's and the user's, the
/// same for every environment of the process: it is found once, and the
/// environments started after the first (a function's, as invokes need
/// them) do not probe again while others serve invokes.
pub(crate) async fn detect() -> Decision {
    static DECISION: tokio::sync::OnceCell<Decision> = tokio::sync::OnceCell::const_new();
    DECISION.get_or_init(detect_now).await.clone()
}

async fn detect_now() -> Decision {
    let mode = Mode::for_current_user();
    match probe(mode).await {
        Ok(()) => Decision::Isolate(mode),
        Err(ProbeError::Prepare(error @ IsolationError::MissingMountPoint { path })) => {
            Decision::Rewrite {
                reason: error.to_string(),
                fix: format!("sudo mkdir {path}"),
            }
        }
        Err(ProbeError::Prepare(error)) => Decision::Rewrite {
            reason: error.to_string(),
            fix: "check that the temporary directory is writable".to_owned(),
        },
        Err(ProbeError::Child(error)) => Decision::Rewrite {
            reason: format!("creating a private mount namespace failed: {error}"),
            fix: namespace_fix(mode),
        },
    }
}

enum ProbeError {
    Prepare(IsolationError),
    Child(io::Error),
}

async fn probe(mode: Mode) -> Result<(), ProbeError> {
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lext-isolation-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    let layers = dir.join("layers");
    std::fs::create_dir_all(&layers).map_err(|source| {
        ProbeError::Prepare(IsolationError::Io {
            what: "cannot create",
            path: layers.clone(),
            source,
        })
    })?;
    let result = probe_in(mode, &layers, &dir).await;
    // Off the event loop: removing the directory the child's namespace
    // mounted over was seen to take hundreds of milliseconds on a busy
    // disk.
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
    result
}

async fn probe_in(mode: Mode, layers: &Path, dir: &Path) -> Result<(), ProbeError> {
    let isolation = Isolation::new(mode, layers, dir).map_err(ProbeError::Prepare)?;
    // The program is never executed: the last hook exits the child with
    // status 0 once the namespace is set up. /bin/sh is named only because
    // Command needs some program.
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    isolation.install(&mut command);
    // SAFETY: `_exit` is async-signal-safe and ends the child at once.
    unsafe {
        command.pre_exec(|| libc::_exit(0));
    }
    let mut child = command.spawn().map_err(ProbeError::Child)?;
    let status = child.wait().await.map_err(ProbeError::Child)?;
    if status.success() {
        Ok(())
    } else {
        Err(ProbeError::Child(io::Error::other(format!(
            "the probe child ended with {status}"
        ))))
    }
}

/// The fix for a kernel that refuses the namespaces, from the sysctls that
/// usually cause it.
fn namespace_fix(mode: Mode) -> String {
    if mode == Mode::MountNamespace {
        return "run lext where mount namespaces are allowed (in a container: --privileged or \
                CAP_SYS_ADMIN)"
            .to_owned();
    }
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        "sudo sysctl -w kernel.unprivileged_userns_clone=1".to_owned()
    } else if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        "sudo sysctl -w user.max_user_namespaces=15000".to_owned()
    } else if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0".to_owned()
    } else {
        "allow unprivileged user namespaces (sudo sysctl -w kernel.unprivileged_userns_clone=1) \
         or run lext as root"
            .to_owned()
    }
}

#[cfg(test)]
#[path = "isolation_tests.rs"]
mod tests;
