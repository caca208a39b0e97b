//! `lext check`: every trap that makes a layer fail only after deployment,
//! found before upload. [`check`] is a pure function over a [`Listing`]; each
//! [`Problem`] prints as one line, `path: what is wrong: how to fix it`.
//!
//! What Lambda does with a layer: it unpacks the zip under `/opt`, then
//! starts every file in `/opt/extensions/` as a program, as a user that is
//! neither the owner nor in the group. So each such file needs the
//! others-execute bit (and others-read for a script), must be an ELF for the
//! function's architecture whose glibc needs the runtime satisfies, or a
//! script whose interpreter exists there. Sources for where a layer lands
//! and which files are started, AWS:
//! <https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html> and
//! <https://docs.aws.amazon.com/lambda/latest/dg/extensions-configuration.html>;
//! RIE: internal/lambda/agents/agent.go (every file of the directory is
//! started) in github.com/aws/aws-lambda-runtime-interface-emulator.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::elf::{Content, Interpreter};
use crate::listing::{Entry, EntryKind, Fault, Listing, Special};
use crate::platform::{Arch, GlibcVersion, Runtime};
use crate::safepath::{self, LayerPath, UnsafeReason};

/// At most 10 extensions per function (Lambda quota).
pub const MAX_EXTENSIONS: usize = 10;
/// Largest zip PublishLayerVersion takes directly: 50 MiB.
pub const MAX_ZIPPED_BYTES: u64 = 50 * 1024 * 1024;
/// Largest unzipped size of a function plus its layers: 250 MiB
/// (Lambda's error says "must be smaller than 262144000 bytes").
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;

/// What to check the layer against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// The runtime whose glibc and interpreters must satisfy the layer.
    pub runtime: Runtime,
    /// The function architecture; `None` only requires one consistent arch.
    pub arch: Option<Arch>,
}

impl Default for CheckOptions {
    /// `provided.al2` (the oldest glibc, so the strictest), any arch.
    fn default() -> Self {
        CheckOptions {
            runtime: Runtime::ProvidedAl2,
            arch: None,
        }
    }
}

