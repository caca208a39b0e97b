//! Test helpers shared by lext-layer's tests and the CLI tests of the root
//! package (included there with `#[path]`): hand-made ELF files and zips, so
//! no binary fixture lives in git.

#![allow(dead_code)]

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

/// ELF machine numbers.
pub(crate) const EM_386: u16 = 3;
pub(crate) const EM_X86_64: u16 = 62;
pub(crate) const EM_AARCH64: u16 = 183;

/// The glibc dynamic loader of x86_64.
pub(crate) const LD_X86_64: &str = "/lib64/ld-linux-x86-64.so.2";

/// A minimal little-endian ELF executable: the file header, an optional
/// `PT_INTERP` program header, and, when `glibc` is not empty, a `.dynstr`
/// string table plus a `.gnu.version_r` section needing those versions
/// from libc.so.6, which is exactly what the dynamic loader checks.
pub(crate) fn fake_elf(
    machine: u16,
    class64: bool,
    glibc: &[&str],
    interp: Option<&str>,
) -> Vec<u8> {
    if !class64 {
        // A bare 32-bit header (52 bytes) is enough for the machine check.
        let mut h = Vec::new();
        h.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0");
        h.extend_from_slice(&2u16.to_le_bytes()); // e_type EXEC
        h.extend_from_slice(&machine.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // e_version
        h.extend_from_slice(&[0; 12]); // entry, phoff, shoff
        h.extend_from_slice(&0u32.to_le_bytes()); // flags
        h.extend_from_slice(&52u16.to_le_bytes()); // ehsize
        h.extend_from_slice(&32u16.to_le_bytes()); // phentsize
        h.extend_from_slice(&0u16.to_le_bytes()); // phnum
        h.extend_from_slice(&40u16.to_le_bytes()); // shentsize
        h.extend_from_slice(&[0; 4]); // shnum, shstrndx
        return h;
    }

    // Body layout after the 64-byte header: [phdr][interp][dynstr][verneed][shdrs]
    let mut body: Vec<u8> = Vec::new();
    let base = 64u64;
    let mut phoff = 0u64;
    let mut phnum = 0u16;
    if let Some(interp) = interp {
        phoff = base;
        phnum = 1;
        let interp_off = base + 56;
        let bytes = format!("{interp}\0");
        let mut ph = Vec::new();
        ph.extend_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        ph.extend_from_slice(&4u32.to_le_bytes()); // PF_R
        ph.extend_from_slice(&interp_off.to_le_bytes()); // p_offset
        ph.extend_from_slice(&interp_off.to_le_bytes()); // p_vaddr
        ph.extend_from_slice(&interp_off.to_le_bytes()); // p_paddr
        ph.extend_from_slice(&(bytes.len() as u64).to_le_bytes()); // filesz
        ph.extend_from_slice(&(bytes.len() as u64).to_le_bytes()); // memsz
        ph.extend_from_slice(&1u64.to_le_bytes()); // align
        body.extend_from_slice(&ph);
        body.extend_from_slice(bytes.as_bytes());
    }
    let mut shoff = 0u64;
    let mut shnum = 0u16;
    if !glibc.is_empty() {
        while !(base as usize + body.len()).is_multiple_of(8) {
            body.push(0);
        }
        // .dynstr: "\0libc.so.6\0GLIBC_x\0..."
        let dynstr_off = base + body.len() as u64;
        let mut dynstr = vec![0u8];
        let file_name = dynstr.len() as u32;
        dynstr.extend_from_slice(b"libc.so.6\0");
        let mut names = Vec::new();
        for v in glibc {
            names.push(dynstr.len() as u32);
            dynstr.extend_from_slice(v.as_bytes());
            dynstr.push(0);
        }
        body.extend_from_slice(&dynstr);
        while !(base as usize + body.len()).is_multiple_of(8) {
            body.push(0);
        }
        // .gnu.version_r: one Verneed, then one Vernaux per version.
        let verneed_off = base + body.len() as u64;
        let mut vn = Vec::new();
        vn.extend_from_slice(&1u16.to_le_bytes()); // vn_version
        vn.extend_from_slice(&(glibc.len() as u16).to_le_bytes()); // vn_cnt
        vn.extend_from_slice(&file_name.to_le_bytes()); // vn_file
        vn.extend_from_slice(&16u32.to_le_bytes()); // vn_aux
        vn.extend_from_slice(&0u32.to_le_bytes()); // vn_next
        for (i, name) in names.iter().enumerate() {
            vn.extend_from_slice(&0u32.to_le_bytes()); // vna_hash (unchecked)
            vn.extend_from_slice(&0u16.to_le_bytes()); // vna_flags
            vn.extend_from_slice(&(i as u16 + 2).to_le_bytes()); // vna_other
            vn.extend_from_slice(&name.to_le_bytes()); // vna_name
            let next = if i + 1 < names.len() { 16u32 } else { 0 };
            vn.extend_from_slice(&next.to_le_bytes()); // vna_next
        }
        body.extend_from_slice(&vn);
        while !(base as usize + body.len()).is_multiple_of(8) {
            body.push(0);
        }
        shoff = base + body.len() as u64;
        shnum = 3;
        let shdr = |typ: u32, off: u64, size: u64, link: u32, info: u32| {
            let mut s = Vec::new();
            s.extend_from_slice(&0u32.to_le_bytes()); // sh_name
            s.extend_from_slice(&typ.to_le_bytes());
            s.extend_from_slice(&2u64.to_le_bytes()); // SHF_ALLOC
            s.extend_from_slice(&off.to_le_bytes()); // sh_addr
            s.extend_from_slice(&off.to_le_bytes()); // sh_offset
            s.extend_from_slice(&size.to_le_bytes());
            s.extend_from_slice(&link.to_le_bytes());
            s.extend_from_slice(&info.to_le_bytes());
            s.extend_from_slice(&8u64.to_le_bytes()); // addralign
            s.extend_from_slice(&0u64.to_le_bytes()); // entsize
            s
        };
        body.extend_from_slice(&[0u8; 64]); // SHN_UNDEF
        body.extend_from_slice(&shdr(3, dynstr_off, dynstr.len() as u64, 0, 0)); // SHT_STRTAB
        body.extend_from_slice(&shdr(0x6fff_fffe, verneed_off, vn.len() as u64, 1, 1));
        // SHT_GNU_VERNEED
    }

    let mut h = Vec::new();
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend_from_slice(&2u16.to_le_bytes()); // e_type EXEC
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // e_version
    h.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&phoff.to_le_bytes());
    h.extend_from_slice(&shoff.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&phnum.to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&shnum.to_le_bytes());
    // Section names come from .dynstr too (every name is its empty string
    // at offset 0): the reader needs a string table index when sections exist.
    let shstrndx: u16 = if shnum > 0 { 1 } else { 0 };
    h.extend_from_slice(&shstrndx.to_le_bytes()); // e_shstrndx
    assert_eq!(h.len(), 64);
    h.extend_from_slice(&body);
    h
}

