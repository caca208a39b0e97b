//! `lext build`: compile a Cargo project's binaries for Lambda and put them
//! at `target/lambda/extensions/<name>`.
//!
//! The directory then holds this build's binaries and nothing else: they are
//! written to a fresh directory next to it, which replaces the old one, so
//! an extension left by an earlier build (of another project, or of another
//! `--bin`) never reaches the next zip. The names written are recorded in a
//! manifest beside the directory ([`manifest_path`]), which `lext package`
//! compares with what it finds there.
//!
//! The binaries are linked by cargo-zigbuild against glibc 2.26 (the target
//! `x86_64-unknown-linux-gnu.2.26`), the glibc of `provided.al2`, so they run
//! on both OS-only runtimes whatever glibc the build machine has. The result
//! is then proven, not assumed: each binary's `GLIBC_` symbol versions are
//! read back and the build fails if any is newer than 2.26.
//!
//! Every missing tool is found before cargo starts, with the command that
//! installs it: cargo-zigbuild and Zig. The Rust standard library of the
//! target (only the host's ships with a plain rustup install) is installed
//! with `rustup target add` where rustup is on PATH; elsewhere the error
//! says why it cannot be.
//!
//! The release profile is tuned for size unless the project tunes it
//! itself ([`ProfileUsed`]): an extension is loaded at every cold start,
//! and the settings below take a typical one from about 1 MB to about
//! 0.5 MB.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::elf::{self, Content};
use crate::platform::{Arch, GlibcVersion, Runtime};
use crate::project::{Binary, Project, ProjectError};

/// The glibc every build is pinned to: `provided.al2`'s.
pub const PINNED_GLIBC: Runtime = Runtime::ProvidedAl2;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The project's manifest; `None` finds the nearest `Cargo.toml`.
    pub manifest_path: Option<PathBuf>,
    /// The binaries to build; empty means every binary of the package.
    pub bins: Vec<String>,
    /// The architecture; `None` takes the project's `arch` setting, else
    /// x86_64.
    pub arch: Option<Arch>,
    /// `--features` for cargo (each may be a comma-separated list).
    pub features: Vec<String>,
    /// `--no-default-features` for cargo.
    pub no_default_features: bool,
    /// `--profile` for cargo; `None` is `release`.
    pub profile: Option<String>,
    /// `--locked` for cargo.
    pub locked: bool,
    /// `--target-dir` for cargo: where it compiles. The extensions still go
    /// to the project's `target/lambda/extensions`, where the other
    /// commands look for them.
    pub target_dir: Option<PathBuf>,
}

/// The settings lext gives the release profile of a project that sets none
/// (`cargo --config` overrides, so the project's files are not touched):
/// `opt-level = "z"`, fat LTO, one codegen unit, `panic = "abort"`, symbols
/// stripped. `"z"` measured smaller than `"s"` for a scaffolded extension
/// (see the README); speed hardly matters for code that mostly waits on a
/// socket.
pub const SIZE_PROFILE: [(&str, &str); 5] = [
    ("opt-level", "\"z\""),
    ("lto", "\"fat\""),
    ("codegen-units", "1"),
    ("panic", "\"abort\""),
    ("strip", "\"symbols\""),
];

/// Which profile a build used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileUsed {
    /// `release`, with lext's [`SIZE_PROFILE`]: the project sets no
    /// `[profile.release]`.
    SizeTuned,
    /// The project's own settings of this profile (`release` when its
    /// Cargo.toml sets `[profile.release]`, or the `--profile` given).
    Own(String),
}

impl std::fmt::Display for ProfileUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileUsed::SizeTuned => {
                let settings: Vec<String> = SIZE_PROFILE
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                write!(
                    f,
                    "profile release with lext's size settings ({}), as the project's Cargo.toml \
                     sets no [profile.release]",
                    settings.join(" ")
                )
            }
            ProfileUsed::Own(name) if name == "release" => {
                f.write_str("profile release as the project's Cargo.toml sets it")
            }
            ProfileUsed::Own(name) => {
                write!(f, "profile {name} (--profile), as the project sets it")
            }
        }
    }
}

