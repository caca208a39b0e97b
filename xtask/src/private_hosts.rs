//! A generated `/etc/hosts` for the processes a benchmark starts.
//!
//! This module owns giving `bench-telemetry`'s subjects the name resolution
//! an extension has in Lambda and in `lext run`: `sandbox.localdomain` (and
//! `sandbox`) defined as 127.0.0.1 in `/etc/hosts`. Where the machine's own
//! file does not name the host, the SDK's listener would fall back to the
//! system resolver and pay a DNS query that a deployed extension never
//! pays. Each subject therefore starts in a private mount namespace in
//! which a generated hosts file, in a temporary directory this module
//! creates and removes, is bind-mounted on `/etc/hosts`.
//!
//! The mounts are made in the forked child, between fork and exec (a
//! `pre_exec` hook): `unshare(CLONE_NEWNS)`, `/` made recursively private
//! (nothing may propagate back to the machine's namespace), then the bind
//! mount. Every call there is a plain system call on C strings prepared
//! before the fork, so nothing allocates or locks in the child. It needs
//! root or `CAP_SYS_ADMIN`; [`PrivateHosts::create`] checks that it works,
//! in a throwaway child, before anything is measured.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::median;

/// The generated file: loopback, and Lambda's sandbox names on loopback.
const HOSTS_CONTENT: &str = "127.0.0.1\tlocalhost\n127.0.0.1\tsandbox.localdomain sandbox\n";

/// The address the generated file gives `sandbox.localdomain`.
pub(crate) const SANDBOX_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Throwaway children timed with and without the hook, for its cost.
const COST_SAMPLES: usize = 41;

/// The generated hosts file, ready to be shown to any number of children.
/// Dropping it removes its directory.
#[derive(Debug)]
pub(crate) struct PrivateHosts {
    dir: PathBuf,
    file: CString,
}

impl PrivateHosts {
    /// Writes the file into a new temporary directory and checks, in a
    /// throwaway child, that a private mount namespace shows it at
    /// `/etc/hosts`. Fails with what to do where it cannot (no root, no
    /// `CAP_SYS_ADMIN`).
    pub(crate) fn create() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("lext-bench-hosts.{}", std::process::id()));
        let path = dir.join("hosts");
        let file = CString::new(path.as_os_str().as_bytes()).context("temporary directory path")?;
        // A directory left by an earlier run with the same pid (killed
        // before it could remove it) is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        // From here on, dropping `hosts` removes the directory.
        let hosts = Self { dir, file };
        std::fs::write(&path, HOSTS_CONTENT)
            .with_context(|| format!("write {}", path.display()))?;
        hosts.probe()?;
        Ok(hosts)
    }

    /// Makes `command`'s child enter its private namespace before exec.
    /// The hook also makes std fork and exec rather than `posix_spawn`,
    /// which keeps `ru_maxrss` the subject's own (see bench.rs).
    pub(crate) fn install(&self, command: &mut Command) {
        // Cloned here, in the parent: the hook only borrows it.
        let file = self.file.clone();
        // SAFETY: `enter` makes only async-signal-safe system calls on the
        // prepared C string; nothing allocates or locks in the child.
        unsafe {
            command.pre_exec(move || enter(&file));
        }
    }

    /// Runs the hook in a throwaway child that reads `/etc/hosts` back and
    /// exits before exec.
    fn probe(&self) -> Result<()> {
        let file = self.file.clone();
        let mut command = throwaway();
        // SAFETY: `enter` and `shows_generated_file` make only
        // async-signal-safe system calls on data prepared before the fork
        // (the C string, a stack buffer, a static byte string); `_exit`
        // ends the child without running anything of the parent's.
        unsafe {
            command.pre_exec(move || {
                enter(&file)?;
                libc::_exit(if shows_generated_file() { 0 } else { 3 })
            });
        }
        let status = match command.spawn() {
            Ok(mut child) => child.wait().context("wait for the probe child")?,
            Err(err) => bail!(
                "bench-telemetry starts every subject in a private mount namespace with a generated \
                 /etc/hosts (sandbox.localdomain 127.0.0.1, as in Lambda and lext run), which needs \
                 root or CAP_SYS_ADMIN, and that failed here: {err}. Run it as root, or pass \
                 --no-hosts to measure with this machine's own /etc/hosts (the lext subjects then \
                 ask the system resolver for sandbox.localdomain; the table says so)"
            ),
        };
        if status.code() != Some(0) {
            bail!(
                "a private mount namespace did not show the generated hosts file at /etc/hosts \
                 (probe child: {status}); pass --no-hosts to measure without it"
            );
        }
        Ok(())
    }

    /// What the hook adds to a spawn: the median of throwaway children
    /// that enter the namespace and exit, less that of children that only
    /// exit, both timed from spawn to reaped.
    pub(crate) fn spawn_cost(&self) -> Result<Duration> {
        let mut with = Vec::with_capacity(COST_SAMPLES);
        let mut without = Vec::with_capacity(COST_SAMPLES);
        for _ in 0..COST_SAMPLES {
            let file = self.file.clone();
            let mut command = throwaway();
            // SAFETY: as in `probe`.
            unsafe {
                command.pre_exec(move || {
                    enter(&file)?;
                    libc::_exit(0)
                });
            }
            with.push(time_to_reaped(command)?);
            let mut command = throwaway();
            // SAFETY: `_exit` is async-signal-safe.
            unsafe {
                command.pre_exec(|| libc::_exit(0));
            }
            without.push(time_to_reaped(command)?);
        }
        Ok(median(&with).saturating_sub(median(&without)))
    }
}