/// A good x86_64 extension: glibc 2.2.5..2.18, the glibc loader.
pub(crate) fn good_x86_64() -> Vec<u8> {
    fake_elf(
        EM_X86_64,
        true,
        &["GLIBC_2.2.5", "GLIBC_2.18"],
        Some(LD_X86_64),
    )
}

/// One entry of a hand-made zip.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A directory entry (name ends with `/`).
    Dir(&'static str),
    /// A file with its unix mode.
    File(String, Vec<u8>, u32),
    /// A symlink and its target.
    Link(String, String),
    /// A file zipped without any attributes (as some Windows tools do).
    NoMode(String, Vec<u8>),
}

/// A file item.
pub(crate) fn file(name: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Item {
    Item::File(name.to_owned(), bytes.into(), mode)
}

/// A symlink item.
pub(crate) fn link(name: &str, target: &str) -> Item {
    Item::Link(name.to_owned(), target.to_owned())
}

/// Writes the items, in order and with names as given (unsanitized), to an
/// in-memory zip. Stored (not deflated) so that big test files are cheap.
pub(crate) fn zip_bytes(items: &[Item]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let base = SimpleFileOptions::default()
        .system(System::Unix)
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default());
    for item in items {
        match item {
            Item::Dir(name) => zip.add_directory(*name, base).expect("dir"),
            Item::File(name, bytes, mode) => {
                zip.start_file(name.as_str(), base.unix_permissions(*mode))
                    .expect("start");
                zip.write_all(bytes).expect("write");
            }
            Item::NoMode(name, bytes) => {
                let options = base.system(System::Dos).external_attributes(0);
                zip.start_file(name.as_str(), options).expect("start");
                zip.write_all(bytes).expect("write");
            }
            Item::Link(name, target) => zip
                .add_symlink(name.as_str(), target.as_str(), base)
                .expect("link"),
        }
    }
    zip.finish().expect("finish").into_inner()
}
