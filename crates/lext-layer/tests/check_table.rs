//! `lext check` over a table of bad layers, one per problem, each built as a
//! real zip (or directory) and read back through `Listing`, plus the size
//! limits over hand-made listings (no 250 MiB file is written).

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Cursor;
use std::path::Path;

use lext_layer::elf::Content;
use lext_layer::listing::{Entry, EntryKind, Listing};
use lext_layer::{check, safepath, Arch, CheckOptions, ProblemKind, Runtime};
use support::*;

fn listing(items: &[Item]) -> Listing {
    let bytes = zip_bytes(items);
    let len = bytes.len() as u64;
    let mut listing = Listing::from_zip_reader(Cursor::new(bytes), Path::new("test.zip"))
        .expect("the test zip reads");
    listing.zipped_size = Some(len);
    listing
}

fn ext(name: &str, bytes: Vec<u8>) -> Item {
    file(&format!("extensions/{name}"), bytes, 0o755)
}

fn al2(arch: Option<Arch>) -> CheckOptions {
    CheckOptions {
        runtime: Runtime::ProvidedAl2,
        arch,
    }
}

/// The kinds of the problems found, for compact assertions.
fn kinds(items: &[Item], options: CheckOptions) -> Vec<ProblemKind> {
    check(&listing(items), &options)
        .into_iter()
        .map(|p| p.kind)
        .collect()
}

#[test]
fn a_good_layer_has_no_problem() {
    let items = [
        Item::Dir("extensions/"),
        ext("good", good_x86_64()),
        ext("script", b"#!/bin/sh\nexec true\n".to_vec()),
        file("bin/tool", b"#!/bin/bash\n".to_vec(), 0o755),
        file("config/app.toml", b"x = 1\n".to_vec(), 0o644),
        ext("uses-layer-tool", b"#!/usr/bin/env tool\n".to_vec()),
        link("lib/libx.so", "libx.so.1"),
        file("lib/libx.so.1", good_x86_64(), 0o644),
    ];
    assert_eq!(kinds(&items, al2(Some(Arch::X86_64))), vec![]);
    assert_eq!(kinds(&items, al2(None)), vec![]);
}

