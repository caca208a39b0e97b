//! One cgroup per environment: the memory limit and its peak, the freezer,
//! the process limit, the CPU share, and a kill that reaches every process,
//! including those that left their process group.
//!
//! Lambda runs each execution environment in a microVM whose memory is the
//! function's memory setting: an environment over it is killed
//! (`Runtime.OutOfMemory`), and "Max Memory Used" is what the environment
//! used, every process together (AWS: Lambda quotas, "Function memory"; AWS:
//! Configuring Lambda function memory). A cgroup gives the same on a shared
//! kernel. The cgroup is made under the one lext runs in (read from
//! `/proc/self/cgroup`), never anywhere else, and removed when the
//! environment ends; a killed lext's empty leftovers are removed at the next
//! start, by their `lext-<pid>-` names, when that pid is gone.
//!
//! Both cgroup versions are used: v1 controllers where the machine mounts
//! them (`memory`, `freezer`, `pids`, `cpu`), else v2 where lext's cgroup may
//! have children with the `memory` controller (a systemd-delegated subtree).
//! Where neither is possible, [`Cgroup::create`] says why, and the
//! environment runs as before: process groups, SIGSTOP, summed `VmHWM`.
//! `LEXT_NO_CGROUP=1` forces that fallback.

use std::fs;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The environment variable that turns cgroups off (the fallback's test).
pub(crate) const NO_CGROUP_VAR: &str = "LEXT_NO_CGROUP";

/// Lambda's limit on processes and threads per environment (AWS: Lambda
/// quotas, "Execution processes/threads": 1,024).
pub(crate) const PIDS_MAX: u32 = 1024;

/// The memory that buys one full vCPU (AWS: Configuring Lambda function
/// memory: "At 1,769 MB, a function has the equivalent of one vCPU"), and
/// the most vCPUs a function gets (6, at 10,240 MB).
const MB_PER_VCPU: f64 = 1769.0;
const MAX_VCPUS: f64 = 6.0;
const CFS_PERIOD_US: u64 = 100_000;

/// What bounds an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The function's memory, MB: the cgroup's memory limit.
    pub(crate) memory_mb: u32,
    /// Scale CPU with memory, as Lambda does.
    pub(crate) cpu_share: bool,
}

/// The CPU share Lambda gives `memory_mb`: memory / 1,769 MB of one vCPU,
/// at most 6.
pub(crate) fn vcpus(memory_mb: u32) -> f64 {
    (f64::from(memory_mb) / MB_PER_VCPU).min(MAX_VCPUS)
}

/// Why an environment has no cgroup; [`Unavailable::line`] is what the
/// user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable(pub(crate) String);

impl Unavailable {
    /// One line: the reason, what is lost, and the fix.
    pub(crate) fn line(&self) -> String {
        format!(
            "no cgroup for the environment ({}): memory is not limited (no Runtime.OutOfMemory), \
             Max Memory Used is sampled, processes that leave their group are not frozen; \
             run as root, or in a delegated cgroup (systemd-run --user --scope -p Delegate=yes)",
            self.0
        )
    }
}

