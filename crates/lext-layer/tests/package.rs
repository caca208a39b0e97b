//! `lext_layer::package`: open the zip it writes and assert paths, modes and
//! timestamps; package twice and compare bytes; SOURCE_DATE_EPOCH.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lext_layer::package::{
    default_mtime, mtime_from_source_date_epoch, package, Include, PackageError, PackageSpec,
};
use lext_layer::{check, CheckOptions, Listing};
use support::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn put(path: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Binaries with the wrong modes (as a build might leave them) and extra
/// files to include.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    put(&root.join("bin/zeta"), &good_x86_64(), 0o700);
    put(&root.join("bin/alpha"), &good_x86_64(), 0o744);
    put(&root.join("conf/app.toml"), b"x = 1\n", 0o600);
    put(&root.join("assets/run.sh"), b"#!/bin/sh\n", 0o700);
    put(&root.join("assets/data/b.txt"), b"b", 0o664);
    fs::create_dir_all(root.join("assets/empty")).unwrap();
    Fixture { _tmp: tmp, root }
}

fn spec(f: &Fixture, mtime: zip::DateTime) -> PackageSpec {
    PackageSpec {
        extensions: vec![
            ("zeta".into(), f.root.join("bin/zeta")),
            ("alpha".into(), f.root.join("bin/alpha")),
        ],
        includes: vec![
            Include::parse(&format!("{}", f.root.join("conf/app.toml").display())).unwrap(),
            Include::parse(&format!("{}:share/assets", f.root.join("assets").display())).unwrap(),
        ],
        mtime,
    }
}

/// (name, unix mode, timestamp as y-m-d h:m:s, compression) of every entry.
fn entries(path: &Path) -> Vec<(String, u32, String, String)> {
    let mut zip = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let t = f.last_modified().unwrap();
            let stamp = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            let method = format!("{:?}", f.compression());
            let mut sink = Vec::new();
            f.read_to_end(&mut sink).unwrap();
            (
                f.name().unwrap().into_owned(),
                f.unix_mode().unwrap(),
                stamp,
                method,
            )
        })
        .collect()
}

