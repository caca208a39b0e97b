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
