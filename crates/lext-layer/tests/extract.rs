//! `lext_layer::extract`: what `lext run --layer ZIP` unpacks. Modes are kept,
//! and every way out of the destination is refused with nothing written
//! outside it.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lext_layer::extract::{extract, extract_reader, ExtractError};
use lext_layer::safepath::UnsafeReason;
use support::*;

fn unpack(items: &[Item], dest: &Path) -> Result<lext_layer::Extracted, ExtractError> {
    extract_reader(Cursor::new(zip_bytes(items)), Path::new("t.zip"), dest)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn keeps_layout_modes_and_inner_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("opt");
    let out = unpack(
        &[
            Item::Dir("extensions/"),
            file("extensions/a", good_x86_64(), 0o755),
            file("extensions/b", b"#!/bin/sh\n".to_vec(), 0o644),
            // No directory entry for lib/: parents are created on demand.
            file("lib/libx.so.1", b"elf".to_vec(), 0o644),
            link("lib/libx.so", "libx.so.1"),
            link("extensions/c", "../lib/libx.so.1"),
            file("setuid", b"x".to_vec(), 0o4755),
        ],
        &dest,
    )
    .unwrap();
    assert_eq!(out.files, 4);
    assert_eq!(out.links, 2);
    assert_eq!(out.extensions, vec!["a", "b", "c"]);
    assert_eq!(mode(&dest.join("extensions/a")), 0o755);
    // A non-executable extension stays non-executable, as on Lambda.
    assert_eq!(mode(&dest.join("extensions/b")), 0o644);
    assert_eq!(mode(&dest.join("lib/libx.so.1")), 0o644);
    // setuid is never restored.
    assert_eq!(mode(&dest.join("setuid")), 0o755);
    assert_eq!(
        fs::read_link(dest.join("lib/libx.so")).unwrap(),
        Path::new("libx.so.1")
    );
    assert_eq!(fs::read(dest.join("extensions/c")).unwrap(), b"elf");
    assert_eq!(fs::read(dest.join("extensions/a")).unwrap(), good_x86_64());
}

#[test]
fn refuses_every_way_out() {
    let cases: Vec<(&str, Vec<Item>, UnsafeReason)> = vec![
        (
            "dot-dot",
            vec![file("../evil", b"x".to_vec(), 0o644)],
            UnsafeReason::ParentDir,
        ),
        (
            "nested dot-dot",
            vec![file("extensions/../../evil", b"x".to_vec(), 0o644)],
            UnsafeReason::ParentDir,
        ),
        (
            "absolute",
            vec![file("/tmp/evil", b"x".to_vec(), 0o644)],
            UnsafeReason::Absolute,
        ),
        (
            "absolute link",
            vec![link("extensions/sh", "/bin/sh")],
            UnsafeReason::LinkEscapes,
        ),
        (
            "climbing link",
            vec![link("lib/up", "../../outside")],
            UnsafeReason::LinkEscapes,
        ),
        (
            // Named like a directory, moded as a link: read as the link it
            // says it is (as `lext check` does), so its target is checked.
            "link named like a directory",
            vec![link("lib/up/", "../../outside")],
            UnsafeReason::LinkEscapes,
        ),
        (
            "link then dot-dot",
            vec![link("x", "a/..")],
            UnsafeReason::LinkEscapes,
        ),
    ];
    for (what, items, reason) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("opt");
        match unpack(&items, &dest) {
            Err(ExtractError::Unsafe { reason: got, .. }) => assert_eq!(got, reason, "{what}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        // Nothing landed next to the destination.
        let siblings: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, vec!["opt"], "{what}: wrote outside dest");
        assert!(!Path::new("/tmp/evil").exists() || what != "absolute");
    }
}

