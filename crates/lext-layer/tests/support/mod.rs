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

/// A piece of a streamed zip entry: bytes as given, or a run of zeros
/// (so a 300 MiB entry never sits in memory, nor takes seconds to deflate).
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This many zero bytes.
    Zeros(u64),
}

/// One entry of [`deflated_zip`]: its name, unix mode and content.
#[derive(Debug, Clone)]
pub(crate) struct Streamed {
    pub name: String,
    pub mode: u32,
    pub parts: Vec<Part>,
}

/// A streamed regular-file entry.
pub(crate) fn streamed(name: &str, mode: u32, parts: Vec<Part>) -> Streamed {
    Streamed {
        name: name.to_owned(),
        mode,
        parts,
    }
}

/// A zip of the entries, in order and named as given (duplicates too,
/// which the `zip` crate refuses to write), each deflated by hand: one
/// fixed-Huffman block where a run of zeros is a literal zero then
/// length-258, distance-1 matches (13 bits per 258 bytes), so 300 MiB of
/// zeros is a 2 MB zip written in a blink. Headers are honest; see
/// [`patch_declared_size`] for one that lies.
pub(crate) fn deflated_zip(entries: &[Streamed]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in entries {
        let (data, crc, size) = deflate_parts(&entry.parts);
        let offset = out.len() as u32;
        let name = entry.name.as_bytes();
        let fixed = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(&sig.to_le_bytes());
            if central {
                h.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by unix
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // version needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&8u16.to_le_bytes()); // deflate
            h.extend_from_slice(&0u16.to_le_bytes()); // time
            h.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&u32::try_from(size).expect("under 4 GiB").to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra length
            if central {
                h.extend_from_slice(&0u16.to_le_bytes()); // comment length
                h.extend_from_slice(&0u16.to_le_bytes()); // disk
                h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
                h.extend_from_slice(&((0o100_000 | entry.mode) << 16).to_le_bytes());
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(name);
            h
        };
        out.extend_from_slice(&fixed(0x0403_4b50, false));
        out.extend_from_slice(&data);
        central.extend_from_slice(&fixed(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// Sets the uncompressed size that the central directory and the local
/// header of every entry named `name` declare (the data stays as it is).
pub(crate) fn patch_declared_size(zip: &mut [u8], name: &str, size: u32) {
    patch_headers(zip, name, 24, 22, size);
}

/// Sets the CRC-32 that both headers of every entry named `name` declare.
pub(crate) fn patch_crc(zip: &mut [u8], name: &str, crc: u32) {
    patch_headers(zip, name, 16, 14, crc);
}

/// Writes `value` at `central_at` in the central directory entries named
/// `name` and at `local_at` in their local headers.
fn patch_headers(zip: &mut [u8], name: &str, central_at: usize, local_at: usize, value: u32) {
    let u16_at = |z: &[u8], at: usize| u16::from_le_bytes([z[at], z[at + 1]]) as usize;
    let u32_at =
        |z: &[u8], at: usize| u32::from_le_bytes([z[at], z[at + 1], z[at + 2], z[at + 3]]) as usize;
    let eocd = zip.len() - 22;
    assert_eq!(u32_at(zip, eocd), 0x0605_4b50, "a zip without a comment");
    let (count, mut at) = (u16_at(zip, eocd + 10), u32_at(zip, eocd + 16));
    let mut patched = 0;
    for _ in 0..count {
        assert_eq!(u32_at(zip, at), 0x0201_4b50, "central directory entry");
        let name_len = u16_at(zip, at + 28);
        let next = at + 46 + name_len + u16_at(zip, at + 30) + u16_at(zip, at + 32);
        if &zip[at + 46..at + 46 + name_len] == name.as_bytes() {
            zip[at + central_at..at + central_at + 4].copy_from_slice(&value.to_le_bytes());
            let local = u32_at(zip, at + 42);
            assert_eq!(u32_at(zip, local), 0x0403_4b50, "local header");
            zip[local + local_at..local + local_at + 4].copy_from_slice(&value.to_le_bytes());
            patched += 1;
        }
        at = next;
    }
    assert!(patched > 0, "no entry named {name}");
}

/// The CRC-32 the headers of the first entry named `name` declare.
pub(crate) fn declared_crc(zip: &[u8], name: &str) -> u32 {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("a zip");
    let crc = archive.by_name(name).expect("the entry").crc32();
    crc
}

/// A fake x86_64 ELF needing `glibc`, laid out as big linked programs
/// are: `padding` zero bytes after the tables the loader reads, then the
/// section header table at the very end (so a reader must reach the end).
/// Returns the parts of a streamed entry, never `padding` bytes in memory.
pub(crate) fn big_elf(glibc: &[&str], padding: u64) -> Vec<Part> {
    let mut elf = fake_elf(EM_X86_64, true, glibc, Some(LD_X86_64));
    let shoff = u64::from_le_bytes(elf[40..48].try_into().expect("e_shoff")) as usize;
    assert!(shoff > 0, "a fake ELF with sections");
    let table = elf.split_off(shoff);
    elf[40..48].copy_from_slice(&(shoff as u64 + padding).to_le_bytes());
    vec![Part::Bytes(elf), Part::Zeros(padding), Part::Bytes(table)]
}

/// Like [`big_elf`], but the version tables (`.dynstr`, `.gnu.version_r`)
/// come after the padding too, far from the headers.
pub(crate) fn big_elf_tables_at_the_end(glibc: &[&str], padding: u64) -> Vec<Part> {
    let mut elf = fake_elf(EM_X86_64, true, glibc, Some(LD_X86_64));
    let u64_at = |e: &[u8], at: usize| u64::from_le_bytes(e[at..at + 8].try_into().expect("u64"));
    let shoff = u64_at(&elf, 40) as usize;
    // Section 1 is .dynstr, the first byte after the loader's tables.
    let tables_at = u64_at(&elf, shoff + 64 + 24) as usize;
    for section in 1..3 {
        let sh_offset = shoff + section * 64 + 24;
        let moved = u64_at(&elf, sh_offset) + padding;
        elf[sh_offset..sh_offset + 8].copy_from_slice(&moved.to_le_bytes());
    }
    elf[40..48].copy_from_slice(&(shoff as u64 + padding).to_le_bytes());
    let tail = elf.split_off(tables_at);
    vec![Part::Bytes(elf), Part::Zeros(padding), Part::Bytes(tail)]
}

/// Raw deflate of the parts, their CRC-32 and their length.
fn deflate_parts(parts: &[Part]) -> (Vec<u8>, u32, u64) {
    let mut bits = BitWriter::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE 01: fixed Huffman codes
    let mut crc = !0u32;
    let mut size = 0u64;
    for part in parts {
        match part {
            Part::Bytes(bytes) => {
                for &b in bytes {
                    bits.literal(b);
                    crc = crc_byte(crc, b);
                }
                size += bytes.len() as u64;
            }
            Part::Zeros(0) => {}
            Part::Zeros(n) => {
                bits.literal(0);
                let rest = n - 1;
                for _ in 0..rest / 258 {
                    bits.code(0b1100_0101, 8); // length symbol 285: 258 bytes
                    bits.code(0, 5); // distance symbol 0: 1 byte back
                }
                for _ in 0..rest % 258 {
                    bits.literal(0);
                }
                crc = crc_zeros(crc, *n);
                size += n;
            }
        }
    }
    bits.code(0, 7); // end of block (symbol 256)
    (bits.finish(), !crc, size)
}

/// Deflate's bit order: fields least-significant bit first, Huffman codes
/// most-significant bit first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    len: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, n: u32) {
        self.acc |= u64::from(value) << self.len;
        self.len += n;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn code(&mut self, code: u32, n: u32) {
        self.put(code.reverse_bits() >> (32 - n), n);
    }

    fn literal(&mut self, b: u8) {
        match b {
            0..=143 => self.code(0x30 + u32::from(b), 8),
            _ => self.code(0x190 + u32::from(b - 144), 9),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// One byte through the (reflected) CRC-32 register.
fn crc_byte(mut crc: u32, b: u8) -> u32 {
    crc ^= u32::from(b);
    for _ in 0..8 {
        crc = if crc & 1 == 1 {
            (crc >> 1) ^ 0xEDB8_8320
        } else {
            crc >> 1
        };
    }
    crc
}

/// `n` zero bytes through the CRC-32 register: feeding a zero byte is a
/// linear map of the register over GF(2), so it is raised to the `n`th
/// power by squaring, as zlib's `crc32_combine` does.
fn crc_zeros(crc: u32, mut n: u64) -> u32 {
    // A matrix is its 32 columns: the images of the 32 unit registers.
    type Matrix = [u32; 32];
    let apply = |m: &Matrix, v: u32| {
        (0..32)
            .filter(|i| v >> i & 1 == 1)
            .fold(0, |acc, i| acc ^ m[i])
    };
    let mul = |a: &Matrix, b: &Matrix| -> Matrix { std::array::from_fn(|i| apply(a, b[i])) };
    let mut power: Matrix = std::array::from_fn(|i| crc_byte(1 << i, 0));
    let mut result = crc;
    while n > 0 {
        if n & 1 == 1 {
            result = apply(&power, result);
        }
        power = mul(&power, &power);
        n >>= 1;
    }
    result
}