#[test]
fn one_bad_layer_per_problem() {
    let arm = fake_elf(
        EM_AARCH64,
        true,
        &["GLIBC_2.17"],
        Some("/lib/ld-linux-aarch64.so.1"),
    );
    let new_glibc = fake_elf(
        EM_X86_64,
        true,
        &["GLIBC_2.2.5", "GLIBC_2.28"],
        Some(LD_X86_64),
    );
    let musl = fake_elf(EM_X86_64, true, &[], Some("/lib/ld-musl-x86_64.so.1"));
    let i386 = fake_elf(EM_386, false, &[], None);
    let eleven: Vec<Item> = (0..11)
        .map(|i| ext(&format!("e{i}"), good_x86_64()))
        .collect();

    let table: Vec<(&str, Vec<Item>, CheckOptions, &str)> = vec![
        (
            "binary at the root, no extensions/",
            vec![file("my-ext", good_x86_64(), 0o755)],
            al2(None),
            "layer: no extensions/ directory at the root: put each extension at extensions/<name>",
        ),
        (
            "zipped one directory too high",
            vec![file("build/extensions/my-ext", good_x86_64(), 0o755)],
            al2(None),
            "(found build/extensions/ instead): zip from inside build/",
        ),
        (
            "empty extensions/",
            vec![Item::Dir("extensions/"), file("README", b"x".to_vec(), 0o644)],
            al2(None),
            "extensions/: no extension in extensions/",
        ),
        (
            "not executable",
            vec![file("extensions/foo", good_x86_64(), 0o644)],
            al2(None),
            "extensions/foo: not executable (mode 0644): chmod 0755 it before zipping, or use lext package",
        ),
        (
            "zipped without unix permissions",
            vec![Item::NoMode("extensions/foo".into(), good_x86_64())],
            al2(None),
            "extensions/foo: not executable (the zip stores no unix permissions, Lambda extracts it as 0644)",
        ),
        (
            "owner-only exec bit (Lambda's user is not the owner)",
            vec![file("extensions/foo", good_x86_64(), 0o744)],
            al2(None),
            "extensions/foo: not executable (mode 0744)",
        ),
        (
            "script not readable by others",
            vec![file("extensions/foo", b"#!/bin/sh\n".to_vec(), 0o711)],
            al2(None),
            "extensions/foo: not executable (mode 0711)",
        ),
        (
            "not an ELF",
            vec![ext("notes.txt", b"hello".to_vec())],
            al2(None),
            "extensions/notes.txt: not an ELF executable nor a #! script",
        ),
        (
            "corrupt ELF",
            vec![ext("broken", b"\x7fELF\x02\x01\x01garbage".to_vec())],
            al2(None),
            "extensions/broken: corrupt ELF",
        ),
        (
            "arm64 binary for an x86_64 function",
            vec![ext("foo", arm.clone())],
            al2(Some(Arch::X86_64)),
            "extensions/foo: built for aarch64, the function runs on x86_64 (exec format error at init): rebuild with lext build --arch x86_64",
        ),
        (
            "32-bit binary",
            vec![ext("foo", i386)],
            al2(None),
            "extensions/foo: built for i386, Lambda runs only x86_64 and arm64",
        ),
        (
            "mixed architectures",
            vec![ext("a", good_x86_64()), ext("b", arm)],
            al2(None),
            "extensions/: extensions for several architectures (x86_64, arm64)",
        ),
        (
            "glibc newer than provided.al2",
            vec![ext("foo", new_glibc)],
            al2(None),
            "extensions/foo: needs GLIBC_2.28, provided.al2 has glibc 2.26",
        ),
        (
            "musl loader absent from the runtime",
            vec![ext("foo", musl)],
            al2(None),
            "extensions/foo: its dynamic loader /lib/ld-musl-x86_64.so.1 does not exist on provided.al2",
        ),
        (
            "more than 10 extensions",
            eleven,
            al2(None),
            "extensions/: 11 extensions, Lambda allows at most 10 per function",
        ),
        (
            "path traversal",
            vec![ext("ok", good_x86_64()), file("../evil", b"x".to_vec(), 0o644)],
            al2(None),
            "../evil: path traversal (`..`)",
        ),
        (
            "absolute path",
            vec![ext("ok", good_x86_64()), file("/etc/cron.d/x", b"x".to_vec(), 0o644)],
            al2(None),
            "/etc/cron.d/x: absolute path",
        ),
        (
            "symlink out of the layer",
            vec![ext("ok", good_x86_64()), link("extensions/sh", "/bin/sh")],
            al2(None),
            "extensions/sh: symlink to `/bin/sh` points outside the layer",
        ),
        (
            "symlink climbing out with ..",
            vec![ext("ok", good_x86_64()), link("lib/x", "../../etc/passwd")],
            al2(None),
            "lib/x: symlink to `../../etc/passwd` points outside the layer",
        ),
        (
            "dangling extension symlink",
            vec![link("extensions/foo", "../bin/missing")],
            al2(None),
            "extensions/foo: symlink to `../bin/missing`, which is not in the layer",
        ),
        (
            "python script on an OS-only runtime",
            vec![ext("py", b"#!/usr/bin/env python3\nprint(1)\n".to_vec())],
            al2(None),
            "extensions/py: script interpreter `/usr/bin/env python3` does not exist on provided.al2",
        ),
        (
            "node by absolute path",
            vec![ext("js", b"#!/usr/bin/node\n".to_vec())],
            al2(None),
            "extensions/js: script interpreter `/usr/bin/node` does not exist on provided.al2",
        ),
    ];

    for (what, items, options, expected) in table {
        let problems = check(&listing(&items), &options);
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "{what}: expected a line containing\n  {expected}\ngot\n  {}",
            lines.join("\n  ")
        );
        // Every line is one line, says what is wrong and how to fix it.
        for line in &lines {
            assert!(!line.contains('\n'), "{what}: multi-line problem: {line}");
            assert!(line.matches(": ").count() >= 2, "{what}: no fix in: {line}");
        }
    }
}

