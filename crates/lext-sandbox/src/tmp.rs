//! The environment's `/tmp`: private, of the function's ephemeral storage
//! (512 MB by default), kept for the environment's whole life.
//!
//! Lambda gives each execution environment a `/tmp` of the function's
//! `EphemeralStorage` size, 512 to 10,240 MB (AWS: Lambda API Reference,
//! EphemeralStorage; AWS: Configuring ephemeral storage for Lambda
//! functions); writing past it fails with `ENOSPC`. It is kept across the
//! invokes of one environment, and a reset does not clear it (AWS:
//! Understanding the Lambda execution environment lifecycle, "Failures
//! during the invoke phase").
//!
//! How, as root: a sparse ext4 image in the environment's own directory,
//! formatted by `mkfs.ext4` (started first thing, so that it runs while the
//! rest of the environment is prepared) in memory, in a `memfd` (`mkfs`
//! calls `fsync` four times, which on a disk cost most of its time and on
//! a `memfd` nothing), and copied into the image extent by extent (a few
//! hundred KB at 512 MB), attached to a loop device with
//! autoclear and direct I/O, and mounted as a *detached* mount
//! (`fsmount(2)`): no mount namespace shows it, not even lext's. Each
//! process of the environment clones it onto `/tmp` in its own private
//! mount namespace ([`crate::isolation`]), so they all share one file
//! system. When the last process and lext have let go of it, the kernel
//! releases the file system and the loop device detaches itself: nothing
//! is left on the host, even after a SIGKILL of lext (the image file is in
//! the environment's directory, which the next lext removes).
//!
//! Why not a tmpfs: its pages are charged to the memory cgroup of the
//! process that writes them, so a function writing 600 MB to `/tmp` at
//! 128 MB of memory would be OOM-killed where Lambda (whose `/tmp` is a
//! disk) answers `ENOSPC`. The ext4 file system's page cache is charged
//! too, but it is reclaimable, and direct I/O on the loop device keeps a
//! second copy out of the cache.
//!
//! Where it cannot be done (not root, no loop device, no `mkfs.ext4`, or
//! [`PLAIN_TMP_VAR`] set), [`Tmp::Dir`] is a plain directory of the
//! environment's own, without a size limit, and [`Prepared::notice`] says
//! so in one line.

use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

/// Lambda's smallest and default ephemeral storage, MB.
pub(crate) const MIN_MB: u32 = 512;
/// Lambda's largest ephemeral storage, MB.
pub(crate) const MAX_MB: u32 = 10_240;
/// Set (to anything but `0`) to use a plain directory without a size
/// limit: the fallback's test.
pub(crate) const PLAIN_TMP_VAR: &str = "LEXT_PLAIN_TMP";

/// What the environment's processes get at `/tmp`.
#[derive(Debug)]
pub(crate) enum Tmp {
    /// A file system of its own, of the size asked for: the detached mount
    /// to clone onto `/tmp`.
    Mount(FileSystem),
    /// A plain directory of the environment's own, without a size limit.
    Dir(PathBuf),
}

/// The detached mount of the environment's file system. Dropping it
/// (when the environment ends, its processes gone) shuts the file system
/// down first, so that what the function left unwritten is thrown away:
/// otherwise releasing the file system would write it all to the image
/// (seconds for hundreds of MB), which is deleted right after.
#[derive(Debug)]
pub(crate) struct FileSystem(OwnedFd);

