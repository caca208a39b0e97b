//! Reading what a file in a layer is, from its bytes alone: an ELF program
//! (machine, glibc symbol versions, dynamic loader), a `#!` script (its
//! interpreter), or something Lambda cannot start.
//!
//! This never runs the file. [`inspect`] is pure, so the checks built on it
//! are table-tested with hand-made headers.
//!
//! A file in a layer can be hundreds of MiB, or a bomb that only starts
//! like an ELF, so readers never load one whole: `ElfReader` starts from
//! the file's first [`PREFIX_LEN`] bytes and asks for the byte ranges the
//! checks need (the program and section header tables, the `PT_INTERP`
//! path, `.gnu.version_r` and its string table), each at most
//! [`MAX_ELF_TABLE`] bytes, and parses those alone.

use std::ops::Range;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, SectionTable};
use object::read::{ReadRef, StringTable};
use object::Endianness;

use crate::platform::{Arch, GlibcVersion};

/// What a file is, as far as launching it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// An ELF file that parsed.
    Elf(ElfInfo),
    /// A file that starts with the ELF magic but does not parse.
    BadElf(String),
    /// A `#!` script.
    Script(Interpreter),
    /// Anything else (text without `#!`, data, an empty file...).
    Other,
}

/// The facts about an ELF file that decide whether Lambda can run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// The architecture, or `None` for a machine Lambda does not have.
    pub arch: Option<Arch>,
    /// A human name for the machine (`x86_64`, `aarch64`, `i386 (32-bit)`...).
    pub machine: String,
    /// The newest `GLIBC_x.y` version the file needs, if it needs glibc.
    pub max_glibc: Option<GlibcVersion>,
    /// The dynamic loader from `PT_INTERP`; `None` for static binaries.
    pub interpreter: Option<String>,
}

/// How a `#!` line names its interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// An absolute path: `#!/bin/sh`.
    Path(String),
    /// A name looked up on `PATH` through env: `#!/usr/bin/env python3`.
    Env(String),
    /// A `#!` line with no usable interpreter, kept as written.
    Invalid(String),
}

/// The first bytes of every ELF file.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Whether `bytes` start like an ELF file. Readers use it to decide whether
/// to read the file's tables with an `ElfReader`.
pub fn looks_like_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(ELF_MAGIC)
}

/// Whether a file whose first bytes are `start` (fewer than four when that
/// is all there is so far) may be an ELF file.
pub(crate) fn maybe_elf(start: &[u8]) -> bool {
    let n = start.len().min(ELF_MAGIC.len());
    start[..n] == ELF_MAGIC[..n]
}

/// Classifies a file from its contents. An ELF file must be passed whole
/// (version tables are at the end), or read with an `ElfReader`; for
/// anything else the first 256 bytes are enough.
pub fn inspect(bytes: &[u8]) -> Content {
    if looks_like_elf(bytes) {
        return match inspect_elf(bytes) {
            Ok(info) => Content::Elf(info),
            Err(err) => Content::BadElf(err.to_string()),
        };
    }
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        return Content::Script(parse_shebang(rest));
    }
    Content::Other
}

fn inspect_elf<'data, R: ReadRef<'data>>(data: R) -> object::Result<ElfInfo> {
    // e_ident[EI_CLASS] (byte 4) says 32 or 64 bit; the two header types
    // differ, and an unknown class is rejected by the 32-bit parser.
    match data.read_bytes_at(4, 1) {
        Ok([elf::ELFCLASS64]) => inspect_elf_as::<elf::FileHeader64<Endianness>, R>(data),
        _ => inspect_elf_as::<elf::FileHeader32<Endianness>, R>(data),
    }
}