#[test]
fn never_writes_through_a_symlink() {
    // A link to a directory inside the layer is fine as a link, but a later
    // entry must not be written through it (the link could have been made
    // to point anywhere by an earlier layer).
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("opt");
    let err = unpack(
        &[
            Item::Dir("real/"),
            link("alias", "real"),
            file("alias/payload", b"x".to_vec(), 0o644),
        ],
        &dest,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("symlink; refusing to write through it"),
        "{err}"
    );
    assert!(!dest.join("real/payload").exists());
}

#[test]
fn a_read_only_directory_entry_still_takes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("opt");
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let ro = zip::write::SimpleFileOptions::default().unix_permissions(0o555);
    zip.add_directory("extensions/", ro).unwrap();
    zip.start_file(
        "extensions/a",
        zip::write::SimpleFileOptions::default().unix_permissions(0o755),
    )
    .unwrap();
    std::io::Write::write_all(&mut zip, b"x").unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    extract_reader(Cursor::new(bytes), Path::new("t.zip"), &dest).unwrap();
    assert_eq!(fs::read(dest.join("extensions/a")).unwrap(), b"x");
    assert_eq!(mode(&dest.join("extensions")), 0o755);
}

#[test]
fn later_layers_replace_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("opt");
    unpack(&[file("extensions/a", b"one".to_vec(), 0o755)], &dest).unwrap();
    unpack(&[file("extensions/a", b"two".to_vec(), 0o644)], &dest).unwrap();
    assert_eq!(fs::read(dest.join("extensions/a")).unwrap(), b"two");
    assert_eq!(mode(&dest.join("extensions/a")), 0o644);
}

#[test]
fn corrupt_or_missing_zips_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.zip");
    fs::write(&path, b"PK\x03\x04 definitely not a zip").unwrap();
    let err = extract(&path, &tmp.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a valid zip file"), "{err}");
    let err = extract(&tmp.path().join("missing.zip"), &tmp.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot open"), "{err}");
}

#[test]
fn copies_a_layer_directory_under_the_same_rules() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("layer");
    fs::create_dir_all(src.join("extensions")).unwrap();
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("extensions/a"), good_x86_64()).unwrap();
    fs::set_permissions(src.join("extensions/a"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("lib/libx.so.1"), b"x").unwrap();
    fs::set_permissions(src.join("lib/libx.so.1"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("libx.so.1", src.join("lib/libx.so")).unwrap();

    let dest = tmp.path().join("opt");
    let out = lext_layer::copy_layer_dir(&src, &dest).unwrap();
    assert_eq!((out.files, out.links), (2, 1));
    assert_eq!(out.extensions, vec!["a"]);
    assert_eq!(mode(&dest.join("extensions/a")), 0o755);
    assert_eq!(mode(&dest.join("lib/libx.so.1")), 0o640);
    assert_eq!(
        fs::read_link(dest.join("lib/libx.so")).unwrap(),
        Path::new("libx.so.1")
    );

    // A link out of the layer is refused, as in a zip.
    symlink("/etc/passwd", src.join("lib/escape")).unwrap();
    let err = lext_layer::copy_layer_dir(&src, &tmp.path().join("opt2")).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Unsafe { name, reason: UnsafeReason::LinkEscapes, .. } if name == "lib/escape"),
        "{err}"
    );
}

#[test]
fn files_without_unix_attributes_extract_as_0644() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("opt");
    unpack(
        &[Item::NoMode("extensions/win".into(), good_x86_64())],
        &dest,
    )
    .unwrap();
    assert_eq!(mode(&dest.join("extensions/win")), 0o644);
}