impl std::os::fd::AsFd for FileSystem {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// `EXT4_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`) and its flag that skips
/// flushing the journal and the data (linux/ext4.h).
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

impl Drop for FileSystem {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd as _;
        let Ok(root) = rustix::fs::openat(
            &self.0,
            c".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: EXT4_IOC_SHUTDOWN reads one u32 through the pointer,
        // which lives across the call.
        let _ = unsafe { libc::ioctl(root.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags as *const u32) };
    }
}

/// How long an environment's start waits for its `/tmp` file system (on a
/// quiet machine it is ready in milliseconds).
const PREPARE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The `/tmp` being made: [`begin`] starts it, [`Pending::finish`] ends it.
#[derive(Debug)]
pub(crate) struct Pending {
    started: std::time::Instant,
    dir: PathBuf,
    image: PathBuf,
    /// The formatting, copy and mount, running in a task of their own
    /// (the mount in a blocking thread: the kernel's part takes ms), or
    /// why there is no file system to make.
    work: Result<tokio::task::JoinHandle<Result<OwnedFd, String>>, String>,
}

/// `mkfs.ext4` at work on the image, in memory.
#[derive(Debug)]
struct Format {
    mkfs: tokio::process::Child,
    memory: OwnedFd,
    size: u64,
}

/// The `/tmp` made, and the line to tell the user when it is not the
/// file system Lambda would give.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// What to show at `/tmp`.
    pub(crate) tmp: Tmp,
    /// Why `/tmp` has no size limit, when it has none.
    pub(crate) notice: Option<String>,
}

/// Starts making the environment's `/tmp` of `mb` MB in `state`: a plain
/// directory at once (the fallback), and, as root, the formatting of the
/// image in the background.
pub(crate) fn begin(state: &Path, mb: u32) -> io::Result<Pending> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = state.join("tmp");
    std::fs::create_dir(&dir)?;
    // As /tmp: anyone may write, only the owner may remove.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
    let image = state.join("tmp.img");
    let format = if std::env::var_os(PLAIN_TMP_VAR).is_some_and(|v| !v.is_empty() && v != "0") {
        Err(format!("{PLAIN_TMP_VAR} is set"))
    } else if !rustix::process::geteuid().is_root() {
        Err("a file system of its own needs root".to_owned())
    } else {
        start_format(mb)
    };
    // Dropped unfinished (the environment's start failed), the task ends by
    // itself: its mount fd is dropped, and the loop device detaches.
    let work = format.map(|format| {
        let image = image.clone();
        tokio::spawn(async move {
            formatted(format.mkfs).await?;
            let (memory, size) = (format.memory, format.size);
            tokio::task::spawn_blocking(move || {
                copy_extents(&memory, &image, size)
                    .map_err(|e| format!("writing {}: {e}", image.display()))?;
                mount(&image)
            })
            .await
            .map_err(|e| format!("mounting the image: {e}"))?
        })
    });
    Ok(Pending {
        started: std::time::Instant::now(),
        dir,
        image,
        work,
    })
}