fn inspect_elf_as<'data, H: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
) -> object::Result<ElfInfo> {
    let header = H::parse(data)?;
    let endian = header.endian()?;
    let e_machine = header.e_machine(endian);
    let is_64 = header.is_class_64();
    // Lambda only has 64-bit little-endian x86_64 and aarch64 machines; a
    // 32-bit i386 binary has its own EM_386 value, so the machine alone
    // decides, and the class only makes the message clearer.
    let arch = match (e_machine, is_64) {
        (elf::EM_X86_64, true) => Some(Arch::X86_64),
        (elf::EM_AARCH64, true) => Some(Arch::Arm64),
        _ => None,
    };
    let machine = match e_machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm (32-bit)",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390x",
        _ => "",
    };
    let machine = if machine.is_empty() {
        format!("ELF machine {e_machine}")
    } else if !is_64 && arch.is_none() && e_machine == elf::EM_X86_64 {
        "x86_64 (32-bit ELF)".to_owned()
    } else {
        machine.to_owned()
    };

    let mut interpreter = None;
    for segment in header.program_headers(endian, data)? {
        if segment.p_type(endian) == elf::PT_INTERP {
            if let Some(bytes) = segment.interpreter(endian, data)? {
                interpreter = Some(String::from_utf8_lossy(bytes).into_owned());
            }
        }
    }

    // The needed glibc versions are the `vna_name`s of `.gnu.version_r`
    // (the version-needs section) that read `GLIBC_x.y`. The dynamic loader
    // refuses to start the program if the runtime's libc lacks any of them.
    // Sections are found by type, so their names (`.shstrtab`, usually at
    // the far end of the file) are never read.
    let mut max_glibc: Option<GlibcVersion> = None;
    let sections = SectionTable::<H, R>::new(
        header.section_headers(endian, data)?,
        StringTable::default(),
    );
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_need, mut auxes)) = needs.next()? {
            while let Some(aux) = auxes.next()? {
                let name = String::from_utf8_lossy(aux.name(endian, strings)?);
                if let Some(v) = GlibcVersion::from_symbol_version(&name) {
                    max_glibc = max_glibc.max(Some(v));
                }
            }
        }
    }

    Ok(ElfInfo {
        arch,
        machine,
        max_glibc,
        interpreter,
    })
}

/// How many bytes of a file's start readers keep to classify it: the `#!`
/// line, the ELF header and, in a linked program, the tables the dynamic
/// loader reads (they follow the headers; only the section header table is
/// usually at the far end).
pub const PREFIX_LEN: u64 = 4 * 1024 * 1024;

/// The largest single table `ElfReader` reads from an ELF file. A real
/// program's tables are some KiB (a big C++ library's `.dynstr` a few MiB);
/// an ELF asking for more is reported rather than read.
pub const MAX_ELF_TABLE: u64 = 16 * 1024 * 1024;

/// How many times [`ElfReader::wants`] may be answered: the header names
/// the tables, the tables name the sections. One more for slack.
pub(crate) const MAX_ROUNDS: usize = 3;

/// Classifies an ELF file from some of its byte ranges, never the whole
/// file: start it with the file's first [`PREFIX_LEN`] bytes, read what
/// [`ElfReader::wants`] asks for (at most [`MAX_ROUNDS`] times, each range
/// at most [`MAX_ELF_TABLE`] bytes), [`ElfReader::add`] it, then
/// [`ElfReader::inspect`].
#[derive(Debug)]
pub(crate) struct ElfReader {
    data: Sparse,
    /// A table larger than [`MAX_ELF_TABLE`], described, if one was asked.
    too_large: Option<String>,
}

impl ElfReader {
    /// A reader of a file `len` bytes long whose first bytes are `prefix`.
    pub(crate) fn new(prefix: Vec<u8>, len: u64) -> ElfReader {
        ElfReader {
            data: Sparse {
                len,
                chunks: vec![(0, prefix)],
            },
            too_large: None,
        }
    }

