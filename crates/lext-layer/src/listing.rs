//! An in-memory listing of a layer, read from a zip or from a directory laid
//! out as `/opt` would be. [`crate::check`](mod@crate::check) works on this listing only, so the
//! checks are pure functions and the tests build listings by hand.
//!
//! Nothing in a zip's headers is trusted. Every file entry is read to its
//! end through a limit of its declared size plus one byte, so an entry
//! that holds more or less than it declares, or whose CRC-32 is wrong,
//! becomes a [`Fault`] of that entry (`lext check` reports it) after at
//! most its declared size has been read; names that occur twice in the
//! central directory are faults too. Reading is bounded in memory as well:
//! of each file only the first [`elf::PREFIX_LEN`] bytes are kept (of a
//! non-ELF file, the first 256), plus the few tables an ELF check needs
//! (`elf::ElfReader`), so neither a zip bomb nor a 200 MiB program makes
//! `lext check` hold a file whole. And it is bounded in time: after
//! [`MAX_UNZIPPED_BYTES`] of file data and link targets, the layer is over
//! Lambda's limit whatever follows, so the remaining files and links are
//! listed from their headers only, marked [`Fault::NotRead`].

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::check::MAX_UNZIPPED_BYTES;
use crate::elf::{self, Content, ElfReader, MAX_ROUNDS, PREFIX_LEN};
use crate::safepath::{self, LayerPath, UnsafeReason};

/// How many bytes of a non-ELF file are kept (the kernel reads a `#!` line
/// from the first 256 bytes).
const HEAD_LEN: u64 = 256;

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
    /// What is wrong with the entry itself, as a zip entry (empty for a
    /// directory layer): a name given twice, data that is not what its
    /// header declares.
    pub faults: Vec<Fault>,
}