/// `mkfs.ext4` of a sparse image of `mb` MB and a little more (ext4's own
/// metadata takes about 2.5 %, and at least `mb` MB must be free, as in
/// Lambda's `/tmp`), in a `memfd` that `mkfs` opens through lext's
/// `/proc/<pid>/fd`. No journal (nothing needs to survive a crash), inode
/// tables left unwritten (nothing to read back), no reserved blocks.
fn start_format(mb: u32) -> Result<Format, String> {
    use std::os::fd::AsRawFd as _;
    let size = (u64::from(mb) + u64::from(mb) / 32 + 4) << 20;
    let memory = rustix::fs::memfd_create(c"lext-tmp-image", rustix::fs::MemfdFlags::CLOEXEC)
        .and_then(|fd| rustix::fs::ftruncate(&fd, size).map(|()| fd))
        .map_err(|e| format!("a memfd for formatting: {e}"))?;
    let path = format!("/proc/{}/fd/{}", std::process::id(), memory.as_raw_fd());
    let mkfs = find_mkfs().ok_or_else(|| "mkfs.ext4 was not found".to_owned())?;
    let mkfs = tokio::process::Command::new(mkfs)
        .args(["-q", "-F", "-m", "0", "-i", "65536", "-O", "^has_journal"])
        .args(["-E", "lazy_itable_init=1,nodiscard,root_owner=0:0"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting mkfs.ext4: {e}"))?;
    Ok(Format { mkfs, memory, size })
}

/// Copies the data of `from` (the formatted `memfd`) into a new sparse
/// file `to` of `size` bytes, extent by extent: the holes stay holes.
fn copy_extents(from: &OwnedFd, to: &Path, size: u64) -> io::Result<()> {
    use rustix::fs::SeekFrom;
    use std::os::unix::fs::FileExt as _;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    out.set_len(size)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let data = match rustix::fs::seek(from, SeekFrom::Data(at)) {
            Ok(data) => data,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = rustix::fs::seek(from, SeekFrom::Hole(data))?;
        let mut pos = data;
        while pos < hole {
            let want = usize::try_from(hole - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let read = rustix::io::pread(from, &mut buf[..want], pos)?;
            if read == 0 {
                break;
            }
            out.write_all_at(&buf[..read], pos)?;
            pos += read as u64;
        }
        at = hole;
    }
    Ok(())
}

fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| candidate.is_file())
}

impl Pending {
    /// Waits for the image and mounts it (detached), or falls back to the
    /// plain directory with a notice. The mount points of `keep` (see
    /// [`host_paths`]) are made in it now, before Init: the first writes to
    /// a fresh file system read its bitmaps from the disk (up to hundreds
    /// of ms on a busy disk), which each process would otherwise do at its
    /// launch.
    pub(crate) async fn finish(self, keep: &[PathBuf]) -> Prepared {
        let Pending {
            started,
            dir,
            image,
            work,
        } = self;
        let waited = std::time::Instant::now();
        let mounted = match work {
            // Bounded: a start never hangs on its /tmp (a mkfs whose end is
            // never seen, a mount stuck behind a busy disk); past the bound
            // the environment gets the plain directory, and says why.
            Ok(mut task) => tokio::select! {
                joined = &mut task => {
                    joined.unwrap_or_else(|e| Err(format!("preparing the image: {e}")))
                }
                () = tokio::time::sleep(PREPARE_LIMIT) => {
                    task.abort();
                    Err(format!(
                        "preparing its file system took over {} s",
                        PREPARE_LIMIT.as_secs()
                    ))
                }
            },
            Err(why) => Err(why),
        };
        if let Ok(fs) = &mounted {
            make_mount_points(fs, keep);
        }
        // What the environment's start paid for /tmp (`waited_us`), and
        // the whole of it, formatting in the background included.
        tracing::debug!(
            total_us = started.elapsed().as_micros() as u64,
            waited_us = waited.elapsed().as_micros() as u64,
            "the environment's /tmp is ready"
        );
        match mounted {
            Ok(fd) => Prepared {
                tmp: Tmp::Mount(FileSystem(fd)),
                notice: None,
            },
            Err(why) => {
                let _ = std::fs::remove_file(&image);
                Prepared {
                    notice: Some(format!(
                        "lext: /tmp is a private directory without a size limit ({why}); \
                         --ephemeral-storage is not enforced"
                    )),
                    tmp: Tmp::Dir(dir),
                }
            }
        }
    }

    /// The plain directory, without waiting: for processes that get no
    /// private `/tmp`, as their `TMPDIR`.
    pub(crate) fn into_dir(self) -> PathBuf {
        // Aborted while mkfs runs, the task drops it, which kills it
        // (kill_on_drop); later, its mount is released when it ends.
        if let Ok(task) = &self.work {
            task.abort();
        }
        self.dir
    }
}

async fn formatted(child: tokio::process::Child) -> Result<(), String> {
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for mkfs.ext4: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "mkfs.ext4 failed with {}: {}",
        output.status,
        stderr.lines().next().unwrap_or("").trim()
    ))
}