#[test]
fn glibc_floor_depends_on_the_runtime() {
    let items = [ext(
        "foo",
        fake_elf(EM_X86_64, true, &["GLIBC_2.34"], Some(LD_X86_64)),
    )];
    let on = |runtime| {
        kinds(
            &items,
            CheckOptions {
                runtime,
                arch: None,
            },
        )
    };
    assert_eq!(
        on(Runtime::ProvidedAl2),
        vec![ProblemKind::GlibcTooNew {
            needed: "GLIBC_2.34".parse::<FakeVersion>().unwrap().0,
            runtime: Runtime::ProvidedAl2
        }]
    );
    assert_eq!(on(Runtime::ProvidedAl2023), vec![]);
}

/// Parses `GLIBC_x.y` through the library, for expected values.
struct FakeVersion(lext_layer::GlibcVersion);
impl std::str::FromStr for FakeVersion {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        lext_layer::GlibcVersion::from_symbol_version(s)
            .map(FakeVersion)
            .ok_or(())
    }
}

fn sized_entry(name: &str, size: u64) -> Entry {
    Entry {
        name: name.to_owned(),
        path: safepath::entry_path(name),
        kind: EntryKind::File,
        mode: Some(0o755),
        size,
        content: lext_layer::elf::inspect(&good_x86_64()),
        faults: Vec::new(),
    }
}

#[test]
fn size_limits() {
    assert!(matches!(
        lext_layer::elf::inspect(&good_x86_64()),
        Content::Elf(_)
    ));
    let mib = 1024 * 1024;
    let at_limit = Listing {
        entries: vec![sized_entry("extensions/a", 250 * mib)],
        zipped_size: Some(50 * mib),
    };
    assert_eq!(check(&at_limit, &al2(None)), vec![]);

    let over = Listing {
        entries: vec![
            sized_entry("extensions/a", 200 * mib),
            sized_entry("extensions/b", 50 * mib + 1),
        ],
        zipped_size: Some(50 * mib + 1),
    };
    let lines: Vec<String> = check(&over, &al2(None))
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        lines,
        vec![
            format!(
                "layer: zip is {} bytes, over the 52428800-byte (50 MiB) limit of a direct \
                 upload: shrink the binaries (release profile, strip) or drop files",
                50 * mib + 1
            ),
            format!(
                "layer: unzipped size is {} bytes, over the 262144000-byte (250 MiB) limit of a \
                 function with its layers: shrink or drop files",
                250 * mib + 1
            ),
        ]
    );
}

#[test]
fn a_real_zip_over_50_mib_is_caught() {
    // Stored, so the zip really is over the limit; cheap to write.
    let big = vec![0u8; 50 * 1024 * 1024];
    let items = [ext("ok", good_x86_64()), file("data/blob", big, 0o644)];
    let found = kinds(&items, al2(None));
    assert!(
        found
            .iter()
            .any(|k| matches!(k, ProblemKind::ZippedTooLarge { .. })),
        "{found:?}"
    );
}

#[test]
fn a_directory_layer_is_checked_like_a_zip() {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("extensions")).unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    let put = |name: &str, bytes: &[u8], mode: u32| {
        let path = root.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    put("extensions/good", &good_x86_64(), 0o755);
    put("extensions/noexec", &good_x86_64(), 0o644);
    put("bin/helper", b"#!/bin/sh\n", 0o755);
    symlink("../bin/helper", root.join("extensions/linked")).unwrap();
    symlink("/etc/passwd", root.join("bin/escape")).unwrap();

    let listing = Listing::read(root).unwrap();
    assert_eq!(listing.zipped_size, None);
    let lines: Vec<String> = check(&listing, &al2(None))
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with("bin/escape: symlink to `/etc/passwd` points outside"));
    assert!(lines[1].starts_with("extensions/noexec: not executable (mode 0644)"));
}

#[test]
fn a_corrupt_zip_is_an_error_not_a_problem_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.zip");
    let mut bytes = zip_bytes(&[ext("a", good_x86_64())]);
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, bytes).unwrap();
    let err = Listing::read(&path).unwrap_err().to_string();
    assert!(err.contains("is not a valid zip file"), "{err}");
    let missing = Listing::read(&dir.path().join("nope.zip"))
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("cannot open"), "{missing}");
}

