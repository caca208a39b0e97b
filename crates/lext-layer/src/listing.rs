//! An in-memory listing of a layer, read from a zip or from a directory laid
//! out as `/opt` would be. [`crate::check`](mod@crate::check) works on this listing only, so the
//! checks are pure functions and the tests build listings by hand.
//!
//! Reading is bounded: non-ELF files are read for their first bytes only
//! (enough for a `#!` line) and ELF files are read whole up to a cap, so a
//! zip bomb cannot make `lext check` allocate without limit.

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::elf::{self, Content};
use crate::safepath::{self, LayerPath, UnsafeReason};

/// How many bytes of a non-ELF file are read (the `#!` line lives there).
const HEAD_LEN: u64 = 256;
/// ELF files larger than this are not parsed (the size check already fails
/// long before: Lambda's unzipped limit is 250 MiB).
const MAX_ELF_LEN: u64 = 512 * 1024 * 1024;

/// The unix file-type bits of a mode (`S_IFMT`) and the symlink and
/// directory types.
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;

/// How many bytes of a zip entry's data are read as a symlink target (a
/// target is a path; Linux's `PATH_MAX` is 4096).
pub(crate) const MAX_LINK_TARGET: u64 = 4096;

/// Whether a zip entry's unix mode says it is a symlink (its data is then
/// the target). Shared with [`crate::extract`](mod@crate::extract), so both
/// read modes the same way.
pub(crate) fn zip_is_symlink(unix_mode: Option<u32>) -> bool {
    unix_mode.is_some_and(|m| m & S_IFMT == S_IFLNK)
}

/// Whether a zip entry is a directory: its name ends in `/`
/// (`ZipFile::is_dir`) or its unix mode says so.
pub(crate) fn zip_is_dir(name_is_dir: bool, unix_mode: Option<u32>) -> bool {
    name_is_dir || unix_mode.is_some_and(|m| m & S_IFMT == S_IFDIR)
}

/// A layer's entries and sizes.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Every entry, in archive (or sorted directory) order.
    pub entries: Vec<Entry>,
    /// Size of the zip file itself; `None` for a directory.
    pub zipped_size: Option<u64>,
}

/// One file, directory or symlink of a layer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name as stored (zip name or relative path).
    pub name: String,
    /// The validated path, or why the name is unsafe.
    pub path: Result<LayerPath, UnsafeReason>,
    /// Directory, file or symlink.
    pub kind: EntryKind,
    /// Unix permission bits (`0o755`); `None` when the zip entry has no
    /// unix attributes (zipped on Windows), which Lambda extracts as 0644.
    pub mode: Option<u32>,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// What the file's bytes are (files only; `Other` for the rest).
    pub content: Content,
}

/// The kind of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link and its target as stored.
    Symlink {
        /// The link target.
        target: String,
    },
    /// A FIFO, socket or device (found in a directory layer only): never
    /// opened, since reading a FIFO blocks until someone writes to it.
    Special(Special),
}

/// A file that is neither regular, nor a directory, nor a symlink. A zip
/// cannot carry one, so a directory layer that has one is not what Lambda
/// would get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// A named pipe (`mkfifo`).
    Fifo,
    /// A unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Some other type the platform has.
    Other,
}

impl Special {
    /// What `file_type` is when it is special; `None` for a regular file,
    /// a directory or a symlink.
    pub fn of(file_type: &fs::FileType) -> Option<Special> {
        use std::os::unix::fs::FileTypeExt;
        Some(if file_type.is_fifo() {
            Special::Fifo
        } else if file_type.is_socket() {
            Special::Socket
        } else if file_type.is_char_device() {
            Special::CharDevice
        } else if file_type.is_block_device() {
            Special::BlockDevice
        } else if file_type.is_file() || file_type.is_dir() || file_type.is_symlink() {
            return None;
        } else {
            Special::Other
        })
    }
}

impl std::fmt::Display for Special {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Special::Fifo => "a FIFO",
            Special::Socket => "a socket",
            Special::CharDevice => "a character device",
            Special::BlockDevice => "a block device",
            Special::Other => "a special file",
        })
    }
}

/// Why a layer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The path does not exist or cannot be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The layer path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a readable zip archive.
    #[error("{} is not a valid zip file: {source}", path.display())]
    Zip {
        /// The zip path.
        path: PathBuf,
        /// What the zip reader said.
        source: zip::result::ZipError,
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
    /// An entry could not be read (corrupt data, bad CRC...).
    #[error("cannot read `{entry}` in {}: {source}", path.display())]
    Entry {
        /// The layer path.
        path: PathBuf,
        /// The entry name.
        entry: String,
        /// The I/O error.
        source: io::Error,
    },
}