/// What a build tells its caller along the way, before cargo's own output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Note {
    /// The profile this build uses.
    Profile(ProfileUsed),
    /// The target's standard library is missing; `rustup target add` runs.
    InstallingTarget {
        /// The target triple.
        triple: &'static str,
    },
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Profile(profile) => write!(f, "{profile}"),
            Note::InstallingTarget { triple } => write!(
                f,
                "the Rust target {triple} is not installed: running `rustup target add {triple}`"
            ),
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The extensions, in `target/lambda/extensions/`.
    pub binaries: Vec<BuiltBinary>,
    /// The profile used.
    pub profile: ProfileUsed,
    /// The architecture built for.
    pub arch: Arch,
}

/// One built extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltBinary {
    /// The extension's name.
    pub name: String,
    /// Where it was copied (`target/lambda/extensions/<name>`).
    pub path: PathBuf,
    /// The newest glibc version it needs (`None` when it needs none).
    pub max_glibc: Option<GlibcVersion>,
}

/// Why a build failed. A variant that wraps an error says only what was
/// being done; the cause is its `source()`, so `{:#}` prints each once.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The project could not be read.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// The package has no binary target.
    #[error("{} has no binary target to build as an extension", manifest.display())]
    NoBinaries {
        /// The manifest.
        manifest: PathBuf,
    },
    /// `--bin` named a binary the project does not have.
    #[error("no binary named `{name}` in {}; available: {available}", manifest.display())]
    UnknownBinary {
        /// The name asked for.
        name: String,
        /// The manifest.
        manifest: PathBuf,
        /// The binaries that exist, comma-separated.
        available: String,
    },
    /// cargo-zigbuild is not installed.
    #[error(
        "cargo-zigbuild is not installed; lext build links with it to pin glibc 2.26: \
         run `cargo install --locked cargo-zigbuild` (or scripts/install-test-deps)"
    )]
    NoZigbuild,
    /// Zig is not installed.
    #[error(
        "zig is not installed; cargo-zigbuild needs it as the linker: run `pip install ziglang` \
         (cargo-zigbuild then finds it through `python3 -m ziglang`), put `zig` on PATH, or set \
         CARGO_ZIGBUILD_ZIG_PATH"
    )]
    NoZig,
    /// The Rust standard library of the target is not installed, and
    /// there is no rustup to install it.
    #[error(
        "the Rust target {triple} is not installed (no {}) and lext cannot add it: rustup is \
         not on PATH; install rustup (https://rustup.rs) and run `rustup target add {triple}`, \
         or install {triple}'s standard library for the toolchain at {}",
        dir.display(), sysroot.display()
    )]
    MissingTarget {
        /// The target triple.
        triple: &'static str,
        /// The directory that should hold its standard library.
        dir: PathBuf,
        /// The toolchain's sysroot.
        sysroot: PathBuf,
    },
    /// `rustup target add` ran and failed (its output says why).
    #[error("`rustup target add {triple}` failed ({status}); see its output above")]
    TargetInstall {
        /// The target triple.
        triple: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// `rustup target add` succeeded but the standard library is still not
    /// where rustc looks (a toolchain not managed by that rustup).
    #[error(
        "`rustup target add {triple}` succeeded but {} still has no standard library: the \
         toolchain at {} is not the one rustup manages; install {triple}'s standard library \
         for it",
        dir.display(), sysroot.display()
    )]
    TargetStillMissing {
        /// The target triple.
        triple: &'static str,
        /// The directory that should hold its standard library.
        dir: PathBuf,
        /// The toolchain's sysroot.
        sysroot: PathBuf,
    },
    /// A tool could not be run.
    #[error("cannot run `{tool}`")]
    Spawn {
        /// The command.
        tool: String,
        /// The I/O error.
        source: io::Error,
    },
    /// cargo failed (its own output says why).
    #[error("cargo zigbuild failed ({status}); see cargo's output above")]
    Cargo {
        /// The exit status.
        status: std::process::ExitStatus,
    },
    /// cargo succeeded but the binary is not where it should be.
    #[error("cargo reported success but {} is missing", path.display())]
    MissingOutput {
        /// The expected path.
        path: PathBuf,
    },
    /// The binary is not an ELF for the requested architecture.
    #[error("{}: expected an ELF for {arch}, found {found}", path.display())]
    WrongOutput {
        /// The binary.
        path: PathBuf,
        /// The requested architecture.
        arch: Arch,
        /// What it is.
        found: String,
    },
    /// The binary needs a newer glibc than `provided.al2` has.
    #[error(
        "{}: needs GLIBC_{needed}, newer than glibc {} of provided.al2; a C dependency or \
         build script must be linking a newer glibc: check `-C link-arg`s and `links` crates",
        path.display(), PINNED_GLIBC.glibc_floor()
    )]
    GlibcTooNew {
        /// The binary.
        path: PathBuf,
        /// The newest version it needs.
        needed: GlibcVersion,
    },
    /// Writing the extensions directory or its manifest failed.
    #[error("writing {}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Copying the binary failed.
    #[error("copying {} to {}", from.display(), to.display())]
    Copy {
        /// Source.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Builds the extensions and returns them, checked, in
/// `target/lambda/extensions/`.
pub fn build(options: &BuildOptions) -> Result<Built, BuildError> {
    build_with(options, |_| {})
}

/// [`build`], telling `notes` what it decides and does on the way (the
/// profile, a target being installed), before cargo's own output.
pub fn build_with(
    options: &BuildOptions,
    mut notes: impl FnMut(Note),
) -> Result<Built, BuildError> {
    let project = Project::load(options.manifest_path.as_deref())?;
    let arch = options
        .arch
        .or(project.settings.arch)
        .unwrap_or(Arch::X86_64);
    let binaries = select_binaries(&project, &options.bins)?;

    // Preflight: every missing tool is reported before cargo runs for
    // minutes and fails at link time with a less helpful message.
    if find_in_path("cargo-zigbuild").is_none() {
        return Err(BuildError::NoZigbuild);
    }
    if !zig_available() {
        return Err(BuildError::NoZig);
    }
    let project_dir = project
        .manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    ensure_target(arch, &project_dir, &mut notes)?;

    let profile = match options.profile.as_deref() {
        None | Some("release") if !project.defines_profile("release") => ProfileUsed::SizeTuned,
        None => ProfileUsed::Own("release".into()),
        Some(name) => ProfileUsed::Own(name.to_owned()),
    };
    notes(Note::Profile(profile.clone()));
    let profile_name = match &profile {
        ProfileUsed::SizeTuned => "release",
        ProfileUsed::Own(name) => name.as_str(),
    };

    let zig_target = format!("{}.{}", arch.rust_triple(), glibc_suffix());
    let mut cmd = Command::new(cargo());
    cmd.arg("zigbuild")
        .arg("--profile")
        .arg(profile_name)
        .arg("--target")
        .arg(&zig_target)
        .arg("--manifest-path")
        .arg(&project.manifest_path);
    if profile == ProfileUsed::SizeTuned {
        for (key, value) in SIZE_PROFILE {
            cmd.arg("--config")
                .arg(format!("profile.release.{key}={value}"));
        }
    }
    for features in &options.features {
        cmd.arg("--features").arg(features);
    }
    if options.no_default_features {
        cmd.arg("--no-default-features");
    }
    if options.locked {
        cmd.arg("--locked");
    }
    let target_dir = options
        .target_dir
        .clone()
        .unwrap_or_else(|| project.target_dir.clone());
    if let Some(dir) = &options.target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    for bin in &binaries {
        cmd.arg("--package").arg(&bin.package);
        cmd.arg("--bin").arg(&bin.name);
    }
    // cargo's progress goes to our stderr, as if the user had run it.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    tracing::info!(target = %zig_target, bins = ?binaries, "running cargo zigbuild");
    let status = cmd.status().map_err(|source| BuildError::Spawn {
        tool: "cargo zigbuild".into(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::Cargo { status });
    }

    let out_dir = target_dir
        .join(arch.rust_triple())
        .join(profile_dir(profile_name));
    // Every binary is proven before the directory is touched, so a failed
    // build leaves the previous output whole.
    let mut verified = Vec::new();
    for bin in &binaries {
        let from = out_dir.join(&bin.name);
        let bytes = fs::read(&from).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => BuildError::MissingOutput { path: from.clone() },
            _ => BuildError::Copy {
                from: from.clone(),
                to: project.extensions_dir().join(&bin.name),
                source,
            },
        })?;
        let max_glibc = verify_binary(&from, &bytes, arch)?;
        verified.push(Verified {
            name: bin.name.clone(),
            from,
            bytes,
            max_glibc,
        });
    }
    let built = install(&project.extensions_dir(), &verified)?;
    for bin in &built {
        tracing::info!(extension = %bin.name, path = %bin.path.display(), glibc = ?bin.max_glibc, "built");
    }
    Ok(Built {
        binaries: built,
        profile,
        arch,
    })
}