#[test]
fn fake_elves_parse_as_intended() {
    let Content::Elf(info) = lext_layer::elf::inspect(&fake_elf(
        EM_X86_64,
        true,
        &["GLIBC_2.2.5", "GLIBC_2.28", "GLIBC_PRIVATE"],
        Some(LD_X86_64),
    )) else {
        panic!("fake ELF does not parse");
    };
    assert_eq!(info.arch, Some(Arch::X86_64));
    assert_eq!(
        info.max_glibc.map(|v| v.to_string()).as_deref(),
        Some("2.28")
    );
    assert_eq!(info.interpreter.as_deref(), Some(LD_X86_64));
}

#[test]
fn special_files_in_a_directory_layer_are_problems_never_opened() {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("extensions")).unwrap();
    fs::create_dir_all(root.join("run")).unwrap();
    fs::write(root.join("extensions/ok"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        root.join("extensions/ok"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("extensions/x"))
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    let _socket = std::os::unix::net::UnixListener::bind(root.join("run/sock")).unwrap();

    // Reading the FIFO would block this test forever: it must not be opened.
    let listing = Listing::read(root).unwrap();
    let lines: Vec<String> = check(&listing, &al2(None))
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        lines,
        vec![
            "extensions/x: a FIFO, not a regular file; Lambda layers are zip archives of \
             regular files and directories: remove it from the layer directory",
            "run/sock: a socket, not a regular file; Lambda layers are zip archives of \
             regular files and directories: remove it from the layer directory",
        ]
    );

    // A FIFO given as the layer itself is refused before it is opened.
    let err = Listing::read(&root.join("extensions/x"))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("x is a FIFO, not a zip file nor a directory"),
        "{err}"
    );
}

const MIB: u64 = 1024 * 1024;

fn zip_listing(bytes: Vec<u8>) -> Listing {
    Listing::from_zip_reader(Cursor::new(bytes), Path::new("t.zip")).unwrap()
}

fn lines(listing: &Listing, options: CheckOptions) -> Vec<String> {
    check(listing, &options)
        .iter()
        .map(|p| p.to_string())
        .collect()
}

fn script_then_zeros(zeros: u64) -> Vec<Part> {
    vec![Part::Bytes(b"#!/bin/sh\n".to_vec()), Part::Zeros(zeros)]
}

#[test]
fn entries_whose_data_is_not_what_their_header_declares_are_problems() {
    let fix = ": rebuild the zip from the files themselves, or use lext package";
    // Holds 8 MiB, declares 1 KiB: read no further than 1 KiB and a byte.
    let mut larger = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(8 * MIB))]);
    patch_declared_size(&mut larger, "extensions/x", 1024);
    // Holds 4106 bytes, declares 10 MiB.
    let mut smaller = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(4096))]);
    patch_declared_size(&mut smaller, "extensions/x", 10 << 20);
    // The sizes are right, the CRC-32 is not; in a file that is not an
    // extension, which Lambda unpacks all the same.
    let mut altered = deflated_zip(&[
        streamed("extensions/x", 0o755, script_then_zeros(10)),
        streamed("lib/data", 0o644, vec![Part::Zeros(5000)]),
    ]);
    let crc = declared_crc(&altered, "lib/data");
    patch_crc(&mut altered, "lib/data", crc.wrapping_add(1));
    let table = [
        (
            larger,
            format!(
                "extensions/x: declares 1024 bytes, holds more (a corrupt or crafted zip){fix}"
            ),
        ),
        (
            smaller,
            format!(
                "extensions/x: declares 10485760 bytes, holds 4106 (a corrupt or crafted zip){fix}"
            ),
        ),
        (
            altered,
            format!(
                "lib/data: its bytes do not match the CRC-32 its header declares (a corrupt or \
                 crafted zip){fix}"
            ),
        ),
    ];
    for (zip, expected) in table {
        assert_eq!(lines(&zip_listing(zip), al2(None)), vec![expected]);
    }
}

#[test]
fn two_entries_for_one_path_are_a_problem() {
    let line = "extensions/x: two entries with this name; Lambda would keep one of them: \
                rebuild the zip with one entry per path, or use lext package";
    // The same name twice: the zip reader keeps one, the listing notes it.
    let same = deflated_zip(&[
        streamed("extensions/x", 0o755, script_then_zeros(1)),
        streamed("extensions/x", 0o755, script_then_zeros(2)),
    ]);
    assert_eq!(lines(&zip_listing(same), al2(None)), vec![line]);
    // Two spellings of one path.
    let spelled = zip_bytes(&[
        ext("x", b"#!/bin/sh\n".to_vec()),
        file("./extensions/x", b"#!/bin/sh\n".to_vec(), 0o755),
    ]);
    assert_eq!(lines(&zip_listing(spelled), al2(None)), vec![line]);
    // A directory listed twice is harmless.
    let dirs = zip_bytes(&[
        Item::Dir("extensions/"),
        Item::Dir("./extensions/"),
        ext("x", b"#!/bin/sh\n".to_vec()),
    ]);
    assert_eq!(lines(&zip_listing(dirs), al2(None)), Vec::<String>::new());
}