#[derive(Debug)]
enum Layout {
    V1 {
        memory: PathBuf,
        freezer: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

/// An environment's cgroup. Dropping it kills what is left inside and
/// removes it.
#[derive(Debug)]
pub(crate) struct Cgroup {
    layout: Layout,
    /// `tasks` of each v1 hierarchy, or v2's `cgroup.procs`, open for
    /// writing: a child writes `0` to each between fork and exec, and so
    /// starts inside.
    join: Arc<Vec<OwnedFd>>,
    /// The OOM kills counted when last asked (see [`Cgroup::new_oom_kill`]).
    oom_seen: AtomicU64,
    /// The peak-memory file, kept open: read with `pread` at every invoke.
    peak: Option<fs::File>,
    /// The guard (see [`Cgroup::guard`]) and the write end of its pipe.
    guard: Option<(std::process::Child, std::process::ChildStdin)>,
}

/// The cgroup guard program (`guard/main.rs`, built by `build.rs`).
const GUARD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cgroup-guard"));

/// Cgroups alive in this process, for [`kill_all`].
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

impl Cgroup {
    /// Makes the environment's cgroup, or says why it cannot.
    pub(crate) fn create(limits: Limits) -> Result<Self, Unavailable> {
        if std::env::var_os(NO_CGROUP_VAR).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(Unavailable(format!("{NO_CGROUP_VAR} is set")));
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Unavailable(format!("reading /proc/self/mountinfo: {e}")))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| Unavailable(format!("reading /proc/self/cgroup: {e}")))?;
        let name = next_name();
        let layout = match v1_dir(&mounts, &own, "memory") {
            Some(base) => {
                sweep_leftovers(&base);
                let memory = make(&base, &name)?;
                let other = |controller| {
                    let base = v1_dir(&mounts, &own, controller)?;
                    sweep_leftovers(&base);
                    make(&base, &name).ok()
                };
                Layout::V1 {
                    memory,
                    freezer: other("freezer"),
                    pids: other("pids"),
                    cpu: if limits.cpu_share { other("cpu") } else { None },
                }
            }
            None => Layout::V2 {
                dir: v2_dir(&mounts, &own, &name, limits.cpu_share)?,
            },
        };
        let cgroup = Self {
            layout,
            join: Arc::new(Vec::new()),
            oom_seen: AtomicU64::new(0),
            peak: None,
            guard: None,
        };
        // From here on, Drop removes what was made.
        let cgroup = cgroup.configure(limits)?;
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.extend(cgroup.dirs().into_iter().map(Path::to_path_buf));
        Ok(cgroup)
    }

    fn configure(mut self, limits: Limits) -> Result<Self, Unavailable> {
        let bytes = u64::from(limits.memory_mb) << 20;
        let fail = |what: &str, e: io::Error| Unavailable(format!("{what}: {e}"));
        match &self.layout {
            Layout::V1 {
                memory, pids, cpu, ..
            } => {
                write(memory, "memory.limit_in_bytes", &bytes.to_string())
                    .map_err(|e| fail("memory.limit_in_bytes", e))?;
                // No swap either, where the kernel accounts for it.
                let _ = write(memory, "memory.memsw.limit_in_bytes", &bytes.to_string());
                if let Some(pids) = pids {
                    let _ = write(pids, "pids.max", &PIDS_MAX.to_string());
                }
                if let Some(cpu) = cpu {
                    let quota = (vcpus(limits.memory_mb) * CFS_PERIOD_US as f64) as u64;
                    let _ = write(cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string());
                    let _ = write(cpu, "cpu.cfs_quota_us", &quota.max(1000).to_string());
                }
            }
            Layout::V2 { dir } => {
                write(dir, "memory.max", &bytes.to_string()).map_err(|e| fail("memory.max", e))?;
                let _ = write(dir, "memory.swap.max", "0");
                let _ = write(dir, "pids.max", &PIDS_MAX.to_string());
                if limits.cpu_share {
                    let quota = (vcpus(limits.memory_mb) * CFS_PERIOD_US as f64) as u64;
                    let _ = write(
                        dir,
                        "cpu.max",
                        &format!("{} {CFS_PERIOD_US}", quota.max(1000)),
                    );
                }
            }
        }
        // On v1, the child writes itself into each hierarchy's `tasks`, not
        // `cgroup.procs`: the kernel moves a single thread that names itself
        // (`0`) without taking the global threadgroup lock, whose first
        // taking after a quiet spell waits for an RCU grace period: 5 to
        // 25 ms of Init at every cold spawn (BENCHMARKS.md, "Cold start").
        // Between fork and exec the child has one thread, so the thread is
        // the process. v2 has no such file for a domain cgroup, only
        // `cgroup.procs`.
        let file = match self.layout {
            Layout::V1 { .. } => "tasks",
            Layout::V2 { .. } => "cgroup.procs",
        };
        let mut join = Vec::new();
        for dir in self.dirs() {
            let procs = dir.join(file);
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(|e| fail(&procs.display().to_string(), e))?;
            join.push(OwnedFd::from(file));
        }
        self.join = Arc::new(join);
        let (dir, file) = self.peak_file();
        self.peak = fs::File::open(dir.join(file)).ok();
        Ok(self)
    }

