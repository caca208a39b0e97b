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
