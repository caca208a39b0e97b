//! Unpacking a layer zip into a directory the way Lambda unpacks it under
//! `/opt`, safely: for `lext run --layer ZIP`.
//!
//! Every name and symlink target goes through [`crate::safepath`] (the same
//! rules `lext check` reports), nothing is ever written through a symlink,
//! and unix modes are kept (permission bits only: no setuid/setgid), so an
//! extension that is not executable in the zip is not executable here either,
//! exactly as on Lambda. Several layers may be extracted into one directory
//! in order; later files replace earlier ones, as Lambda does.
//! [`copy_layer_dir`] does the same for a layer given as a directory.
//!
//! Zip headers are not trusted either, by the same reader `lext check`
//! uses: every entry is read through a limit of its declared size plus one
//! byte, and one that holds more or less than it declares, fails its CRC,
//! or shares its name with another entry is refused
//! ([`ExtractError::BadEntry`]). And the bytes written count against a
//! [`Budget`], Lambda's unzipped limit of a function with its layers:
//! [`extract`] and [`copy_layer_dir`] give each layer the whole limit;
//! unpacking several layers for one function, pass one budget to
//! [`extract_within`] and [`copy_layer_dir_within`] for all of them.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::check::MAX_UNZIPPED_BYTES;
use crate::listing::{
    drain, duplicate_names, zip_is_dir, zip_is_symlink, Drain, Fault, Special, MAX_LINK_TARGET,
};
use crate::safepath::{self, LayerPath, UnsafeReason};

/// How many bytes (of regular files and symlink targets) a function's
/// layers may still unpack to. Lambda refuses a function whose code and layers unzip to more than
/// [`MAX_UNZIPPED_BYTES`] (262,144,000 bytes); the bytes are counted as
/// written, not as the zips declare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    limit: u64,
    used: u64,
}

impl Budget {
    /// Lambda's limit, [`MAX_UNZIPPED_BYTES`], none of it used.
    pub fn lambda() -> Budget {
        Budget::new(MAX_UNZIPPED_BYTES)
    }

    /// A budget of `limit` bytes, none of it used.
    pub fn new(limit: u64) -> Budget {
        Budget { limit, used: 0 }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes written so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Bytes that may still be written.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    fn spend(&mut self, bytes: u64) {
        self.used = self.used.saturating_add(bytes);
    }
}

impl Default for Budget {
    /// [`Budget::lambda`].
    fn default() -> Self {
        Budget::lambda()
    }
}

/// What was extracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files written.
    pub files: usize,
    /// Bytes written: the files' and the symlink targets' (what the
    /// [`Budget`] counts).
    pub bytes: u64,
    /// Symlinks created.
    pub links: usize,
    /// Names of the files directly in `extensions/` (the extensions Lambda
    /// would start), sorted.
    pub extensions: Vec<String>,
}