#[test]
fn elf_tables_far_from_the_headers_are_read_without_the_whole_file() {
    let needs = "extensions/big: needs GLIBC_2.28, provided.al2 has glibc 2.26";
    let glibc = ["GLIBC_2.2.5", "GLIBC_2.28"];
    // Section headers at the end (found on the first pass), then version
    // tables at the end too (found from the section headers: a second
    // pass over the zip entry).
    for parts in [
        big_elf(&glibc, 8 * MIB),
        big_elf_tables_at_the_end(&glibc, 8 * MIB),
    ] {
        let zip = deflated_zip(&[streamed("extensions/big", 0o755, parts.clone())]);
        let found = lines(&zip_listing(zip), al2(None));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with(needs), "{found:#?}");

        // The same file in a directory layer (sparse: the padding is a
        // hole), read in place.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("extensions")).unwrap();
        let path = dir.path().join("extensions/big");
        write_parts_sparse(&path, &parts);
        let found = lines(&Listing::read(dir.path()).unwrap(), al2(None));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with(needs), "{found:#?}");
    }
}

/// Writes the parts to `path`, leaving holes for the runs of zeros.
fn write_parts_sparse(path: &Path, parts: &[Part]) {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::create(path).unwrap();
    let mut at = 0u64;
    for part in parts {
        match part {
            Part::Bytes(bytes) => {
                file.write_all(bytes).unwrap();
                at += bytes.len() as u64;
            }
            Part::Zeros(n) => {
                at += n;
                file.seek(SeekFrom::Start(at)).unwrap();
            }
        }
    }
    file.set_len(at).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_elf_table_larger_than_the_cap_is_reported_not_read() {
    // A .gnu.version_r section (section 2) that says it is 32 MiB long, in
    // a file long enough to hold it.
    let mut elf = good_x86_64();
    let shoff = u64::from_le_bytes(elf[40..48].try_into().unwrap()) as usize;
    let sh_size = shoff + 2 * 64 + 32;
    elf[sh_size..sh_size + 8].copy_from_slice(&(32 * MIB).to_le_bytes());
    let zip = deflated_zip(&[streamed(
        "extensions/x",
        0o755,
        vec![Part::Bytes(elf), Part::Zeros(40 * MIB)],
    )]);
    assert_eq!(
        lines(&zip_listing(zip), al2(None)),
        vec![format!(
            "extensions/x: corrupt ELF (the .gnu.version_r section is {} bytes, more than the \
             16777216 lext reads): rebuild it with lext build",
            32 * MIB
        )]
    );
}

#[test]
fn past_the_unzipped_limit_entries_are_listed_but_not_read() {
    // 250 MiB and a byte of data first: the layer fails on size whatever
    // follows, so the extension after it is not read, and not judged (its
    // content would otherwise read as "not an ELF").
    let limit = lext_layer::check::MAX_UNZIPPED_BYTES;
    let zip = deflated_zip(&[
        streamed("lib/blob", 0o644, vec![Part::Zeros(limit + 1)]),
        streamed("extensions/x", 0o755, vec![Part::Bytes(good_x86_64())]),
    ]);
    let listing = zip_listing(zip);
    let faults: Vec<_> = listing.entries.iter().map(|e| e.faults.clone()).collect();
    assert_eq!(
        faults,
        vec![
            vec![lext_layer::Fault::NotRead],
            vec![lext_layer::Fault::NotRead]
        ]
    );
    assert_eq!(
        lines(&listing, al2(None)),
        vec![format!(
            "layer: unzipped size is {} bytes, over the 262144000-byte (250 MiB) limit of a \
             function with its layers: shrink or drop files",
            limit + 1 + good_x86_64().len() as u64
        )]
    );
}