#[test]
fn special_files_are_refused_never_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("layer");
    fs::create_dir_all(src.join("extensions")).unwrap();
    fs::write(src.join("extensions/a"), b"#!/bin/sh\n").unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(src.join("extensions/x"))
        .status()
        .expect("run mkfifo");
    assert!(status.success());

    // Copying the FIFO would block this test forever.
    let err = lext_layer::copy_layer_dir(&src, &tmp.path().join("opt")).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Special { name, what: lext_layer::Special::Fifo, .. } if name == "extensions/x"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "extensions/x: a FIFO, not a regular file; Lambda layers are zip archives of regular \
         files and directories"
    );
    assert!(!tmp.path().join("opt/extensions/x").exists());

    // A FIFO named as the zip itself is refused before it is opened.
    let err = extract(&src.join("extensions/x"), &tmp.path().join("opt2")).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::NotALayer {
                what: lext_layer::Special::Fifo,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_hand_deflated_test_zips_are_valid() {
    // The support module deflates and CRCs zero runs by hand; the zip
    // crate checks both when an entry is read to its end.
    let parts = vec![
        Part::Bytes(b"#!/bin/sh\n".to_vec()),
        Part::Zeros(3 * 1024 * 1024 + 7),
        Part::Bytes((0..=255u8).collect()),
        Part::Zeros(2),
    ];
    let bytes = deflated_zip(&[
        streamed("extensions/a", 0o755, parts.clone()),
        streamed("lib/b", 0o644, vec![Part::Zeros(1)]),
    ]);
    assert!(bytes.len() < 30_000, "{} bytes", bytes.len());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut expected = b"#!/bin/sh\n".to_vec();
    expected.resize(expected.len() + 3 * 1024 * 1024 + 7, 0);
    expected.extend(0..=255u8);
    expected.extend([0, 0]);
    let mut a = archive.by_index(0).unwrap();
    assert_eq!(a.unix_mode(), Some(0o100_755));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut a, &mut got).unwrap();
    drop(a);
    assert!(got == expected, "content differs");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_index(1).unwrap(), &mut got).unwrap();
    assert_eq!(got, vec![0]);
}

const MIB: u64 = 1024 * 1024;

fn script_then_zeros(zeros: u64) -> Vec<Part> {
    vec![Part::Bytes(b"#!/bin/sh\n".to_vec()), Part::Zeros(zeros)]
}

#[test]
fn crafted_entries_are_refused() {
    use lext_layer::Fault;
    let mut larger = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(8 * MIB))]);
    patch_declared_size(&mut larger, "extensions/x", 1024);
    let mut smaller = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(4096))]);
    patch_declared_size(&mut smaller, "extensions/x", 10 << 20);
    let mut altered = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(4096))]);
    let crc = declared_crc(&altered, "extensions/x");
    patch_crc(&mut altered, "extensions/x", !crc);
    let twice = deflated_zip(&[
        streamed("extensions/x", 0o755, script_then_zeros(1)),
        streamed("extensions/x", 0o755, script_then_zeros(2)),
    ]);
    let spelled = zip_bytes(&[
        file("extensions/x", b"#!/bin/sh\n".to_vec(), 0o755),
        file("./extensions/x", b"#!/bin/sh\n".to_vec(), 0o755),
    ]);
    let table = [
        (
            larger,
            Fault::LargerThanDeclared { declared: 1024 },
            "extensions/x: declares 1024 bytes, holds more (a corrupt or crafted zip)",
        ),
        (
            smaller,
            Fault::SmallerThanDeclared {
                declared: 10 << 20,
                found: 4106,
            },
            "extensions/x: declares 10485760 bytes, holds 4106 (a corrupt or crafted zip)",
        ),
        (
            altered,
            Fault::BadChecksum,
            "extensions/x: its bytes do not match the CRC-32 its header declares (a corrupt or \
             crafted zip)",
        ),
        (
            twice,
            Fault::Duplicate,
            "extensions/x: two entries with this name; Lambda would keep one of them",
        ),
        (
            spelled,
            Fault::Duplicate,
            "./extensions/x: two entries with this name; Lambda would keep one of them",
        ),
    ];
    for (zip, fault, line) in table {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("opt");
        match extract_reader(Cursor::new(zip), Path::new("t.zip"), &dest) {
            Err(err @ ExtractError::BadEntry { .. }) => {
                assert_eq!(err.to_string(), line);
                assert!(matches!(&err, ExtractError::BadEntry { fault: f, .. } if *f == fault));
            }
            other => panic!("{line}: expected a refusal, got {other:?}"),
        }
        // Reading stopped one byte past the declared size.
        let written = fs::metadata(dest.join("extensions/x")).map_or(0, |m| m.len());
        assert!(written <= 10 << 20, "{line}: wrote {written} bytes");
    }
}