    /// The byte ranges the checks need that are not read yet (empty when
    /// there is nothing more to read), each within the file and at most
    /// [`MAX_ELF_TABLE`] long. Starts are rounded down to 16 bytes so that
    /// the headers parsed from them stay aligned.
    pub(crate) fn wants(&mut self) -> Vec<Range<u64>> {
        let tables = match self.data.read_bytes_at(4, 1) {
            Ok([elf::ELFCLASS64]) => tables::<elf::FileHeader64<Endianness>>(&self.data),
            _ => tables::<elf::FileHeader32<Endianness>>(&self.data),
        };
        let mut wants = Vec::new();
        for (what, start, size) in tables {
            let end = start.saturating_add(size).min(self.data.len);
            let start = start & !15;
            if start >= end || self.data.get(start, end - start).is_some() {
                continue;
            }
            if end - start > MAX_ELF_TABLE {
                self.too_large.get_or_insert(format!(
                    "{what} is {size} bytes, more than the {MAX_ELF_TABLE} lext reads"
                ));
                continue;
            }
            wants.push(start..end);
        }
        wants
    }

    /// The file's first bytes, as given to [`ElfReader::new`].
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.data.chunks[0].1
    }

    /// Adds the bytes read at `offset` (a range [`ElfReader::wants`] gave).
    pub(crate) fn add(&mut self, offset: u64, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.data.chunks.push((offset, bytes));
        }
    }

    /// What the file is, from the ranges read.
    pub(crate) fn inspect(&self) -> Content {
        if let Some(what) = &self.too_large {
            return Content::BadElf(what.clone());
        }
        match inspect_elf(&self.data) {
            Ok(info) => Content::Elf(info),
            Err(err) => Content::BadElf(err.to_string()),
        }
    }
}

/// The tables [`inspect_elf_as`] reads, as far as the bytes at hand tell:
/// `(what, offset, size)`. The header gives the two header tables; those
/// give the `PT_INTERP` path, the version-needs section and its strings.
fn tables<H: FileHeader<Endian = Endianness>>(data: &Sparse) -> Vec<(&'static str, u64, u64)> {
    let mut tables = Vec::new();
    let Ok(header) = H::parse(data) else {
        return tables;
    };
    let Ok(endian) = header.endian() else {
        return tables;
    };
    let phoff: u64 = header.e_phoff(endian).into();
    let phnum = u64::from(header.e_phnum(endian));
    if phoff != 0 && phnum != 0 && phnum != u64::from(elf::PN_XNUM) {
        let size = phnum * u64::from(header.e_phentsize(endian));
        tables.push(("the program header table", phoff, size));
    }
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff != 0 {
        // With more than 0xff00 sections e_shnum is 0 and the count is in
        // section 0, which comes first.
        let shnum = match header.e_shnum(endian) {
            0 => 1,
            n => u64::from(n),
        };
        let size = shnum * u64::from(header.e_shentsize(endian));
        tables.push(("the section header table", shoff, size));
    }
    if let Ok(segments) = header.program_headers(endian, data) {
        for segment in segments {
            if segment.p_type(endian) == elf::PT_INTERP {
                let (offset, size) = segment.file_range(endian);
                tables.push(("the PT_INTERP path", offset, size));
            }
        }
    }
    if let Ok(sections) = header.section_headers(endian, data) {
        // `SectionTable::gnu_verneed` uses the first one, and its link.
        let verneed = sections
            .iter()
            .find(|s| s.sh_type(endian) == elf::SHT_GNU_VERNEED);
        if let Some(verneed) = verneed {
            if let Some((offset, size)) = verneed.file_range(endian) {
                tables.push(("the .gnu.version_r section", offset, size));
            }
            let link = sections.get(verneed.sh_link(endian) as usize);
            if let Some((offset, size)) = link.and_then(|s| s.file_range(endian)) {
                tables.push(("the .gnu.version_r string table", offset, size));
            }
        }
    }
    tables
}