/// The directory cargo writes a profile's output to: `dev` and `test` in
/// `debug/`, `bench` in `release/`, any other profile under its own name.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// A binary cargo wrote, read and proven.
struct Verified {
    name: String,
    from: PathBuf,
    bytes: Vec<u8>,
    max_glibc: Option<GlibcVersion>,
}

/// Replaces `dest_dir` with a directory holding exactly `verified` (mode
/// 0755), and records their names in its [`manifest_path`].
///
/// The new directory is written next to it under a dot-name, then renamed
/// into place, so the old one (binaries of an earlier build, of another
/// project or `--bin`, files copied there by hand) is gone as a whole and
/// nothing half-written is ever under the final name. The manifest is
/// written before the swap: a build interrupted between the two leaves a
/// manifest that does not match the directory, which `lext package` refuses.
fn install(dest_dir: &Path, verified: &[Verified]) -> Result<Vec<BuiltBinary>, BuildError> {
    let parent = dest_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir_name = dest_dir
        .file_name()
        .map_or_else(|| "extensions".into(), |n| n.to_string_lossy().into_owned());
    let pid = std::process::id();
    let staging = parent.join(format!(".{dir_name}.{pid}.new"));
    let retired = parent.join(format!(".{dir_name}.{pid}.old"));
    remove_any(&staging).map_err(write_err(&staging))?;
    let result = stage_and_swap(dest_dir, &staging, &retired, verified);
    if result.is_err() {
        let _ = remove_any(&staging);
    }
    result
}