/// Why a layer could not be extracted. Nothing outside `dest` is ever
/// touched, whichever error is returned; `dest` may be partly written.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The zip cannot be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The zip path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The layer path is a FIFO, socket or device: not opened, since
    /// opening a FIFO blocks until someone writes to it.
    #[error("{} is {what}, not a zip file nor a directory", path.display())]
    NotALayer {
        /// The layer path.
        path: PathBuf,
        /// What it is.
        what: Special,
    },
    /// A FIFO, socket or device inside a layer directory: a zip cannot
    /// hold one, and copying it could block forever.
    #[error(
        "{name}: {what}, not a regular file; Lambda layers are zip archives of regular files \
         and directories"
    )]
    Special {
        /// The layer directory.
        layer: PathBuf,
        /// The entry's name in the layer.
        name: String,
        /// What it is.
        what: Special,
    },
    /// The file is not a readable zip archive, or an entry is corrupt.
    #[error("{} is not a valid zip file: {source}", path.display())]
    Zip {
        /// The zip path.
        path: PathBuf,
        /// What the zip reader said.
        source: zip::result::ZipError,
    },
    /// An entry name or link target that would leave the destination.
    #[error("refusing `{name}` in {}: {reason}", zip.display())]
    Unsafe {
        /// The zip path.
        zip: PathBuf,
        /// The entry name.
        name: String,
        /// Why.
        reason: UnsafeReason,
    },
    /// An entry would be written through a symlink or over a directory.
    #[error("refusing `{name}` in {}: {why}", zip.display())]
    Conflict {
        /// The zip path.
        zip: PathBuf,
        /// The entry name.
        name: String,
        /// What is in the way.
        why: &'static str,
    },
    /// A zip entry that is not what its header declares, or whose name
    /// another entry has too.
    #[error("{name}: {fault}")]
    BadEntry {
        /// The zip path.
        zip: PathBuf,
        /// The entry name.
        name: String,
        /// What is wrong with it.
        fault: Fault,
    },
    /// With this layer, the layers unpack to more than the [`Budget`].
    #[error("{}", too_large(zip, *limit))]
    TooLarge {
        /// The zip (or directory) that went over.
        zip: PathBuf,
        /// The budget's limit.
        limit: u64,
    },
    /// Reading an entry or writing the destination failed.
    #[error("extracting {} to {}: {source}", zip.display(), path.display())]
    Io {
        /// The zip path.
        zip: PathBuf,
        /// The destination path written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// The line of [`ExtractError::TooLarge`].
fn too_large(zip: &Path, limit: u64) -> String {
    let zip = zip.display();
    if limit == MAX_UNZIPPED_BYTES {
        format!(
            "{zip}: the layers unpack to more than {limit} bytes (250 MiB), Lambda's unzipped \
             limit of a function with its layers: shrink or drop files"
        )
    } else {
        format!("{zip}: the layers unpack to more than {limit} bytes, the budget given")
    }
}

/// Extracts the layer zip at `zip` into `dest` (created if missing), within
/// Lambda's whole unzipped limit ([`Budget::lambda`]).
pub fn extract(zip: &Path, dest: &Path) -> Result<Extracted, ExtractError> {
    extract_within(zip, dest, &mut Budget::lambda())
}

/// Extracts the layer zip at `zip` into `dest` (created if missing),
/// spending `budget` on the bytes written: refused with
/// [`ExtractError::TooLarge`] as soon as they would exceed it.
pub fn extract_within(
    zip: &Path,
    dest: &Path,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    let meta = fs::metadata(zip).map_err(|source| ExtractError::Open {
        path: zip.to_owned(),
        source,
    })?;
    if let Some(what) = Special::of(&meta.file_type()) {
        return Err(ExtractError::NotALayer {
            path: zip.to_owned(),
            what,
        });
    }
    let file = File::open(zip).map_err(|source| ExtractError::Open {
        path: zip.to_owned(),
        source,
    })?;
    extract_reader_within(file, zip, dest, budget)
}

/// Extracts a layer zip read from `reader`; `zip` names it in errors.
pub fn extract_reader<R: Read + Seek>(
    reader: R,
    zip: &Path,
    dest: &Path,
) -> Result<Extracted, ExtractError> {
    extract_reader_within(reader, zip, dest, &mut Budget::lambda())
}

/// [`extract_reader`], spending `budget` (see [`extract_within`]).
pub fn extract_reader_within<R: Read + Seek>(
    reader: R,
    zip: &Path,
    dest: &Path,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    let zip_err = |source| ExtractError::Zip {
        path: zip.to_owned(),
        source,
    };
    let io_err = |path: &Path| {
        let (zip, path) = (zip.to_owned(), path.to_owned());
        move |source| ExtractError::Io { zip, path, source }
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    // The archive keeps one entry per name: find the others first.
    let mut duplicates = BTreeSet::new();
    if archive.has_duplicate_names() {
        let start = archive.central_directory_start();
        let mut reader = archive.into_inner();
        duplicates = duplicate_names(&mut reader, start)
            .map_err(|source| zip_err(zip::result::ZipError::Io(source)))?;
        archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    }
    fs::create_dir_all(dest).map_err(io_err(dest))?;

    let mut out = Extracted::default();
    // Paths written by this zip that are not directories: a second entry
    // for one (`x` and `./x`) is a duplicate too.
    let mut written = HashSet::new();
    for index in 0..archive.len() {
        let name = match archive.by_index_data(index) {
            Ok(meta) => String::from_utf8_lossy(meta.name_raw()).into_owned(),
            Err(source) => return Err(zip_err(source)),
        };
        let bad_entry = |fault| ExtractError::BadEntry {
            zip: zip.to_owned(),
            name: name.clone(),
            fault,
        };
        let mut entry = archive.by_index(index).map_err(|e| {
            bad_entry(Fault::Unreadable {
                detail: e.to_string(),
            })
        })?;
        let unsafe_err = |reason| ExtractError::Unsafe {
            zip: zip.to_owned(),
            name: name.clone(),
            reason,
        };
        let path = safepath::entry_path(&name).map_err(unsafe_err)?;
        if path.is_root() {
            continue;
        }
        let raw_mode = entry.unix_mode();
        let declared = entry.size();
        let is_dir = !zip_is_symlink(raw_mode) && zip_is_dir(entry.is_dir(), raw_mode);
        if !is_dir && (duplicates.contains(name.as_bytes()) || !written.insert(path.clone())) {
            return Err(bad_entry(Fault::Duplicate));
        }
        let target_path = dest.join(path.as_str());
        let conflict = |why| ExtractError::Conflict {
            zip: zip.to_owned(),
            name: name.clone(),
            why,
        };
        prepare_parents(dest, &path).map_err(conflict)?;
        prepare_parents_io(dest, &path).map_err(io_err(&target_path))?;

        // The link test comes first, as in `Listing`, so that `lext check`
        // and `lext run --layer` read an odd entry (named `x/`, mode link)
        // the same way: as a link, whose target must stay in the layer.
        if is_dir {
            if !existing_dir(&target_path).map_err(conflict)? {
                fs::create_dir(&target_path).map_err(io_err(&target_path))?;
            }
            // Owner rwx is always kept: a directory stored as 0555 (or 0)
            // must still take the files that follow it in the zip.
            let mode = raw_mode.map_or(0o755, |m| m & 0o777) | 0o700;
            fs::set_permissions(&target_path, fs::Permissions::from_mode(mode))
                .map_err(io_err(&target_path))?;
            continue;
        }

        remove_existing(&target_path).map_err(conflict)?;
        if zip_is_symlink(raw_mode) {
            let mut target = Vec::new();
            let (_, read) = drain(&mut entry, declared, MAX_LINK_TARGET, &mut |_, b| {
                target.extend_from_slice(b);
                Ok(())
            });
            match read {
                Ok(()) => {}
                Err(Drain::Fault(fault)) => return Err(bad_entry(fault)),
                Err(Drain::OverCap | Drain::Sink(_)) => {
                    return Err(bad_entry(Fault::Unreadable {
                        detail: format!(
                            "a symlink target of {declared} bytes, longer than any path"
                        ),
                    }))
                }
            }
            // Lambda counts link targets in the unzipped size too.
            let bytes = target.len() as u64;
            if bytes > budget.remaining() {
                return Err(ExtractError::TooLarge {
                    zip: zip.to_owned(),
                    limit: budget.limit(),
                });
            }
            budget.spend(bytes);
            out.bytes += bytes;
            let target = String::from_utf8_lossy(&target).into_owned();
            safepath::link_target(&path, &target).map_err(unsafe_err)?;
            symlink(&target, &target_path).map_err(io_err(&target_path))?;
            out.links += 1;
        } else {
            let mut file = File::create(&target_path).map_err(io_err(&target_path))?;
            let (bytes, read) = drain(&mut entry, declared, budget.remaining(), &mut |_, b| {
                file.write_all(b)
            });
            budget.spend(bytes);
            match read {
                Ok(()) => {}
                Err(Drain::Fault(fault)) => return Err(bad_entry(fault)),
                Err(Drain::OverCap) => {
                    return Err(ExtractError::TooLarge {
                        zip: zip.to_owned(),
                        limit: budget.limit(),
                    })
                }
                Err(Drain::Sink(source)) => return Err(io_err(&target_path)(source)),
            }
            // Lambda extracts files without unix attributes as 0644.
            let mode = raw_mode.map_or(0o644, |m| m & 0o777);
            fs::set_permissions(&target_path, fs::Permissions::from_mode(mode))
                .map_err(io_err(&target_path))?;
            out.files += 1;
            out.bytes += bytes;
        }
        out.extensions
            .extend(path.extension_name().map(str::to_owned));
    }
    out.extensions.sort();
    out.extensions.dedup();
    Ok(out)
}

/// Copies a layer directory (laid out as `/opt`) into `dest` under the same
/// rules as [`extract`]: symlinks are copied as links only when their target
/// stays inside the layer, nothing is written through a symlink already in
/// `dest`, and permission bits are kept (without setuid/setgid). FIFOs,
/// sockets and devices are refused, never opened. The layer gets Lambda's
/// whole unzipped limit ([`Budget::lambda`]).
pub fn copy_layer_dir(src: &Path, dest: &Path) -> Result<Extracted, ExtractError> {
    copy_layer_dir_within(src, dest, &mut Budget::lambda())
}

/// [`copy_layer_dir`], spending `budget` on the bytes copied (see
/// [`extract_within`]).
pub fn copy_layer_dir_within(
    src: &Path,
    dest: &Path,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    let io_err = |path: &Path| {
        let (src, path) = (src.to_owned(), path.to_owned());
        move |source| ExtractError::Io {
            zip: src,
            path,
            source,
        }
    };
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let mut out = Extracted::default();
    // Depth-first over (directory on disk, its name in the layer).
    let mut stack = vec![(src.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let from = child.path();
            let name = format!("{rel}{}", child.file_name().to_string_lossy());
            let refuse = |reason| ExtractError::Unsafe {
                zip: src.to_owned(),
                name: name.clone(),
                reason,
            };
            let path = safepath::entry_path(&name).map_err(refuse)?;
            let to = dest.join(path.as_str());
            let conflict = |why| ExtractError::Conflict {
                zip: src.to_owned(),
                name: name.clone(),
                why,
            };
            prepare_parents(dest, &path).map_err(conflict)?;
            let meta = fs::symlink_metadata(&from).map_err(io_err(&from))?;
            if let Some(what) = Special::of(&meta.file_type()) {
                // Never opened: reading a FIFO blocks until it has a writer.
                return Err(ExtractError::Special {
                    layer: src.to_owned(),
                    name,
                    what,
                });
            }
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&from).map_err(io_err(&from))?;
                let target = target.to_string_lossy().into_owned();
                safepath::link_target(&path, &target).map_err(refuse)?;
                if target.len() as u64 > budget.remaining() {
                    return Err(ExtractError::TooLarge {
                        zip: src.to_owned(),
                        limit: budget.limit(),
                    });
                }
                budget.spend(target.len() as u64);
                out.bytes += target.len() as u64;
                remove_existing(&to).map_err(conflict)?;
                symlink(&target, &to).map_err(io_err(&to))?;
                out.links += 1;
            } else if meta.is_dir() {
                if !existing_dir(&to).map_err(conflict)? {
                    fs::create_dir(&to).map_err(io_err(&to))?;
                }
                stack.push((from, format!("{name}/")));
            } else {
                remove_existing(&to).map_err(conflict)?;
                // Read through the budget (plus one byte, to tell "just
                // fits" from "too large"): a file may grow while copied.
                let file = File::open(&from).map_err(io_err(&from))?;
                let mut copy = File::create(&to).map_err(io_err(&to))?;
                let bytes = io::copy(&mut file.take(budget.remaining() + 1), &mut copy)
                    .map_err(io_err(&to))?;
                if bytes > budget.remaining() {
                    return Err(ExtractError::TooLarge {
                        zip: src.to_owned(),
                        limit: budget.limit(),
                    });
                }
                budget.spend(bytes);
                out.files += 1;
                out.bytes += bytes;
            }
            // Files keep their permission bits; directories keep the
            // default mode, so a read-only directory in the source cannot
            // block copying its own content.
            if !meta.file_type().is_symlink() && !meta.is_dir() {
                let mode = meta.permissions().mode() & 0o777;
                fs::set_permissions(&to, fs::Permissions::from_mode(mode)).map_err(io_err(&to))?;
            }
            if !meta.is_dir() {
                out.extensions
                    .extend(path.extension_name().map(str::to_owned));
            }
        }
    }
    out.extensions.sort();
    Ok(out)
}