/// One problem found in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry concerned, or `layer` for the whole archive.
    pub path: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// Every problem `lext check` knows, with what it needs for its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// No `extensions/` directory at the root.
    NoExtensionsDir {
        /// A deeper `…/extensions/` directory, if the zip was made one
        /// level too high.
        nested_under: Option<String>,
    },
    /// `extensions/` exists but holds no file.
    NoExtensions,
    /// An extension without the others-execute (or, for a script, read) bit.
    NotExecutable {
        /// Its permission bits; `None` when the zip stores none.
        mode: Option<u32>,
    },
    /// Neither ELF nor `#!` script.
    NotElf,
    /// Starts like an ELF but does not parse.
    CorruptElf {
        /// The parser's error.
        detail: String,
    },
    /// An ELF for a machine Lambda does not run, or not the requested one.
    WrongArch {
        /// What the ELF is built for.
        found: String,
        /// What the function runs on, when known.
        expected: Option<Arch>,
    },
    /// Extensions for two architectures in one layer.
    MixedArch {
        /// The architectures found.
        found: Vec<Arch>,
    },
    /// Needs a newer glibc than the runtime has.
    GlibcTooNew {
        /// The newest `GLIBC_` version the file needs.
        needed: GlibcVersion,
        /// The runtime checked against.
        runtime: Runtime,
    },
    /// An ELF whose dynamic loader does not exist on the runtime.
    MissingLoader {
        /// The `PT_INTERP` path.
        loader: String,
        /// The runtime checked against.
        runtime: Runtime,
    },
    /// A `#!` script whose interpreter the runtime lacks.
    MissingInterpreter {
        /// The interpreter as written.
        interpreter: String,
        /// The runtime checked against.
        runtime: Runtime,
    },
    /// More than [`MAX_EXTENSIONS`] extensions.
    TooManyExtensions {
        /// How many.
        count: usize,
    },
    /// The zip is larger than [`MAX_ZIPPED_BYTES`].
    ZippedTooLarge {
        /// Its size.
        bytes: u64,
    },
    /// The content is larger than [`MAX_UNZIPPED_BYTES`].
    UnzippedTooLarge {
        /// The total uncompressed size of the files and link targets.
        bytes: u64,
    },
    /// An entry name that climbs out of `/opt` or is absolute.
    UnsafePath {
        /// Why it is unsafe.
        reason: UnsafeReason,
    },
    /// A symlink that points outside the layer.
    LinkEscapes {
        /// The link target.
        target: String,
    },
    /// An extension that is a symlink to nothing in the layer.
    DanglingLink {
        /// The link target.
        target: String,
    },
    /// Two entries for one path (the same name twice, or two spellings of
    /// it such as `extensions/x` and `./extensions/x`).
    Duplicate,
    /// A zip entry whose data is not what its header declares (see
    /// [`Fault`]; never [`Fault::Duplicate`] nor [`Fault::NotRead`]).
    BadEntry {
        /// What is wrong with it.
        fault: Fault,
    },
    /// A FIFO, socket or device in a directory layer: a zip cannot hold
    /// one, and reading it could block forever.
    SpecialFile {
        /// What it is.
        what: Special,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.path;
        match &self.kind {
            ProblemKind::NoExtensionsDir { nested_under: None } => write!(
                f,
                "{p}: no extensions/ directory at the root: put each extension at \
                 extensions/<name> (Lambda starts only /opt/extensions/*), or use lext package"
            ),
            ProblemKind::NoExtensionsDir {
                nested_under: Some(dir),
            } => write!(
                f,
                "{p}: no extensions/ directory at the root (found {dir}extensions/ instead): \
                 zip from inside {dir} so that extensions/ is at the root, or use lext package"
            ),
            ProblemKind::NoExtensions => write!(
                f,
                "{p}: no extension in extensions/: add the extension binary as \
                 extensions/<name>, or use lext build && lext package"
            ),
            ProblemKind::NotExecutable { mode: Some(mode) } => write!(
                f,
                "{p}: not executable (mode {mode:04o}): chmod 0755 it before zipping, \
                 or use lext package"
            ),
            ProblemKind::NotExecutable { mode: None } => write!(
                f,
                "{p}: not executable (the zip stores no unix permissions, Lambda extracts it \
                 as 0644): zip it on Linux or macOS after chmod 0755, or use lext package"
            ),
            ProblemKind::NotElf => write!(
                f,
                "{p}: not an ELF executable nor a #! script, Lambda cannot start it: put only \
                 programs in extensions/ and other files elsewhere in the layer"
            ),
            ProblemKind::CorruptElf { detail } => {
                write!(f, "{p}: corrupt ELF ({detail}): rebuild it with lext build")
            }
            ProblemKind::WrongArch {
                found,
                expected: Some(arch),
            } => write!(
                f,
                "{p}: built for {found}, the function runs on {arch} (exec format error at \
                 init): rebuild with lext build --arch {arch}"
            ),
            ProblemKind::WrongArch {
                found,
                expected: None,
            } => write!(
                f,
                "{p}: built for {found}, Lambda runs only x86_64 and arm64: rebuild with \
                 lext build (--arch x86_64 or --arch arm64)"
            ),
            ProblemKind::MixedArch { found } => {
                let names: Vec<_> = found.iter().map(|a| a.as_str()).collect();
                write!(
                    f,
                    "{p}: extensions for several architectures ({}), a function runs only one: \
                     publish one layer per architecture (lext build --arch ...)",
                    names.join(", ")
                )
            }
            ProblemKind::GlibcTooNew { needed, runtime } => write!(
                f,
                "{p}: needs GLIBC_{needed}, {runtime} has glibc {} (`GLIBC_{needed}' not found \
                 at init): rebuild with lext build, which pins glibc 2.26",
                runtime.glibc_floor()
            ),
            ProblemKind::MissingLoader { loader, runtime } => write!(
                f,
                "{p}: its dynamic loader {loader} does not exist on {runtime}: build for glibc \
                 with lext build, or link statically (musl)"
            ),
            ProblemKind::MissingInterpreter {
                interpreter,
                runtime,
            } => write!(
                f,
                "{p}: script interpreter `{interpreter}` does not exist on {runtime}: use \
                 #!/bin/sh or #!/bin/bash, ship the interpreter in the layer (bin/ is on PATH \
                 as /opt/bin), or compile the extension"
            ),
            ProblemKind::TooManyExtensions { count } => write!(
                f,
                "{p}: {count} extensions, Lambda allows at most {MAX_EXTENSIONS} per function: \
                 merge or remove some"
            ),
            ProblemKind::ZippedTooLarge { bytes } => write!(
                f,
                "{p}: zip is {bytes} bytes, over the {MAX_ZIPPED_BYTES}-byte (50 MiB) limit of a \
                 direct upload: shrink the binaries (release profile, strip) or drop files"
            ),
            ProblemKind::UnzippedTooLarge { bytes } => write!(
                f,
                "{p}: unzipped size is {bytes} bytes, over the {MAX_UNZIPPED_BYTES}-byte (250 \
                 MiB) limit of a function with its layers: shrink or drop files"
            ),
            ProblemKind::UnsafePath { reason } => write!(
                f,
                "{p}: {reason}, the entry would land outside /opt or nowhere: zip from the \
                 layer root with relative names, or use lext package"
            ),
            ProblemKind::LinkEscapes { target } => write!(
                f,
                "{p}: symlink to `{target}` points outside the layer: replace it with the file \
                 itself or a relative link to a file inside the layer"
            ),
            ProblemKind::DanglingLink { target } => write!(
                f,
                "{p}: symlink to `{target}`, which is not in the layer: ship the target or \
                 replace the link with the file"
            ),
            ProblemKind::Duplicate => write!(
                f,
                "{p}: {}: rebuild the zip with one entry per path, or use lext package",
                Fault::Duplicate
            ),
            ProblemKind::BadEntry { fault } => write!(
                f,
                "{p}: {fault}: rebuild the zip from the files themselves, or use lext package"
            ),
            ProblemKind::SpecialFile { what } => write!(
                f,
                "{p}: {what}, not a regular file; Lambda layers are zip archives of regular \
                 files and directories: remove it from the layer directory"
            ),
        }
    }
}