#[test]
fn layout_modes_timestamps_and_order() {
    let f = fixture();
    let out = f.root.join("out/extension.zip");
    let packaged = package(&spec(&f, default_mtime()), &out).unwrap();
    let got = entries(&out);
    let expect = |name: &str, mode: u32, method: &str| {
        (
            name.to_owned(),
            mode,
            "1980-01-01 00:00:00".to_owned(),
            method.to_owned(),
        )
    };
    assert_eq!(
        got,
        vec![
            expect("app.toml", 0o100644, "Deflated"),
            expect("extensions/", 0o40755, "Stored"),
            expect("extensions/alpha", 0o100755, "Deflated"),
            expect("extensions/zeta", 0o100755, "Deflated"),
            expect("share/", 0o40755, "Stored"),
            expect("share/assets/", 0o40755, "Stored"),
            expect("share/assets/data/", 0o40755, "Stored"),
            expect("share/assets/data/b.txt", 0o100644, "Deflated"),
            expect("share/assets/empty/", 0o40755, "Stored"),
            expect("share/assets/run.sh", 0o100755, "Deflated"),
        ]
    );
    assert_eq!(
        packaged.entries,
        got.iter().map(|e| e.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(packaged.bytes, fs::metadata(&out).unwrap().len());
    // The zip passes lext check, and keeps the made-by system as Unix.
    let listing = Listing::read(&out).unwrap();
    assert_eq!(check(&listing, &CheckOptions::default()), vec![]);
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(f.root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["extension.zip"]);
}

#[test]
fn byte_for_byte_reproducible() {
    let f = fixture();
    let a = f.root.join("a.zip");
    let b = f.root.join("b.zip");
    package(&spec(&f, default_mtime()), &a).unwrap();
    // Touch the inputs: new mtimes and modes must not change the zip.
    fs::set_permissions(f.root.join("bin/zeta"), fs::Permissions::from_mode(0o755)).unwrap();
    put(&f.root.join("conf/app.toml"), b"x = 1\n", 0o640);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    package(&spec(&f, default_mtime()), &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

    // SOURCE_DATE_EPOCH changes the timestamps, and only them, reproducibly.
    let epoch = mtime_from_source_date_epoch(Some("1700000000")).unwrap();
    let c = f.root.join("c.zip");
    let d = f.root.join("d.zip");
    package(&spec(&f, epoch), &c).unwrap();
    package(&spec(&f, epoch), &d).unwrap();
    assert_eq!(fs::read(&c).unwrap(), fs::read(&d).unwrap());
    assert_ne!(fs::read(&a).unwrap(), fs::read(&c).unwrap());
    assert!(entries(&c).iter().all(|e| e.2 == "2023-11-14 22:13:20"));
}

#[test]
fn refuses_bad_destinations_and_duplicates() {
    let f = fixture();
    let out = f.root.join("x.zip");
    let with = |include: &str| PackageSpec {
        includes: vec![Include::parse(include).unwrap()],
        ..spec(&f, default_mtime())
    };
    let conf = f.root.join("conf/app.toml");
    let err = package(&with(&format!("{}:../escape", conf.display())), &out).unwrap_err();
    assert!(matches!(err, PackageError::UnsafeDest { .. }), "{err}");
    let err = package(&with(&format!("{}:/etc/x", conf.display())), &out).unwrap_err();
    assert!(matches!(err, PackageError::UnsafeDest { .. }), "{err}");
    let err = package(&with(&format!("{}:extensions/zeta", conf.display())), &out).unwrap_err();
    assert!(
        matches!(&err, PackageError::Duplicate { name } if name == "extensions/zeta"),
        "{err}"
    );
    let err = package(&with("/definitely/missing"), &out).unwrap_err();
    assert!(
        err.to_string().starts_with("reading /definitely/missing"),
        "{err}"
    );
    assert!(!out.exists(), "a failed package leaves no zip");
}

#[test]
fn discover_reports_an_empty_build_and_skips_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let err = lext_layer::package::discover_extensions(&tmp.path().join("none")).unwrap_err();
    assert!(err.to_string().contains("run lext build first"), "{err}");

    let dir = tmp.path().join("extensions");
    put(&dir.join("b"), b"b", 0o755);
    put(&dir.join("a"), b"a", 0o755);
    put(&dir.join(".c.tmp"), b"half-copied", 0o644);
    fs::create_dir_all(dir.join("subdir")).unwrap();
    let found = lext_layer::package::discover_extensions(&dir).unwrap();
    let names: Vec<_> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn discover_holds_a_built_directory_to_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("extensions");
    put(&dir.join("built"), b"b", 0o755);
    let manifest = lext_layer::build::manifest_path(&dir);
    assert_eq!(manifest, tmp.path().join("extensions.lext-build"));
    fs::write(&manifest, "# comment\nbuilt\n").unwrap();
    let found = lext_layer::package::discover_extensions(&dir).unwrap();
    assert_eq!(found, vec![("built".to_owned(), dir.join("built"))]);

    // A file the build did not write, and one it wrote that is gone.
    put(&dir.join("stray"), b"s", 0o755);
    fs::write(&manifest, "built\ngone\n").unwrap();
    let err = lext_layer::package::discover_extensions(&dir).unwrap_err();
    assert!(
        matches!(&err, PackageError::NotBuilt { stray, missing, .. }
            if stray == &["stray"] && missing == &["gone"]),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{} holds files the last lext build did not write: stray; {} lacks files the last \
             lext build wrote: gone; run lext build again",
            dir.display(),
            dir.display()
        )),
        "{msg}"
    );

    // Without a manifest, every file is taken.
    fs::remove_file(&manifest).unwrap();
    assert_eq!(
        lext_layer::package::discover_extensions(&dir)
            .unwrap()
            .len(),
        2
    );
}