/// Some byte ranges of a file `len` bytes long; a read outside them fails
/// as a read past the end of a buffer does.
#[derive(Debug)]
struct Sparse {
    len: u64,
    /// `(offset, bytes)`, the prefix first.
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Sparse {
    /// `size` bytes at `offset`, if one chunk holds them all.
    fn get(&self, offset: u64, size: u64) -> Option<&[u8]> {
        let end = offset.checked_add(size)?;
        self.chunks.iter().find_map(|(start, bytes)| {
            let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
            let to = usize::try_from(end - start).ok()?;
            bytes.get(from..to)
        })
    }
}

impl<'a> ReadRef<'a> for &'a Sparse {
    fn len(self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        self.get(offset, size).ok_or(())
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        for (start, bytes) in &self.chunks {
            let Some(from) = range.start.checked_sub(*start) else {
                continue;
            };
            let Ok(from) = usize::try_from(from) else {
                continue;
            };
            let to =
                usize::try_from(range.end - start).map_or(bytes.len(), |to| to.min(bytes.len()));
            if let Some(slice) = bytes.get(from..to) {
                if let Some(i) = slice.iter().position(|&b| b == delimiter) {
                    return Ok(&slice[..i]);
                }
            }
        }
        Err(())
    }
}

/// Parses what follows `#!` on a script's first line, the way the Linux
/// kernel does: the interpreter path, then at most one argument.
fn parse_shebang(rest: &[u8]) -> Interpreter {
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = String::from_utf8_lossy(&rest[..line_end]);
    let line = line.trim_end_matches('\r').trim();
    let mut words = line.split_whitespace();
    let Some(program) = words.next() else {
        return Interpreter::Invalid(line.to_owned());
    };
    if !program.starts_with('/') {
        // The kernel resolves a relative interpreter against the current
        // directory, which is not the layer: treat it as broken.
        return Interpreter::Invalid(line.to_owned());
    }
    let is_env = program.rsplit('/').next() == Some("env");
    if is_env {
        // Skip env's options (`-S` splits the rest; others take no value
        // that matters here) to reach the command it runs.
        match words.find(|w| !w.starts_with('-')) {
            Some(name) if !name.contains('=') => return Interpreter::Env(name.to_owned()),
            _ => return Interpreter::Invalid(line.to_owned()),
        }
    }
    Interpreter::Path(program.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs() {
        let s = |text: &str| match inspect(text.as_bytes()) {
            Content::Script(i) => i,
            other => panic!("not a script: {other:?}"),
        };
        assert_eq!(s("#!/bin/sh\necho"), Interpreter::Path("/bin/sh".into()));
        assert_eq!(
            s("#! /bin/bash -e\r\n"),
            Interpreter::Path("/bin/bash".into())
        );
        assert_eq!(
            s("#!/usr/bin/env python3\n"),
            Interpreter::Env("python3".into())
        );
        assert_eq!(
            s("#!/usr/bin/env -S node --flag\n"),
            Interpreter::Env("node".into())
        );
        assert!(matches!(s("#!\n"), Interpreter::Invalid(_)));
        assert!(matches!(s("#!python\n"), Interpreter::Invalid(_)));
        assert_eq!(inspect(b"hello"), Content::Other);
        assert_eq!(inspect(b""), Content::Other);
    }

    #[test]
    fn truncated_elf_is_reported_not_panicked() {
        assert!(matches!(inspect(b"\x7fELF"), Content::BadElf(_)));
        assert!(matches!(
            inspect(b"\x7fELF\x02\x01\x01\0\0\0\0\0"),
            Content::BadElf(_)
        ));
    }

    #[test]
    fn own_test_binary_is_a_native_elf() {
        // The test executable is a real ELF built for this machine.
        let exe = std::env::current_exe().expect("current_exe");
        let bytes = std::fs::read(exe).expect("read own executable");
        let Content::Elf(info) = inspect(&bytes) else {
            panic!("own executable not recognised as ELF");
        };
        #[cfg(target_arch = "x86_64")]
        assert_eq!(info.arch, Some(Arch::X86_64));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(info.arch, Some(Arch::Arm64));
        #[cfg(target_env = "gnu")]
        assert!(info.max_glibc.is_some(), "a gnu build needs glibc symbols");
    }
}