#[test]
fn a_layer_set_over_lambdas_unzipped_limit_is_refused() {
    use lext_layer::check::MAX_UNZIPPED_BYTES;
    use lext_layer::extract::extract_reader_within;
    use lext_layer::Budget;
    // Three layers for one function, unpacked into one directory with one
    // budget: 200 MiB, then the rest up to the limit exactly, then a byte.
    let first = deflated_zip(&[streamed(
        "extensions/a",
        0o755,
        script_then_zeros(200 * MIB - 10),
    )]);
    let rest = MAX_UNZIPPED_BYTES - 200 * MIB;
    let second = deflated_zip(&[streamed("lib/b", 0o644, vec![Part::Zeros(rest)])]);
    let third = deflated_zip(&[streamed("lib/c", 0o644, vec![Part::Zeros(1)])]);
    assert!(first.len() + second.len() < 4 * MIB as usize);

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("opt");
    let mut budget = Budget::lambda();
    let unpack = |zip: &[u8], name: &str, budget: &mut Budget| {
        extract_reader_within(Cursor::new(zip), Path::new(name), &dest, budget)
    };
    let out = unpack(&first, "first.zip", &mut budget).unwrap();
    assert_eq!((out.files, out.bytes), (1, 200 * MIB));
    let out = unpack(&second, "second.zip", &mut budget).unwrap();
    assert_eq!(out.bytes, rest);
    assert_eq!((budget.used(), budget.remaining()), (MAX_UNZIPPED_BYTES, 0));
    let err = unpack(&third, "third.zip", &mut budget).unwrap_err();
    assert!(
        matches!(err, ExtractError::TooLarge { limit, .. } if limit == MAX_UNZIPPED_BYTES),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "third.zip: the layers unpack to more than 262144000 bytes (250 MiB), Lambda's \
         unzipped limit of a function with its layers: shrink or drop files"
    );
    // Alone, each layer has the whole limit.
    extract_reader(Cursor::new(&third), Path::new("third.zip"), &dest).unwrap();
}

#[test]
fn a_layer_directory_spends_the_same_budget() {
    use lext_layer::Budget;
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    for (dir, size) in [(&one, 600), (&two, 401)] {
        fs::create_dir_all(dir.join("lib")).unwrap();
        fs::write(dir.join("lib/data"), vec![7u8; size]).unwrap();
    }
    let dest = tmp.path().join("opt");
    let mut budget = Budget::new(1000);
    let out = lext_layer::copy_layer_dir_within(&one, &dest, &mut budget).unwrap();
    assert_eq!(out.bytes, 600);
    let err = lext_layer::copy_layer_dir_within(&two, &dest, &mut budget).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooLarge { zip, limit: 1000 } if *zip == two),
        "{err:?}"
    );

    // Link targets count too: 600 bytes of data and a 390-byte target fit
    // in 1000, then 401 more bytes do not.
    std::os::unix::fs::symlink("a".repeat(390), one.join("lib/long")).unwrap();
    let dest = tmp.path().join("opt2");
    let mut budget = Budget::new(1000);
    let out = lext_layer::copy_layer_dir_within(&one, &dest, &mut budget).unwrap();
    assert_eq!((out.bytes, out.links, budget.remaining()), (990, 1, 10));
    assert!(lext_layer::copy_layer_dir_within(&two, &dest, &mut budget).is_err());
}