impl Drop for PrivateHosts {
    fn drop(&mut self) {
        // Every namespace that showed the file died with its process.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A command whose child exits in its hook: the program is never run.
fn throwaway() -> Command {
    let mut command = Command::new("/");
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn time_to_reaped(mut command: Command) -> Result<Duration> {
    let started = Instant::now();
    let status = command
        .spawn()
        .context("spawn a throwaway child")?
        .wait()
        .context("wait for a throwaway child")?;
    let took = started.elapsed();
    if status.code() != Some(0) {
        bail!("a throwaway child failed: {status}");
    }
    Ok(took)
}

/// In the child, between fork and exec: a private mount namespace with the
/// generated file on `/etc/hosts`. Async-signal-safe: three system calls on
/// C strings prepared before the fork; an error is its errno, not boxed.
fn enter(file: &CStr) -> io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls; every pointer is a NUL-terminated string
    // that outlives the call, or null where the call allows it. The child
    // has one thread, so nothing else sees the change of namespace.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        // Nothing mounted below may propagate back to the machine's
        // namespace (systemd makes / shared).
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            file.as_ptr(),
            c"/etc/hosts".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))?;
    }
    Ok(())
}

/// In the probe child: whether `/etc/hosts` now reads as the generated
/// file. Async-signal-safe: open, read into a stack buffer, close.
fn shows_generated_file() -> bool {
    let mut buf = [0u8; 256];
    let mut len = 0;
    // SAFETY: a NUL-terminated path; reads stay within `buf`.
    unsafe {
        let fd = libc::open(c"/etc/hosts".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
    }
    &buf[..len] == HOSTS_CONTENT.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_names_the_sandbox_host_on_loopback() {
        let line = HOSTS_CONTENT
            .lines()
            .find(|line| line.split_whitespace().any(|n| n == "sandbox.localdomain"))
            .expect("a sandbox.localdomain line");
        let mut fields = line.split_whitespace();
        assert_eq!(fields.next().and_then(|a| a.parse().ok()), Some(SANDBOX_IP));
        assert!(fields.any(|n| n == "sandbox"));
        assert!(HOSTS_CONTENT.lines().any(|l| l == "127.0.0.1\tlocalhost"));
        // The probe's stack buffer holds the whole file.
        assert!(HOSTS_CONTENT.len() < 256);
    }
}
