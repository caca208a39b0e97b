//! Reading what a file in a layer is, from its bytes alone: an ELF program
//! (machine, glibc symbol versions, dynamic loader), a `#!` script (its
//! interpreter), or something Lambda cannot start.
//!
//! This never runs the file. [`inspect`] is pure, so the checks built on it
//! are table-tested with hand-made headers.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
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
/// a file must be read whole for [`inspect`].
pub fn looks_like_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(ELF_MAGIC)
}

/// Classifies a file from its contents. An ELF file must be passed whole
/// (version tables are at the end); for anything else the first 256 bytes are
/// enough.
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

fn inspect_elf(data: &[u8]) -> object::Result<ElfInfo> {
    // e_ident[EI_CLASS] (byte 4) says 32 or 64 bit; the two header types
    // differ, and an unknown class is rejected by the 32-bit parser.
    match data.get(4) {
        Some(&elf::ELFCLASS64) => inspect_elf_as::<elf::FileHeader64<Endianness>>(data),
        _ => inspect_elf_as::<elf::FileHeader32<Endianness>>(data),
    }
}

fn inspect_elf_as<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> object::Result<ElfInfo> {
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
    let mut max_glibc: Option<GlibcVersion> = None;
    let sections = header.sections(endian, data)?;
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