/// Checks a layer. Returns every problem found, in a stable order (entry
/// order, then whole-layer problems); an empty list means the layer passes.
pub fn check(listing: &Listing, options: &CheckOptions) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |path: &str, kind| {
        problems.push(Problem {
            path: path.to_owned(),
            kind,
        })
    };

    // Index the safe entries by path, for link and interpreter lookups.
    let by_path: BTreeMap<&LayerPath, usize> = listing
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.path.as_ref().ok().map(|p| (p, i)))
        .collect();

    let mut has_extensions_dir = false;
    let mut nested_under = None;
    let mut extensions = 0usize;
    let mut arches = BTreeSet::new();
    let mut unzipped: u64 = 0;
    // Paths of the entries seen so far that are not directories (a
    // directory listed twice is harmless), and those already reported.
    let mut seen = BTreeSet::new();
    let mut duplicated = BTreeSet::new();
    // The content of an entry whose data is not what its header says (or
    // that was not read: the layer is over the unzipped limit before it)
    // is not judged; its fault is the one line it gets.
    let untrusted = |e: &Entry| e.faults.iter().any(|f| *f != Fault::Duplicate);

    for entry in &listing.entries {
        let path = match &entry.path {
            Ok(path) => path,
            Err(reason) => {
                push(&entry.name, ProblemKind::UnsafePath { reason: *reason });
                continue;
            }
        };
        // Lambda counts what the zip unpacks to: files and link targets.
        if matches!(entry.kind, EntryKind::File | EntryKind::Symlink { .. }) {
            unzipped = unzipped.saturating_add(entry.size);
        }
        let is_dir = entry.kind == EntryKind::Dir;
        let twice = !is_dir && (!seen.insert(path) || entry.faults.contains(&Fault::Duplicate));
        if twice && duplicated.insert(path) {
            push(path.as_str(), ProblemKind::Duplicate);
        }
        for fault in &entry.faults {
            if !matches!(fault, Fault::Duplicate | Fault::NotRead) {
                push(
                    path.as_str(),
                    ProblemKind::BadEntry {
                        fault: fault.clone(),
                    },
                );
            }
        }
        let parts: Vec<&str> = path.components().collect();
        if parts.first() == Some(&"extensions") {
            has_extensions_dir = true;
        } else if let Some(i) = parts.iter().position(|c| *c == "extensions") {
            nested_under.get_or_insert_with(|| format!("{}/", parts[..i].join("/")));
        }
        let is_extension = path.extension_name().is_some();
        if untrusted(entry) {
            if is_extension && entry.kind != EntryKind::Dir {
                extensions += 1;
            }
            continue;
        }

        // Resolve symlinks: the link itself must stay inside; an extension
        // that is a link is judged by what it points to.
        let (target_entry, shown) = match &entry.kind {
            EntryKind::Dir => continue,
            EntryKind::Special(what) => {
                // Meant as an extension, so not also "no extension".
                if is_extension {
                    extensions += 1;
                }
                push(path.as_str(), ProblemKind::SpecialFile { what: *what });
                continue;
            }
            EntryKind::File => (entry, path.as_str()),
            EntryKind::Symlink { target } => {
                let resolved = match safepath::link_target(path, target) {
                    Ok(resolved) => resolved,
                    Err(_) => {
                        push(
                            path.as_str(),
                            ProblemKind::LinkEscapes {
                                target: target.clone(),
                            },
                        );
                        continue;
                    }
                };
                if !is_extension {
                    continue;
                }
                match by_path.get(&resolved).map(|&i| &listing.entries[i]) {
                    Some(t) if t.kind == EntryKind::File => (t, path.as_str()),
                    _ => {
                        push(
                            path.as_str(),
                            ProblemKind::DanglingLink {
                                target: target.clone(),
                            },
                        );
                        extensions += 1;
                        continue;
                    }
                }
            }
        };
        if is_extension {
            extensions += 1;
        }
        if untrusted(target_entry) {
            continue;
        }

        match &target_entry.content {
            Content::Elf(info) => {
                match info.arch {
                    None => push(
                        shown,
                        ProblemKind::WrongArch {
                            found: info.machine.clone(),
                            expected: None,
                        },
                    ),
                    Some(arch) if options.arch.is_some_and(|want| want != arch) => push(
                        shown,
                        ProblemKind::WrongArch {
                            found: info.machine.clone(),
                            expected: options.arch,
                        },
                    ),
                    Some(arch) => {
                        if is_extension {
                            arches.insert(arch);
                        }
                    }
                }
                if let Some(needed) = info.max_glibc {
                    if needed > options.runtime.glibc_floor() {
                        push(
                            shown,
                            ProblemKind::GlibcTooNew {
                                needed,
                                runtime: options.runtime,
                            },
                        );
                    }
                }
                if let Some(loader) = &info.interpreter {
                    if is_extension && !options.runtime.has_interpreter(loader) {
                        push(
                            shown,
                            ProblemKind::MissingLoader {
                                loader: loader.clone(),
                                runtime: options.runtime,
                            },
                        );
                    }
                }
                if is_extension && !mode_allows(target_entry.mode, 0o001) {
                    push(
                        shown,
                        ProblemKind::NotExecutable {
                            mode: target_entry.mode,
                        },
                    );
                }
            }
            Content::BadElf(detail) if is_extension => push(
                shown,
                ProblemKind::CorruptElf {
                    detail: detail.clone(),
                },
            ),
            Content::Script(interpreter) if is_extension => {
                if let Some(missing) =
                    missing_interpreter(interpreter, options.runtime, |p| by_path.contains_key(p))
                {
                    push(
                        shown,
                        ProblemKind::MissingInterpreter {
                            interpreter: missing,
                            runtime: options.runtime,
                        },
                    );
                }
                // The kernel reads a script to hand it to the interpreter,
                // so the Lambda user needs read as well as execute.
                if !mode_allows(target_entry.mode, 0o005) {
                    push(
                        shown,
                        ProblemKind::NotExecutable {
                            mode: target_entry.mode,
                        },
                    );
                }
            }
            Content::Other if is_extension => push(shown, ProblemKind::NotElf),
            _ => {}
        }
    }

    if !has_extensions_dir {
        push("layer", ProblemKind::NoExtensionsDir { nested_under });
    } else if extensions == 0 {
        push("extensions/", ProblemKind::NoExtensions);
    }
    if options.arch.is_none() && arches.len() > 1 {
        push(
            "extensions/",
            ProblemKind::MixedArch {
                found: arches.into_iter().collect(),
            },
        );
    }
    if extensions > MAX_EXTENSIONS {
        push(
            "extensions/",
            ProblemKind::TooManyExtensions { count: extensions },
        );
    }
    if let Some(bytes) = listing.zipped_size.filter(|&b| b > MAX_ZIPPED_BYTES) {
        push("layer", ProblemKind::ZippedTooLarge { bytes });
    }
    if unzipped > MAX_UNZIPPED_BYTES {
        push("layer", ProblemKind::UnzippedTooLarge { bytes: unzipped });
    }
    problems
}