impl Listing {
    /// Reads a layer from a zip file or a directory, whichever `path` is.
    pub fn read(path: &Path) -> Result<Listing, ListingError> {
        let meta = fs::metadata(path).map_err(|source| ListingError::Open {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            Listing::from_dir(path)
        } else {
            Listing::from_zip(path)
        }
    }

    /// Reads a layer zip.
    pub fn from_zip(path: &Path) -> Result<Listing, ListingError> {
        let meta = fs::metadata(path).map_err(|source| ListingError::Open {
            path: path.to_owned(),
            source,
        })?;
        if let Some(what) = Special::of(&meta.file_type()) {
            return Err(ListingError::NotALayer {
                path: path.to_owned(),
                what,
            });
        }
        let file = File::open(path).map_err(|source| ListingError::Open {
            path: path.to_owned(),
            source,
        })?;
        let zipped_size = file.metadata().ok().map(|m| m.len());
        let mut listing = Listing::from_zip_reader(file, path)?;
        listing.zipped_size = zipped_size;
        Ok(listing)
    }

    /// Reads a layer zip from any seekable reader; `path` names it in errors.
    pub fn from_zip_reader<R: Read + Seek>(
        reader: R,
        path: &Path,
    ) -> Result<Listing, ListingError> {
        let zip_err = |source| ListingError::Zip {
            path: path.to_owned(),
            source,
        };
        let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
        let mut entries = Vec::with_capacity(archive.len());
        for index in 0..archive.len() {
            let mut file = archive.by_index(index).map_err(zip_err)?;
            let name = String::from_utf8_lossy(file.name_raw()).into_owned();
            let entry_err = |source| ListingError::Entry {
                path: path.to_owned(),
                entry: name.clone(),
                source,
            };
            let raw_mode = file.unix_mode();
            let size = file.size();
            let (kind, content) = if zip_is_symlink(raw_mode) {
                let mut target = Vec::new();
                (&mut file)
                    .take(MAX_LINK_TARGET)
                    .read_to_end(&mut target)
                    .map_err(entry_err)?;
                let target = String::from_utf8_lossy(&target).into_owned();
                (EntryKind::Symlink { target }, Content::Other)
            } else if zip_is_dir(file.is_dir(), raw_mode) {
                (EntryKind::Dir, Content::Other)
            } else {
                (EntryKind::File, read_content(&mut file).map_err(entry_err)?)
            };
            let path = safepath::entry_path(&name);
            entries.push(Entry {
                name,
                path,
                kind,
                mode: raw_mode.map(|m| m & 0o7777),
                size,
                content,
            });
        }
        Ok(Listing {
            entries,
            zipped_size: None,
        })
    }

    /// Reads a directory laid out as the layer's `/opt`. Symlinks are
    /// listed, never followed.
    pub fn from_dir(root: &Path) -> Result<Listing, ListingError> {
        let open_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ListingError::Open { path, source }
        };
        let mut entries = Vec::new();
        // Depth-first walk with a stack of (absolute dir, relative name).
        let mut stack = vec![(root.to_owned(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let mut children: Vec<_> = fs::read_dir(&dir)
                .map_err(open_err(&dir))?
                .collect::<Result<_, _>>()
                .map_err(open_err(&dir))?;
            children.sort_by_key(|c| c.file_name());
            // Push in reverse so the walk visits names in sorted order.
            let mut subdirs = Vec::new();
            for child in children {
                let abs = child.path();
                let name = format!("{rel}{}", child.file_name().to_string_lossy());
                let meta = fs::symlink_metadata(&abs).map_err(open_err(&abs))?;
                let mode = Some(meta.permissions().mode() & 0o7777);
                let (kind, content, name) = if meta.file_type().is_symlink() {
                    let target = fs::read_link(&abs).map_err(open_err(&abs))?;
                    let target = target.to_string_lossy().into_owned();
                    (EntryKind::Symlink { target }, Content::Other, name)
                } else if meta.is_dir() {
                    subdirs.push((abs, format!("{name}/")));
                    (EntryKind::Dir, Content::Other, format!("{name}/"))
                } else if let Some(what) = Special::of(&meta.file_type()) {
                    (EntryKind::Special(what), Content::Other, name)
                } else {
                    let mut file = File::open(&abs).map_err(open_err(&abs))?;
                    let content = read_content(&mut file).map_err(open_err(&abs))?;
                    (EntryKind::File, content, name)
                };
                entries.push(Entry {
                    path: safepath::entry_path(&name),
                    name,
                    kind,
                    mode,
                    size: meta.len(),
                    content,
                });
            }
            stack.extend(subdirs.into_iter().rev());
        }
        // The stack walk emits each directory's children together; sort by
        // name so that nested entries follow their parent.
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Listing {
            entries,
            zipped_size: None,
        })
    }
}

/// Reads enough of a file to classify it: the head, or the whole file when it
/// is an ELF (its version tables may be anywhere).
fn read_content(reader: &mut impl Read) -> io::Result<Content> {
    let mut bytes = Vec::new();
    reader.by_ref().take(HEAD_LEN).read_to_end(&mut bytes)?;
    if elf::looks_like_elf(&bytes) {
        reader.by_ref().take(MAX_ELF_LEN).read_to_end(&mut bytes)?;
    }
    Ok(elf::inspect(&bytes))
}