    fn dirs(&self) -> Vec<&Path> {
        match &self.layout {
            Layout::V1 {
                memory,
                freezer,
                pids,
                cpu,
            } => std::iter::once(memory.as_path())
                .chain(freezer.as_deref())
                .chain(pids.as_deref())
                .chain(cpu.as_deref())
                .collect(),
            Layout::V2 { dir } => vec![dir.as_path()],
        }
    }

    /// Starts the guard: a small program outside the cgroup, written into
    /// `dir`, holding a pipe that only this process writes. When lext ends
    /// in any way, SIGKILL included, the pipe closes and the guard kills
    /// what is left in the cgroup and removes it: what the end of a PID
    /// namespace's init would do. Best effort: without it, the next lext
    /// removes the leftovers at its start.
    pub(crate) fn guard(&mut self, dir: &Path) {
        use std::os::unix::process::CommandExt as _;
        let program = match guard_program(dir) {
            Ok(program) => program,
            Err(error) => {
                tracing::debug!(%error, "the cgroup guard could not be written");
                return;
            }
        };
        let spawned = std::process::Command::new(&program)
            .args(self.dirs())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Not in the terminal's process group: a Ctrl-C is lext's.
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                if let Some(stdin) = child.stdin.take() {
                    self.guard = Some((child, stdin));
                }
            }
            Err(error) => tracing::debug!(%error, "the cgroup guard could not be started"),
        }
    }

    /// The cgroup's directories, for a guard started elsewhere (the PID
    /// namespace's init, [`crate::pidns`]).
    pub(crate) fn guard_dirs(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(Path::to_path_buf).collect()
    }

    /// What a child must do between fork and exec to start inside: write
    /// `0` (itself) to each of these.
    pub(crate) fn join_fds(&self) -> Arc<Vec<OwnedFd>> {
        Arc::clone(&self.join)
    }

    /// Whether the cgroup can freeze (else the caller uses SIGSTOP).
    pub(crate) fn can_freeze(&self) -> bool {
        match &self.layout {
            Layout::V1 { freezer, .. } => freezer.is_some(),
            Layout::V2 { .. } => true,
        }
    }

    /// Freezes or thaws every process inside at once, escapees included.
    pub(crate) fn freeze(&self, frozen: bool) -> io::Result<()> {
        match &self.layout {
            Layout::V1 {
                freezer: Some(dir), ..
            } => write(
                dir,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Layout::V1 { freezer: None, .. } => Err(io::ErrorKind::Unsupported.into()),
            Layout::V2 { dir } => write(dir, "cgroup.freeze", if frozen { "1" } else { "0" }),
        }
    }

    /// SIGKILLs every process inside, and waits (at most 2 s) until none
    /// is left. Returns how many are left.
    pub(crate) fn kill_all(&self) -> usize {
        let procs = self.procs_dir();
        kill_inside(procs, self.freezer_dir())
    }

    /// Kills what is still inside once every process of the environment
    /// has been reaped: those that left their process group (`setsid`).
    /// Returns how many there were.
    pub(crate) fn sweep(&self) -> usize {
        let left = pids_in(self.procs_dir()).len();
        if left > 0 {
            self.kill_all();
        }
        left
    }

    fn procs_dir(&self) -> &Path {
        match &self.layout {
            Layout::V1 { memory, .. } => memory,
            Layout::V2 { dir } => dir,
        }
    }

    fn freezer_dir(&self) -> Option<&Path> {
        match &self.layout {
            Layout::V1 { freezer, .. } => freezer.as_deref(),
            Layout::V2 { dir } => Some(dir),
        }
    }

    /// The peak memory of everything inside since the last
    /// [`reset_peak`](Self::reset_peak), in bytes: exited processes count.
    pub(crate) fn peak_bytes(&self) -> Option<u64> {
        let mut buf = [0u8; 32];
        let n = rustix::io::pread(self.peak.as_ref()?, &mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    fn peak_file(&self) -> (&Path, &'static str) {
        match &self.layout {
            Layout::V1 { memory, .. } => (memory, "memory.max_usage_in_bytes"),
            Layout::V2 { dir } => (dir, "memory.peak"),
        }
    }

    /// Starts the peak afresh (a new Init), where the kernel allows it.
    pub(crate) fn reset_peak(&self) {
        let _ = match &self.layout {
            Layout::V1 { memory, .. } => write(memory, "memory.max_usage_in_bytes", "0"),
            // Writing to memory.peak resets it since Linux 6.12.
            Layout::V2 { dir } => write(dir, "memory.peak", "reset"),
        };
    }

    /// Whether the kernel's OOM killer has killed a process inside since
    /// the last call.
    pub(crate) fn new_oom_kill(&self) -> bool {
        let count = self.oom_kills();
        count > self.oom_seen.swap(count, Ordering::Relaxed)
    }

    fn oom_kills(&self) -> u64 {
        let (dir, file) = match &self.layout {
            Layout::V1 { memory, .. } => (memory, "memory.oom_control"),
            Layout::V2 { dir } => (dir, "memory.events"),
        };
        read(dir, file)
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        let dirs: Vec<PathBuf> = self.dirs().into_iter().map(Path::to_path_buf).collect();
        for dir in &dirs {
            remove(dir);
        }
        // The guard finds nothing left, and ends: reap it (bounded).
        if let Some((mut child, stdin)) = self.guard.take() {
            end_guard(&mut child, stdin);
        }
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|d| !dirs.contains(d));
    }
}

/// Closes a guard's pipe, which tells it to clear its cgroup and end, and
/// waits for it at most 0.5 s. Returns whether it ended.
pub(crate) fn end_guard(child: &mut std::process::Child, stdin: std::process::ChildStdin) -> bool {
    drop(stdin);
    for _ in 0..100 {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Writes the guard program (`guard/main.rs`) into `dir`, executable.
pub(crate) fn guard_program(dir: &Path) -> io::Result<PathBuf> {
    let program = dir.join("cgroup-guard");
    crate::embedded::write_program(&program, GUARD)?;
    Ok(program)
}

/// SIGKILLs every process in every cgroup of this process (a second
/// Ctrl-C), and removes the cgroups. Returns how many were killed.
pub(crate) fn kill_all() -> usize {
    let dirs: Vec<PathBuf> = LIVE.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut killed = 0;
    for dir in &dirs {
        killed += pids_in(dir).len();
        // Thaw first where this is a freezer: a frozen process cannot die.
        let _ = write(dir, "freezer.state", "THAWED");
        let _ = write(dir, "cgroup.freeze", "0");
        kill_inside(dir, None);
        remove(dir);
    }
    killed
}

fn kill_inside(procs: &Path, freezer: Option<&Path>) -> usize {
    if let Some(dir) = freezer {
        let _ = write(dir, "freezer.state", "THAWED");
        let _ = write(dir, "cgroup.freeze", "0");
    }
    // cgroup v2 kills everything at once (Linux 5.14+); v1 needs a loop,
    // since a process may fork while it is being killed.
    let _ = write(procs, "cgroup.kill", "1");
    for _ in 0..200 {
        let pids = pids_in(procs);
        if pids.is_empty() {
            return 0;
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    pids_in(procs).len()
}

fn pids_in(dir: &Path) -> Vec<i32> {
    read(dir, "cgroup.procs")
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `lext-<pid>-<n>`: this process's n-th environment.
fn next_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "lext-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes `lext-<pid>-*` cgroups under `base` whose pid is gone: what a
/// killed lext left, with any process still inside (one that had left its
/// process group, so that `PR_SET_PDEATHSIG` did not reach it).
fn sweep_leftovers(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lext-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let dir = entry.path();
            let left = kill_inside(&dir, Some(&dir));
            if left == 0 {
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

fn make(base: &Path, name: &str) -> Result<PathBuf, Unavailable> {
    let dir = base.join(name);
    fs::create_dir(&dir).map_err(|e| Unavailable(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Removes a cgroup directory once its processes are gone (bounded).
fn remove(dir: &Path) {
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    tracing::warn!(cgroup = %dir.display(), "cgroup could not be removed");
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

/// Where lext's own cgroup of the v1 `controller` hierarchy is on disk.
fn v1_dir(mountinfo: &str, own: &str, controller: &str) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })?;
    let (root, mountpoint) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        if fstype != "cgroup" || !options.split(',').any(|o| o == controller) {
            return None;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        Some((fields.get(3)?.to_string(), fields.get(4)?.to_string()))
    })?;
    Some(on_disk(&mountpoint, &root, &path))
}

/// lext's cgroup in the v2 hierarchy, and a child of it with the memory
/// controller, or why not. The controllers must be enabled in lext's own
/// cgroup for its children; the kernel refuses that while processes live
/// in it (other than in the root), which is the usual case outside a
/// delegated subtree, and is reported, not worked around.
fn v2_dir(mountinfo: &str, own: &str, name: &str, cpu: bool) -> Result<PathBuf, Unavailable> {
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| Unavailable("neither a cgroup v1 memory controller nor cgroup v2".into()))?;
    let (root, mountpoint) = mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = left.split(' ').collect();
            Some((fields.get(3)?.to_string(), fields.get(4)?.to_string()))
        })
        .ok_or_else(|| Unavailable("cgroup v2 is not mounted".into()))?;
    let base = on_disk(&mountpoint, &root, path);
    let available = read(&base, "cgroup.controllers").unwrap_or_default();
    if !available.split_whitespace().any(|c| c == "memory") {
        return Err(Unavailable(format!(
            "the memory controller is not available in {}",
            base.display()
        )));
    }
    let mut wanted = vec!["+memory", "+pids"];
    if cpu {
        wanted.push("+cpu");
    }
    let enabled = read(&base, "cgroup.subtree_control").unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == "memory") {
        write(&base, "cgroup.subtree_control", &wanted.join(" ")).map_err(|e| {
            Unavailable(format!(
                "enabling the memory controller in {}: {e}",
                base.display()
            ))
        })?;
    }
    sweep_leftovers(&base);
    make(&base, name)
}

fn on_disk(mountpoint: &str, root: &str, path: &str) -> PathBuf {
    let relative = match root {
        "/" => path,
        root => path.strip_prefix(root).unwrap_or(path),
    };
    Path::new(mountpoint).join(relative.trim_start_matches('/'))
}

/// Writes `0` to each descriptor: the calling process joins those cgroups.
/// For the child between fork and exec: one system call each, no
/// allocation.
pub(crate) fn join(fds: &[OwnedFd]) -> io::Result<()> {
    for fd in fds {
        rustix::io::write(fd.as_fd(), b"0")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 24 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 24 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
33 24 0:29 /outer /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
34 24 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
";
    const OWN: &str = "\
5:pids:/outer/inner
4:memory:/process_api/abc
3:cpu,cpuacct:/
0::/user.slice/app.scope
";

    #[test]
    fn own_cgroups_are_found_under_their_mounts() {
        assert_eq!(
            v1_dir(MOUNTINFO, OWN, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            v1_dir(MOUNTINFO, OWN, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        // A mount of a subtree: the path is relative to the mount's root.
        assert_eq!(
            v1_dir(MOUNTINFO, OWN, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/inner"))
        );
        assert_eq!(v1_dir(MOUNTINFO, OWN, "freezer"), None);
    }

    #[test]
    fn cpu_scales_with_memory_as_in_lambda() {
        assert!((vcpus(1769) - 1.0).abs() < 1e-9);
        assert!((vcpus(128) - 128.0 / 1769.0).abs() < 1e-9);
        // Linear up to Lambda's largest size, which gets almost 6 vCPUs.
        assert!((vcpus(10240) - 10240.0 / 1769.0).abs() < 1e-9);
        assert!(vcpus(10240) <= 6.0);
    }

    #[test]
    fn the_fallback_line_gives_the_reason_and_the_fix() {
        let line = Unavailable("LEXT_NO_CGROUP is set".into()).line();
        assert!(line.starts_with("no cgroup for the environment (LEXT_NO_CGROUP is set):"));
        assert!(line.contains("Delegate=yes"));
    }
}