/// The architectures of the ELF extensions in a layer (what `publish` sends
/// as `CompatibleArchitectures`).
pub fn extension_architectures(listing: &Listing) -> BTreeSet<Arch> {
    listing
        .entries
        .iter()
        .filter(|e| e.path.as_ref().is_ok_and(|p| p.extension_name().is_some()))
        .filter_map(|e| match &e.content {
            Content::Elf(info) => info.arch,
            _ => None,
        })
        .collect()
}

/// Whether the permission bits grant `bits` to others. A missing mode is
/// what Lambda extracts as 0644.
fn mode_allows(mode: Option<u32>, bits: u32) -> bool {
    mode.unwrap_or(0o644) & bits == bits
}

/// The interpreter a script needs that neither the runtime nor the layer
/// provides, if any. The layer is mounted at `/opt`, and `/opt/bin` is on
/// Lambda's `PATH`.
fn missing_interpreter(
    interpreter: &Interpreter,
    runtime: Runtime,
    layer_has: impl Fn(&LayerPath) -> bool,
) -> Option<String> {
    let in_layer = |opt_path: &str| {
        opt_path
            .strip_prefix("/opt/")
            .and_then(|rest| safepath::entry_path(rest).ok())
            .is_some_and(|p| layer_has(&p))
    };
    match interpreter {
        Interpreter::Path(path) if runtime.has_interpreter(path) || in_layer(path) => None,
        Interpreter::Path(path) => Some(path.clone()),
        Interpreter::Env(name) if runtime.has_command(name) => None,
        Interpreter::Env(name) if in_layer(&format!("/opt/bin/{name}")) => None,
        Interpreter::Env(name) => Some(format!("/usr/bin/env {name}")),
        Interpreter::Invalid(line) => Some(line.clone()),
    }
}