/// What is wrong with a zip entry as stored, found by reading all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The central directory holds another entry of this very name (which
    /// of the two a reader keeps is up to the reader).
    Duplicate,
    /// The data goes on past the uncompressed size the header declares
    /// (reading stopped one byte past it).
    LargerThanDeclared {
        /// The declared uncompressed size.
        declared: u64,
    },
    /// The data ends before the declared size.
    SmallerThanDeclared {
        /// The declared uncompressed size.
        declared: u64,
        /// How many bytes it holds.
        found: u64,
    },
    /// The data has the declared size but not the declared CRC-32.
    BadChecksum,
    /// The data cannot be read at all (corrupt compressed stream,
    /// compression method or encryption the reader lacks, a bad offset).
    Unreadable {
        /// What the zip reader said.
        detail: String,
    },
    /// Not read: the entries before it already hold more than Lambda's
    /// unzipped limit, so the layer fails whatever this entry holds.
    NotRead,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CRAFTED: &str = "(a corrupt or crafted zip)";
        match self {
            Fault::Duplicate => write!(
                f,
                "two entries with this name; Lambda would keep one of them"
            ),
            Fault::LargerThanDeclared { declared } => {
                write!(f, "declares {declared} bytes, holds more {CRAFTED}")
            }
            Fault::SmallerThanDeclared { declared, found } => {
                write!(f, "declares {declared} bytes, holds {found} {CRAFTED}")
            }
            Fault::BadChecksum => write!(
                f,
                "its bytes do not match the CRC-32 its header declares {CRAFTED}"
            ),
            Fault::Unreadable { detail } => write!(f, "cannot be read: {detail} {CRAFTED}"),
            Fault::NotRead => write!(
                f,
                "not read: the entries before it hold more than {MAX_UNZIPPED_BYTES} bytes"
            ),
        }
    }
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
        // The archive keeps one entry per name; the others are only seen
        // by walking the central directory again.
        let mut duplicates = BTreeSet::new();
        if archive.has_duplicate_names() {
            let start = archive.central_directory_start();
            let mut reader = archive.into_inner();
            duplicates = duplicate_names(&mut reader, start)
                .map_err(|source| zip_err(zip::result::ZipError::Io(source)))?;
            archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
        }
        // Bytes of files and link targets that may still be read before
        // the layer is over Lambda's limit whatever else it holds.
        let mut budget = MAX_UNZIPPED_BYTES;
        let mut entries = Vec::with_capacity(archive.len());
        for index in 0..archive.len() {
            let meta = archive.by_index_data(index).map_err(zip_err)?;
            let name = String::from_utf8_lossy(meta.name_raw()).into_owned();
            let mut faults = Vec::new();
            if duplicates.contains(meta.name_raw()) {
                faults.push(Fault::Duplicate);
            }
            let raw_mode = meta.unix_mode();
            let size = meta.size();
            let name_is_dir = meta.is_dir();
            drop(meta);

            let (kind, content) = if zip_is_symlink(raw_mode) && budget == 0 {
                faults.push(Fault::NotRead);
                (
                    EntryKind::Symlink {
                        target: String::new(),
                    },
                    Content::Other,
                )
            } else if zip_is_symlink(raw_mode) {
                let mut target = Vec::new();
                let (read, result) =
                    read_entry(&mut archive, index, size, MAX_LINK_TARGET, |_, b| {
                        target.extend_from_slice(b);
                    });
                budget = budget.saturating_sub(read);
                match result {
                    Ok(()) => {}
                    Err(Drain::Fault(fault)) => faults.push(fault),
                    Err(Drain::OverCap | Drain::Sink(_)) => faults.push(Fault::Unreadable {
                        detail: format!("a symlink target of {size} bytes, longer than any path"),
                    }),
                }
                target.truncate(MAX_LINK_TARGET as usize);
                let target = String::from_utf8_lossy(&target).into_owned();
                (EntryKind::Symlink { target }, Content::Other)
            } else if zip_is_dir(name_is_dir, raw_mode) {
                // Lambda makes a directory; data stored with it is unused.
                (EntryKind::Dir, Content::Other)
            } else if budget == 0 {
                faults.push(Fault::NotRead);
                (EntryKind::File, Content::Other)
            } else {
                let mut scan = Scan::new(size);
                let (read, result) =
                    read_entry(&mut archive, index, size, budget, |at, b| scan.feed(at, b));
                budget = budget.saturating_sub(read);
                match result {
                    Ok(()) => {}
                    Err(Drain::Fault(fault)) => faults.push(fault),
                    Err(Drain::OverCap | Drain::Sink(_)) => {
                        budget = 0;
                        faults.push(Fault::NotRead);
                    }
                }
                let content = match scan.finish() {
                    Scanned::Done(content) => content,
                    Scanned::Elf(mut reader) => {
                        // Tables the first pass could not know of (named
                        // by tables it read) take another pass each, over
                        // an entry now known to be what it declares.
                        if faults.iter().all(|f| *f == Fault::Duplicate) {
                            for _ in 1..MAX_ROUNDS {
                                let wants = reader.wants();
                                if wants.is_empty() {
                                    break;
                                }
                                let mut capture = RangeCapture::new(wants);
                                let (_, result) =
                                    read_entry(&mut archive, index, size, size, |at, b| {
                                        capture.feed(at, b)
                                    });
                                capture.add_to(&mut reader);
                                if result.is_err() {
                                    break;
                                }
                            }
                        }
                        reader.inspect()
                    }
                };
                (EntryKind::File, content)
            };
            let path = safepath::entry_path(&name);
            entries.push(Entry {
                name,
                path,
                kind,
                mode: raw_mode.map(|m| m & 0o7777),
                size,
                content,
                faults,
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
                    let file = File::open(&abs).map_err(open_err(&abs))?;
                    let content = file_content(&file, meta.len()).map_err(open_err(&abs))?;
                    (EntryKind::File, content, name)
                };
                entries.push(Entry {
                    path: safepath::entry_path(&name),
                    name,
                    kind,
                    mode,
                    size: meta.len(),
                    content,
                    faults: Vec::new(),
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

/// Classifies a file of a directory layer, `len` bytes long: its head,
/// and for an ELF the ranges [`ElfReader`] asks for, read in place.
fn file_content(file: &File, len: u64) -> io::Result<Content> {
    let mut head = Vec::new();
    file.take(HEAD_LEN).read_to_end(&mut head)?;
    if !elf::looks_like_elf(&head) {
        return Ok(elf::inspect(&head));
    }
    file.take(PREFIX_LEN - HEAD_LEN).read_to_end(&mut head)?;
    let mut reader = ElfReader::new(head, len);
    for _ in 0..MAX_ROUNDS {
        let wants = reader.wants();
        if wants.is_empty() {
            break;
        }
        for range in wants {
            // `wants` caps each range at MAX_ELF_TABLE bytes.
            let mut bytes = vec![0; (range.end - range.start) as usize];
            let mut filled = 0;
            while filled < bytes.len() {
                match file.read_at(&mut bytes[filled..], range.start + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            bytes.truncate(filled);
            reader.add(range.start, bytes);
        }
    }
    Ok(reader.inspect())
}

/// Why [`drain`] stopped before the end of an entry.
#[derive(Debug)]
pub(crate) enum Drain {
    /// The entry is not what its header declares.
    Fault(Fault),
    /// It holds more than the caller's cap (and is not known to be lying).
    OverCap,
    /// The sink failed (writing the extracted file).
    Sink(io::Error),
}

/// Reads a zip entry to its end, handing each chunk and its offset to
/// `sink`: at most `declared + 1` bytes (one byte past the declared size
/// tells "holds more"), and at most `cap + 1` bytes. Reading to the end is
/// what makes the zip reader check the CRC-32. Returns how many bytes were
/// read, and whether the entry proved to be what it declares.
pub(crate) fn drain(
    entry: &mut dyn Read,
    declared: u64,
    cap: u64,
    sink: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>,
) -> (u64, Result<(), Drain>) {
    let limit = declared.min(cap).saturating_add(1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    while read < limit {
        let want = (limit - read).min(buf.len() as u64) as usize;
        match entry.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = sink(read, &buf[..n]) {
                    return (read, Err(Drain::Sink(e)));
                }
                read += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (read, Err(Drain::Fault(read_fault(&e, read, declared)))),
        }
    }
    let result = if read > declared {
        Err(Drain::Fault(Fault::LargerThanDeclared { declared }))
    } else if read > cap {
        Err(Drain::OverCap)
    } else if read < declared {
        Err(Drain::Fault(Fault::SmallerThanDeclared {
            declared,
            found: read,
        }))
    } else {
        Ok(())
    };
    (read, result)
}

/// What a read error of the zip reader means, `read` bytes into an entry
/// that declares `declared`. The reader stops an entry that grows past its
/// declared size and checks the CRC-32 at its end; its messages are the
/// only way to tell the two apart (`drain`'s own limit catches the first
/// if a reader ever stops checking).
fn read_fault(error: &io::Error, read: u64, declared: u64) -> Fault {
    let message = error.to_string();
    if message.contains("larger than its declared") {
        Fault::LargerThanDeclared { declared }
    } else if message.contains("checksum") && read < declared {
        Fault::SmallerThanDeclared {
            declared,
            found: read,
        }
    } else if message.contains("checksum") {
        Fault::BadChecksum
    } else {
        Fault::Unreadable { detail: message }
    }
}

/// [`drain`]s entry `index` of `archive` into `sink`, which cannot fail.
fn read_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    index: usize,
    declared: u64,
    cap: u64,
    mut sink: impl FnMut(u64, &[u8]),
) -> (u64, Result<(), Drain>) {
    match archive.by_index(index) {
        Ok(mut entry) => drain(&mut entry, declared, cap, &mut |at, b| {
            sink(at, b);
            Ok(())
        }),
        Err(e) => (
            0,
            Err(Drain::Fault(Fault::Unreadable {
                detail: e.to_string(),
            })),
        ),
    }
}

/// The names that occur more than once in the central directory starting
/// at `start`. Each header is at least 46 bytes, so the walk ends with the
/// directory: at the first thing that is not a central header (the end
/// record) or at the end of the file.
pub(crate) fn duplicate_names<R: Read + Seek>(
    reader: &mut R,
    start: u64,
) -> io::Result<BTreeSet<Vec<u8>>> {
    const CENTRAL_HEADER: [u8; 4] = *b"PK\x01\x02";
    reader.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::new(reader);
    let mut seen = HashSet::new();
    let mut duplicates = BTreeSet::new();
    let mut fixed = [0u8; 46];
    while reader.read_exact(&mut fixed).is_ok() && fixed[..4] == CENTRAL_HEADER {
        let field = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let mut name = vec![0; usize::from(field(28))];
        reader.read_exact(&mut name)?;
        reader.seek_relative(i64::from(field(30)) + i64::from(field(32)))?;
        if let Some(name) = seen.replace(name) {
            duplicates.insert(name);
        }
    }
    Ok(duplicates)
}

/// The first pass over a zip file entry: keeps its first bytes and, once
/// they show an ELF, captures the tables the ELF header names as the rest
/// streams by (the section header table is usually at the very end).
struct Scan {
    len: u64,
    head: Vec<u8>,
    elf: Option<(ElfReader, RangeCapture)>,
}

/// What [`Scan::finish`] found.
enum Scanned {
    Done(Content),
    Elf(ElfReader),
}

impl Scan {
    fn new(len: u64) -> Scan {
        Scan {
            len,
            head: Vec::new(),
            elf: None,
        }
    }

    fn feed(&mut self, mut offset: u64, mut bytes: &[u8]) {
        if self.elf.is_none() {
            let probe: Vec<u8> = self.head.iter().chain(bytes).take(4).copied().collect();
            let keep = if elf::maybe_elf(&probe) {
                PREFIX_LEN
            } else {
                HEAD_LEN
            };
            let take = (keep as usize)
                .saturating_sub(self.head.len())
                .min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            offset += take as u64;
            bytes = &bytes[take..];
            if self.head.len() as u64 == PREFIX_LEN && elf::looks_like_elf(&self.head) {
                let reader = ElfReader::new(std::mem::take(&mut self.head), self.len);
                self.elf = Some(Self::capture_for(reader));
            }
        }
        if let Some((_, capture)) = &mut self.elf {
            capture.feed(offset, bytes);
        }
    }

    /// A capture of what `reader` wants, fed first from its prefix (a
    /// table may start inside it).
    fn capture_for(mut reader: ElfReader) -> (ElfReader, RangeCapture) {
        let mut capture = RangeCapture::new(reader.wants());
        capture.feed(0, reader.prefix());
        (reader, capture)
    }

    fn finish(self) -> Scanned {
        match self.elf {
            Some((mut reader, capture)) => {
                capture.add_to(&mut reader);
                Scanned::Elf(reader)
            }
            None if elf::looks_like_elf(&self.head) => {
                Scanned::Elf(ElfReader::new(self.head, self.len))
            }
            None => {
                let head = &self.head[..self.head.len().min(HEAD_LEN as usize)];
                Scanned::Done(elf::inspect(head))
            }
        }
    }
}

/// Collects byte ranges of a stream as it goes by, in order.
struct RangeCapture {
    parts: Vec<(Range<u64>, Vec<u8>)>,
}

impl RangeCapture {
    fn new(ranges: Vec<Range<u64>>) -> RangeCapture {
        RangeCapture {
            parts: ranges.into_iter().map(|r| (r, Vec::new())).collect(),
        }
    }

    /// The stream's bytes at `offset`.
    fn feed(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset + bytes.len() as u64;
        for (range, got) in &mut self.parts {
            // The next byte this range needs; a range whose start went by
            // before the capture began is left short.
            let next = range.start + got.len() as u64;
            if next >= range.end || next < offset || next >= end {
                continue;
            }
            let stop = range.end.min(end);
            got.extend_from_slice(&bytes[(next - offset) as usize..(stop - offset) as usize]);
        }
    }

    fn add_to(self, reader: &mut ElfReader) {
        for (range, bytes) in self.parts {
            reader.add(range.start, bytes);
        }
    }
}
