//! Property tests: no input makes the readers panic, and the path rules
//! never let a name or link out of the layer. Layers come from users and
//! from the internet (`lext run --layer`), so every byte is untrusted.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Cursor;
use std::path::Path;

use lext_layer::extract::extract_reader;
use lext_layer::safepath::{entry_path, link_target};
use lext_layer::{check, CheckOptions, Listing};
use proptest::prelude::*;
use support::*;

/// A small valid layer zip to mutate.
fn seed_zip() -> Vec<u8> {
    zip_bytes(&[
        Item::Dir("extensions/"),
        file("extensions/a", good_x86_64(), 0o755),
        file("extensions/s", b"#!/bin/sh\n".to_vec(), 0o755),
        link("lib/l", "../extensions/a"),
    ])
}

/// The components a resolved layer path may never contain.
fn is_contained(path: &str) -> bool {
    !path.starts_with('/') && path.split('/').all(|c| c != ".." && c != ".")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inspect_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = lext_layer::elf::inspect(&bytes);
        let mut elf = b"\x7fELF".to_vec();
        elf.extend_from_slice(&bytes);
        let _ = lext_layer::elf::inspect(&elf);
    }

    #[test]
    fn mangled_elves_never_panic(at in 0usize..400, value in any::<u8>()) {
        let mut elf = good_x86_64();
        let i = at % elf.len();
        elf[i] = value;
        let _ = lext_layer::elf::inspect(&elf);
    }

    #[test]
    fn corrupted_zips_are_errors_or_listings(at in 0usize..4096, value in any::<u8>()) {
        let mut zip = seed_zip();
        let i = at % zip.len();
        zip[i] = value;
        if let Ok(listing) = Listing::from_zip_reader(Cursor::new(&zip), Path::new("z.zip")) {
            let _ = check(&listing, &CheckOptions::default());
        }
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("opt");
        let _ = extract_reader(Cursor::new(&zip), Path::new("z.zip"), &dest);
        // Whatever happened, nothing was written beside the destination.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        prop_assert!(names.is_empty() || names == vec!["opt"]);
    }

    #[test]
    fn accepted_names_and_links_stay_inside(
        name in "[a./\\\\x]{0,12}",
        target in "[a./]{0,12}",
    ) {
        if let Ok(path) = entry_path(&name) {
            prop_assert!(is_contained(path.as_str()), "{name:?} -> {path}");
            if let Ok(resolved) = link_target(&path, &target) {
                prop_assert!(is_contained(resolved.as_str()), "{target:?} -> {resolved}");
                // Lexically, a target may only climb before it descends.
                let parts: Vec<_> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
                let first_name = parts.iter().position(|c| *c != "..").unwrap_or(parts.len());
                prop_assert!(parts[first_name..].iter().all(|c| *c != ".."));
            }
        }
    }
}