/// [`install`]'s work once the names are chosen.
fn stage_and_swap(
    dest_dir: &Path,
    staging: &Path,
    retired: &Path,
    verified: &[Verified],
) -> Result<Vec<BuiltBinary>, BuildError> {
    fs::create_dir_all(staging).map_err(write_err(staging))?;
    let mut built = Vec::new();
    for bin in verified {
        let staged = staging.join(&bin.name);
        let copy_err = |source| BuildError::Copy {
            from: bin.from.clone(),
            to: staged.clone(),
            source,
        };
        fs::write(&staged, &bin.bytes).map_err(copy_err)?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).map_err(copy_err)?;
        built.push(BuiltBinary {
            name: bin.name.clone(),
            path: dest_dir.join(&bin.name),
            max_glibc: bin.max_glibc,
        });
    }
    let names: Vec<&str> = verified.iter().map(|b| b.name.as_str()).collect();
    write_manifest(dest_dir, &names)?;

    // The swap. Between the two renames the directory does not exist; a
    // concurrent `lext package` then says there is nothing to package.
    remove_any(retired).map_err(write_err(retired))?;
    let had_old = match fs::rename(dest_dir, retired) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(write_err(dest_dir)(e)),
    };
    if let Err(e) = fs::rename(staging, dest_dir) {
        if had_old {
            let _ = fs::rename(retired, dest_dir);
        }
        return Err(write_err(dest_dir)(e));
    }
    if had_old {
        if let Err(err) = remove_any(retired) {
            tracing::warn!(path = %retired.display(), %err, "cannot remove the previous extensions");
        }
    }
    Ok(built)
}