/// Whether a directory is already at `path` (`Ok(true)`: nothing to
/// create) or nothing is (`Ok(false)`); a file or link there is a conflict,
/// never replaced by a directory.
fn existing_dir(path: &Path) -> Result<bool, &'static str> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(_) => Err("a file or link of that name is already there"),
        Err(_) => Ok(false),
    }
}

/// Refuses to go through a symlink or a file on the way to `path`.
fn prepare_parents(dest: &Path, path: &LayerPath) -> Result<(), &'static str> {
    let mut dir = dest.to_owned();
    let parts: Vec<_> = path.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err("a parent directory is a symlink; refusing to write through it")
            }
            Ok(meta) if !meta.is_dir() => return Err("a parent directory is a file"),
            _ => {}
        }
    }
    Ok(())
}

/// Creates the missing parent directories of `path` (zips need not list
/// directories before their files).
fn prepare_parents_io(dest: &Path, path: &LayerPath) -> io::Result<()> {
    let parent = dest.join(path.parent().as_str());
    fs::create_dir_all(parent)
}

/// Removes a file or symlink that a later entry replaces; refuses to replace
/// a directory with a file.
fn remove_existing(path: &Path) -> Result<(), &'static str> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err("a directory of that name is already there"),
        Ok(_) => fs::remove_file(path).map_err(|_| "cannot replace the existing file"),
        Err(_) => Ok(()),
    }
}