/// Makes, in the file system whose root is `root`, the directories leading
/// to each of `keep` (host paths under `/tmp`) and an empty directory or
/// file for it to be mounted on. Best effort: what fails here is tried
/// again by each process.
fn make_mount_points(root: &OwnedFd, keep: &[PathBuf]) {
    for path in keep {
        let Ok(inside) = path.strip_prefix("/tmp") else {
            continue;
        };
        let mut at = PathBuf::new();
        let mut parts = inside.components().peekable();
        while let Some(part) = parts.next() {
            at.push(part);
            let last = parts.peek().is_none();
            let made = if last && !path.is_dir() {
                rustix::fs::openat(
                    root,
                    &at,
                    OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map(drop)
            } else {
                rustix::fs::mkdirat(root, &at, Mode::from_raw_mode(0o755))
            };
            if let Err(error) = made.or_else(|e| match e {
                rustix::io::Errno::EXIST => Ok(()),
                e => Err(e),
            }) {
                tracing::debug!(path = %path.display(), %error, "no mount point in /tmp");
                break;
            }
        }
    }
}

/// Attaches `image` to a loop device and mounts its file system, detached.
fn mount(image: &Path) -> Result<OwnedFd, String> {
    let started = std::time::Instant::now();
    let (device, path) = loop_device(image).map_err(|e| format!("no loop device: {e}"))?;
    let fail = |what: &str, e: rustix::io::Errno| format!("mounting the image ({what}): {e}");
    let fs = rustix::mount::fsopen(c"ext4", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| fail("fsopen", e))?;
    rustix::mount::fsconfig_set_string(fs.as_fd(), c"source", path.as_path())
        .map_err(|e| fail("source", e))?;
    // The inode tables stay unwritten: nothing will ever read them back.
    let _ = rustix::mount::fsconfig_set_flag(fs.as_fd(), c"noinit_itable");
    rustix::mount::fsconfig_create(fs.as_fd()).map_err(|e| fail("create", e))?;
    let mount = rustix::mount::fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(|e| fail("fsmount", e))?;
    // The file system holds the device open now; with autoclear, the
    // device detaches itself when the file system is released.
    drop(device);
    let root = rustix::fs::openat(
        mount.as_fd(),
        c".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("its root", e))?;
    rustix::fs::fchmod(&root, Mode::from_raw_mode(0o1777)).map_err(|e| fail("chmod", e))?;
    // mkfs's lost+found: Lambda's /tmp starts empty.
    let _ = rustix::fs::unlinkat(&root, c"lost+found", AtFlags::REMOVEDIR);
    tracing::debug!(
        device = %path.display(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "the environment's /tmp is mounted"
    );
    Ok(mount)
}

// The loop driver's interface (linux/loop.h).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A free loop device bound to `image` with autoclear (and direct I/O
/// where the image's file system allows it), and its path. Another
/// process may take the free device first: then the next one is tried.
fn loop_device(image: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    use std::os::fd::AsRawFd as _;
    let control = rustix::fs::open(
        c"/dev/loop-control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let backing = rustix::fs::open(image, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let mut last = io::Error::other("every free loop device was taken");
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let index = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if index < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{index}"));
        let device = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        for flags in [LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR] {
            let config = LoopConfig {
                fd: backing.as_raw_fd() as u32,
                block_size: 0,
                info: LoopInfo64 {
                    device: 0,
                    inode: 0,
                    rdevice: 0,
                    offset: 0,
                    sizelimit: 0,
                    number: 0,
                    encrypt_type: 0,
                    encrypt_key_size: 0,
                    flags,
                    file_name: [0; 64],
                    crypt_name: [0; 64],
                    encrypt_key: [0; 32],
                    init: [0; 2],
                },
                reserved: [0; 8],
            };
            // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which
            // `LoopConfig` lays out exactly; it lives across the call.
            let done = unsafe {
                libc::ioctl(
                    device.as_raw_fd(),
                    LOOP_CONFIGURE,
                    &config as *const LoopConfig,
                )
            };
            if done == 0 {
                return Ok((device, path));
            }
            last = io::Error::last_os_error();
            if last.raw_os_error() == Some(libc::EBUSY) {
                break; // taken meanwhile: the next free one
            }
        }
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(last);
        }
    }
    Err(last)
}

/// The host paths under the host's `/tmp` that the processes must still
/// reach once `/tmp` is the environment's: each `/tmp/...` path in `named`
/// (the runtime's command line, the extensions' paths, the function's
/// variables), kept as its first directory under `/tmp` (a user's or a
/// test's temporary directory, whole), and lext's own files in the
/// environment's directory `state` (the echo runtime) kept as themselves.
/// A named file that is a script brings its interpreter (its `#!` line):
/// an extension written for a virtualenv under `/tmp` must still start.
/// Only paths that exist are kept.
pub(crate) fn host_paths<'a>(
    named: impl IntoIterator<Item = &'a std::ffi::OsStr>,
    state: &Path,
) -> Vec<PathBuf> {
    let separators = |c: char| c.is_whitespace() || "'\"`;&|<>()=:,$".contains(c);
    let mut keep: Vec<PathBuf> = Vec::new();
    let mut texts: Vec<String> = named
        .into_iter()
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    let interpreters: Vec<String> = texts
        .iter()
        .flat_map(|text| text.split(separators))
        .filter(|word| word.starts_with('/'))
        .filter_map(interpreter)
        .collect();
    texts.extend(interpreters);
    for text in &texts {
        for word in text.split(separators) {
            let Some(rest) = word.strip_prefix("/tmp/") else {
                continue;
            };
            let path = Path::new(word);
            let kept = if path.starts_with(state) {
                path.to_owned()
            } else {
                match rest.split('/').next() {
                    Some(first) if !matches!(first, "" | "." | "..") => {
                        Path::new("/tmp").join(first)
                    }
                    _ => continue,
                }
            };
            if kept.exists() && !kept.starts_with(state.join("tmp")) && !keep.contains(&kept) {
                keep.push(kept);
            }
        }
    }
    if !keep.is_empty() {
        // What the function reaches of the host through its /tmp (`-v`).
        tracing::info!(paths = ?keep, "host paths under /tmp stay reachable at their paths");
    }
    keep
}

/// The interpreter named by the `#!` line of the file at `path`, if it is
/// a script: the kernel runs that program, which must be reachable too.
fn interpreter(path: &str) -> Option<String> {
    use lext_layer::elf::{inspect, Content, Interpreter};
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // What `inspect` needs of a script, and all the kernel reads of the
    // line (BINPRM_BUF_SIZE).
    let mut head = Vec::with_capacity(256);
    file.take(256).read_to_end(&mut head).ok()?;
    match inspect(&head) {
        Content::Script(Interpreter::Path(program)) => Some(program),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_structures_have_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 8 + 232 + 64);
    }

    #[test]
    fn host_paths_under_tmp_are_kept_by_their_first_directory() {
        let scene = tempfile::Builder::new()
            .prefix("lext-tmp-test-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("{e}"));
        let state = tempfile::Builder::new()
            .prefix("lext-tmp-state-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("{e}"));
        let echo = state.path().join("echo-runtime");
        std::fs::write(&echo, "").unwrap_or_else(|e| panic!("{e}"));
        // A script whose interpreter lies in another directory of /tmp.
        let venv = tempfile::Builder::new()
            .prefix("lext-tmp-venv-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("{e}"));
        let python = venv.path().join("python");
        std::fs::write(&python, "").unwrap_or_else(|e| panic!("{e}"));
        let script = scene.path().join("ext");
        std::fs::write(&script, format!("#!{} -u\nprint(1)\n", python.display()))
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = scene.path().display().to_string();
        let command = format!("sh -c 'echo $$ > {dir}/sub/pid; exec {dir}/run'");
        let named = [
            command.as_str(),
            echo.to_str().unwrap_or_default(),
            "/tmp/does-not-exist-here/x",
            "/tmp/../etc/passwd",
            "/usr/local/bin/ext",
            script.to_str().unwrap_or_default(),
        ];
        let kept = host_paths(named.iter().map(std::ffi::OsStr::new), state.path());
        assert_eq!(
            kept,
            vec![scene.path().to_owned(), echo, venv.path().to_owned()]
        );
    }
}