/// [`BuildError::Write`] of `path`, for `map_err`.
fn write_err(path: &Path) -> impl FnOnce(io::Error) -> BuildError {
    let path = path.to_owned();
    move |source| BuildError::Write { path, source }
}

/// Removes a directory tree, a file or a symlink; nothing there is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The file in which `lext build` records the extensions it put in
/// `extensions_dir`: beside it, named after it,
/// `target/lambda/extensions.lext-build` for `target/lambda/extensions`.
/// (Not inside it: a directory layer's `extensions/` is launched file by
/// file, by `lext run --layer` as by Lambda.)
pub fn manifest_path(extensions_dir: &Path) -> PathBuf {
    let dir = match extensions_dir.file_name() {
        Some(_) => extensions_dir.to_owned(),
        // `.` or `..`: name the directory itself.
        None => extensions_dir
            .canonicalize()
            .unwrap_or_else(|_| extensions_dir.to_owned()),
    };
    match dir.file_name() {
        Some(name) => {
            let mut file = name.to_owned();
            file.push(MANIFEST_SUFFIX);
            dir.with_file_name(file)
        }
        None => dir.join(MANIFEST_SUFFIX),
    }
}

/// The suffix of [`manifest_path`].
const MANIFEST_SUFFIX: &str = ".lext-build";

/// The first lines of every manifest.
const MANIFEST_HEADER: &str = "# Written by `lext build`: the extensions it put in the directory \
                               of the same name, one per line.\n# `lext package` refuses a file \
                               there that is not listed, and a listed one that is missing.\n";

/// Writes the manifest of `extensions_dir` (through a temporary file).
fn write_manifest(extensions_dir: &Path, names: &[&str]) -> Result<(), BuildError> {
    let path = manifest_path(extensions_dir);
    let mut text = MANIFEST_HEADER.to_owned();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text).map_err(write_err(&path))?;
    fs::rename(&tmp, &path).map_err(write_err(&path))
}

/// The extension names the last `lext build` recorded for
/// `extensions_dir`, sorted; `None` when it has no manifest (a directory
/// filled by hand or by another tool).
pub fn read_manifest(extensions_dir: &Path) -> io::Result<Option<Vec<String>>> {
    let text = match fs::read_to_string(manifest_path(extensions_dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(Some(names))
}

/// The glibc suffix of the zig target, `2.26`.
fn glibc_suffix() -> String {
    PINNED_GLIBC.glibc_floor().to_string()
}

/// Proves what was built: an ELF for `arch` needing at most glibc 2.26.
fn verify_binary(
    path: &Path,
    bytes: &[u8],
    arch: Arch,
) -> Result<Option<GlibcVersion>, BuildError> {
    let wrong = |found: String| BuildError::WrongOutput {
        path: path.to_owned(),
        arch,
        found,
    };
    match elf::inspect(bytes) {
        Content::Elf(info) if info.arch == Some(arch) => {
            if let Some(needed) = info.max_glibc {
                if needed > PINNED_GLIBC.glibc_floor() {
                    return Err(BuildError::GlibcTooNew {
                        path: path.to_owned(),
                        needed,
                    });
                }
            }
            Ok(info.max_glibc)
        }
        Content::Elf(info) => Err(wrong(info.machine)),
        Content::BadElf(detail) => Err(wrong(format!("a corrupt ELF ({detail})"))),
        _ => Err(wrong("a file that is not ELF".into())),
    }
}

/// Picks the binaries to build: all, or the `--bin` ones (each must exist).
fn select_binaries(project: &Project, wanted: &[String]) -> Result<Vec<Binary>, BuildError> {
    if project.binaries.is_empty() {
        return Err(BuildError::NoBinaries {
            manifest: project.manifest_path.clone(),
        });
    }
    if wanted.is_empty() {
        return Ok(project.binaries.clone());
    }
    let mut out = Vec::new();
    for name in wanted {
        match project.binaries.iter().find(|b| &b.name == name) {
            Some(bin) if !out.contains(bin) => out.push(bin.clone()),
            Some(_) => {}
            None => {
                let available: Vec<_> = project.binaries.iter().map(|b| b.name.as_str()).collect();
                return Err(BuildError::UnknownBinary {
                    name: name.clone(),
                    manifest: project.manifest_path.clone(),
                    available: available.join(", "),
                });
            }
        }
    }
    Ok(out)
}

/// The cargo to run: `$CARGO` when lext itself runs under cargo, else the
/// one on PATH.
fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Looks a program up on PATH, as the shell would.
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether cargo-zigbuild will find Zig, in its own order of lookup:
/// `CARGO_ZIGBUILD_ZIG_PATH`, `zig` on PATH, then the `ziglang` Python
/// package through `python3 -m ziglang`.
fn zig_available() -> bool {
    if env::var_os("CARGO_ZIGBUILD_ZIG_PATH").is_some() || find_in_path("zig").is_some() {
        return true;
    }
    Command::new("python3")
        .args(["-c", "import ziglang"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure the target's standard library is installed: when it is not,
/// runs `rustup target add` (from the project directory, so a
/// `rust-toolchain.toml` there picks the toolchain) where rustup is on
/// PATH, and fails saying why otherwise.
fn ensure_target(
    arch: Arch,
    project_dir: &Path,
    notes: &mut impl FnMut(Note),
) -> Result<(), BuildError> {
    let Err(missing) = check_target_installed(arch, project_dir) else {
        return Ok(());
    };
    let BuildError::MissingTarget {
        triple,
        dir,
        sysroot,
    } = missing
    else {
        return Err(missing);
    };
    let Some(rustup) = find_in_path("rustup") else {
        return Err(BuildError::MissingTarget {
            triple,
            dir,
            sysroot,
        });
    };
    notes(Note::InstallingTarget { triple });
    // rustup's progress goes to our stderr, as cargo's does.
    let status = Command::new(&rustup)
        .args(["target", "add", triple])
        .current_dir(project_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| BuildError::Spawn {
            tool: format!("rustup target add {triple}"),
            source,
        })?;
    if !status.success() {
        return Err(BuildError::TargetInstall { triple, status });
    }
    match check_target_installed(arch, project_dir) {
        Err(BuildError::MissingTarget {
            triple,
            dir,
            sysroot,
        }) => Err(BuildError::TargetStillMissing {
            triple,
            dir,
            sysroot,
        }),
        other => other,
    }
}

/// Fails with [`BuildError::MissingTarget`] when the target's standard
/// library is not in the sysroot of the rustc cargo will use (run from the
/// project directory, so a `rust-toolchain.toml` there is honoured).
fn check_target_installed(arch: Arch, project_dir: &Path) -> Result<(), BuildError> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(project_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BuildError::Spawn {
            tool: "rustc --print sysroot".into(),
            source,
        })?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let triple = arch.rust_triple();
    let dir = sysroot.join("lib").join("rustlib").join(triple).join("lib");
    let has_std = fs::read_dir(&dir).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
    });
    if has_std {
        Ok(())
    } else {
        Err(BuildError::MissingTarget {
            triple,
            dir,
            sysroot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_map_to_cargo_s_directories() {
        assert_eq!(profile_dir("release"), "release");
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("bench"), "release");
        assert_eq!(profile_dir("small"), "small");
    }

    #[test]
    fn missing_aarch64_target_names_the_fix() {
        // This machine's toolchain has only the host std; if aarch64 is
        // ever installed the check must pass instead, so test both ways.
        let dir = std::env::temp_dir();
        match check_target_installed(Arch::Arm64, &dir) {
            Ok(()) => {}
            Err(err) => {
                let msg = err.to_string();
                assert!(
                    msg.contains("rustup target add aarch64-unknown-linux-gnu")
                        && msg.contains("rustup is not on PATH"),
                    "{msg}"
                );
            }
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        check_target_installed(Arch::X86_64, &dir).expect("the host target is installed");
    }
}
