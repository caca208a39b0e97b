//! `lext package`: the layer zip, byte-for-byte reproducible.
//!
//! Layout: an `extensions/` directory entry at the root, each extension at
//! `extensions/<name>` with mode 0755, then any `--include`d files under
//! their chosen paths (they land in `/opt/<path>`). Sources: the README and
//! Makefile of aws-samples/aws-lambda-extensions' go-example-extension, and
//! AWS: <https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html>.
//!
//! Reproducibility comes from removing every input that is not content:
//! entries are written in byte order of their names, every timestamp is the
//! same fixed instant (`SOURCE_DATE_EPOCH` when set, else 1980-01-01, the
//! earliest time a zip can hold), modes are normalized (0755 for programs and
//! directories, 0644 for other files), the "made by" system is always Unix,
//! and deflate runs at a fixed level. cargo-lambda copies the binary's mtime
//! instead, which is why its zips differ on every build.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use crate::safepath::{self, UnsafeReason};

/// Mode of extensions, executables and directories in the zip.
const EXEC_MODE: u32 = 0o755;
/// Mode of other files.
const FILE_MODE: u32 = 0o644;
/// Deflate level: zlib's default, fixed so that output never depends on a
/// library default changing.
const DEFLATE_LEVEL: i64 = 6;

/// An extra file or directory to put in the layer (`--include SRC[:DEST]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The file or directory on disk.
    pub src: PathBuf,
    /// Where it goes in the layer (relative to `/opt`).
    pub dest: String,
}

impl Include {
    /// Parses `SRC[:DEST]`. Without DEST the source's file name is used, so
    /// `--include config/app.toml` lands at `/opt/app.toml`.
    pub fn parse(spec: &str) -> Result<Include, PackageError> {
        let (src, dest) = match spec.split_once(':') {
            Some((src, dest)) => (src, dest.to_owned()),
            None => {
                let name = Path::new(spec)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| PackageError::BadInclude {
                        spec: spec.to_owned(),
                        why: "the source has no file name; give a destination as SRC:DEST",
                    })?;
                (spec, name)
            }
        };
        if src.is_empty() || dest.is_empty() {
            return Err(PackageError::BadInclude {
                spec: spec.to_owned(),
                why: "expected SRC[:DEST] with both parts non-empty",
            });
        }
        Ok(Include {
            src: PathBuf::from(src),
            dest,
        })
    }
}

/// What to put in the zip.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    /// Extension binaries: (name in `extensions/`, file on disk).
    pub extensions: Vec<(String, PathBuf)>,
    /// Extra files and directories.
    pub includes: Vec<Include>,
    /// The timestamp of every entry.
    pub mtime: DateTime,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged {
    /// The zip's path.
    pub path: PathBuf,
    /// Entry names in the order written.
    pub entries: Vec<String>,
    /// The zip's size in bytes.
    pub bytes: u64,
}

/// Why packaging failed. A variant that wraps an error says only what was
/// being done; the cause is its `source()`, so `{:#}` prints each once.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// No extension to package.
    #[error("no extension binaries to package in {}: run lext build first", dir.display())]
    NoExtensions {
        /// Where they were looked for.
        dir: PathBuf,
    },
    /// The extensions directory does not hold what the last `lext build`
    /// recorded in its manifest.
    #[error("{}", not_built_message(dir, stray, missing))]
    NotBuilt {
        /// The directory.
        dir: PathBuf,
        /// Files found there that the build did not write.
        stray: Vec<String>,
        /// Files the build wrote that are not there.
        missing: Vec<String>,
    },
    /// A malformed `--include`.
    #[error("bad --include `{spec}`: {why}")]
    BadInclude {
        /// The argument.
        spec: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A destination that would land outside the layer.
    #[error("bad destination `{dest}`: {reason}; use a relative path inside the layer")]
    UnsafeDest {
        /// The destination.
        dest: String,
        /// Why.
        reason: UnsafeReason,
    },
    /// Two inputs map to the same path in the zip.
    #[error("two inputs would be written to `{name}` in the zip")]
    Duplicate {
        /// The zip entry name.
        name: String,
    },
    /// A directory symlink inside an included directory (a loop risk).
    #[error("{}: symlinks to directories are not followed; include the target instead", path.display())]
    DirSymlink {
        /// The symlink.
        path: PathBuf,
    },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH=`{value}` is not a non-negative integer number of seconds")]
    BadEpoch {
        /// The value.
        value: String,
    },
    /// Reading an input failed.
    #[error("reading {}", path.display())]
    Read {
        /// The input.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the zip failed.
    #[error("writing {}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The zip writer failed.
    #[error("writing {}", path.display())]
    Zip {
        /// The output.
        path: PathBuf,
        /// The zip error.
        source: zip::result::ZipError,
    },
}

/// The fixed timestamp used when `SOURCE_DATE_EPOCH` is not set:
/// 1980-01-01 00:00:00, the zip format's epoch.
pub fn default_mtime() -> DateTime {
    DateTime::default()
}

/// The entry timestamp for a `SOURCE_DATE_EPOCH` value (seconds since
/// 1970, UTC), following reproducible-builds.org: unset means
/// [`default_mtime`]. Times before 1980 are clamped to 1980-01-01 and after
/// 2107 to the zip maximum, since a zip cannot hold them; odd seconds round
/// down (zip times have a 2-second resolution).
pub fn mtime_from_source_date_epoch(value: Option<&str>) -> Result<DateTime, PackageError> {
    let Some(value) = value else {
        return Ok(default_mtime());
    };
    let secs: u64 = value.trim().parse().map_err(|_| PackageError::BadEpoch {
        value: value.to_owned(),
    })?;
    Ok(mtime_from_unix(secs))
}

/// Converts seconds since 1970-01-01 UTC to a zip timestamp (clamped).
pub fn mtime_from_unix(secs: u64) -> DateTime {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let clamp_low = DateTime::default();
    if year < 1980 {
        return clamp_low;
    }
    let (hour, minute, second) = (
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
    );
    match u16::try_from(year) {
        Ok(year) if year <= 2107 => {
            DateTime::from_date_and_time(year, month, day, hour, minute, second)
                .unwrap_or(clamp_low)
        }
        _ => DateTime::from_date_and_time(2107, 12, 31, 23, 59, 58).unwrap_or(clamp_low),
    }
}

/// Gregorian date of a day count since 1970-01-01 (proleptic, UTC). Works
/// in 400-year eras of 146,097 days, counting years from March so that the
/// leap day is the last day of the year.
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    // Shift the origin to 0000-03-01: 719,468 days before 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month from March = 0
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The extension binaries in a directory such as `target/lambda/extensions`:
/// every regular file, by name, except dot-files (older versions of
/// `lext build` wrote each binary as `.<name>.tmp` before renaming it, and
/// an interrupted build must not leave an extension called `.<name>.tmp` in
/// the next zip).
///
/// When `lext build` wrote the directory, its manifest
/// ([`build::manifest_path`](crate::build::manifest_path)) lists what it put
/// there, and the files found must be exactly those: a file no build wrote
/// (copied in by hand, left by another tool) or a built one that is gone is
/// [`PackageError::NotBuilt`], naming each. Without a manifest every file
/// is taken.
pub fn discover_extensions(dir: &Path) -> Result<Vec<(String, PathBuf)>, PackageError> {
    let read_err = |source| PackageError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PackageError::NoExtensions {
                dir: dir.to_owned(),
            })
        }
        Err(e) => return Err(read_err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && fs::metadata(&path).map_err(read_err)?.is_file() {
            found.push((name, path));
        }
    }
    found.sort();
    if let Some(built) = crate::build::read_manifest(dir).map_err(|source| PackageError::Read {
        path: crate::build::manifest_path(dir),
        source,
    })? {
        let stray: Vec<String> = found
            .iter()
            .filter(|(name, _)| !built.contains(name))
            .map(|(name, _)| name.clone())
            .collect();
        let missing: Vec<String> = built
            .iter()
            .filter(|name| !found.iter().any(|(n, _)| n == *name))
            .cloned()
            .collect();
        if !stray.is_empty() || !missing.is_empty() {
            return Err(PackageError::NotBuilt {
                dir: dir.to_owned(),
                stray,
                missing,
            });
        }
    }
    if found.is_empty() {
        return Err(PackageError::NoExtensions {
            dir: dir.to_owned(),
        });
    }
    Ok(found)
}

/// The message of [`PackageError::NotBuilt`].
fn not_built_message(dir: &Path, stray: &[String], missing: &[String]) -> String {
    let mut parts = Vec::new();
    if !stray.is_empty() {
        parts.push(format!(
            "{} holds files the last lext build did not write: {}",
            dir.display(),
            stray.join(", ")
        ));
    }
    if !missing.is_empty() {
        parts.push(format!(
            "{} lacks files the last lext build wrote: {}",
            dir.display(),
            missing.join(", ")
        ));
    }
    format!(
        "{}; run lext build again (it replaces the directory), or add extra files with \
         --include SRC:extensions/NAME",
        parts.join("; ")
    )
}

/// One planned zip entry.
#[derive(Debug)]
enum Planned {
    Dir,
    File { src: PathBuf, mode: u32 },
}

/// Turns the spec into the sorted list of entries, validating every name.
fn plan(spec: &PackageSpec) -> Result<BTreeMap<String, Planned>, PackageError> {
    let mut plan = BTreeMap::new();
    let add_file = |plan: &mut BTreeMap<String, Planned>, dest: &str, src: PathBuf, mode| {
        let path = safepath::entry_path(dest).map_err(|reason| PackageError::UnsafeDest {
            dest: dest.to_owned(),
            reason,
        })?;
        if path.is_root() {
            return Err(PackageError::UnsafeDest {
                dest: dest.to_owned(),
                reason: UnsafeReason::Malformed,
            });
        }
        // Every parent directory gets its own entry, as `zip -r` writes.
        let mut dir = path.parent();
        while !dir.is_root() {
            plan.insert(format!("{dir}/"), Planned::Dir);
            dir = dir.parent();
        }
        let name = path.as_str().to_owned();
        if plan.contains_key(&format!("{name}/")) || plan.contains_key(&name) {
            return Err(PackageError::Duplicate { name });
        }
        plan.insert(name, Planned::File { src, mode });
        Ok(())
    };

    plan.insert("extensions/".to_owned(), Planned::Dir);
    for (name, src) in &spec.extensions {
        add_file(
            &mut plan,
            &format!("extensions/{name}"),
            src.clone(),
            EXEC_MODE,
        )?;
    }
    for include in &spec.includes {
        let read_err = |source| PackageError::Read {
            path: include.src.clone(),
            source,
        };
        let meta = fs::metadata(&include.src).map_err(read_err)?;
        if meta.is_dir() {
            // Walk the directory; names under it keep their relative paths.
            let mut stack = vec![(
                include.src.clone(),
                include.dest.trim_end_matches('/').to_owned(),
            )];
            while let Some((dir, dest)) = stack.pop() {
                if let Ok(path) = safepath::entry_path(&dest) {
                    if !path.is_root() {
                        plan.insert(format!("{path}/"), Planned::Dir);
                    }
                }
                for child in fs::read_dir(&dir).map_err(|source| PackageError::Read {
                    path: dir.clone(),
                    source,
                })? {
                    let child = child.map_err(|source| PackageError::Read {
                        path: dir.clone(),
                        source,
                    })?;
                    let path = child.path();
                    let child_dest = format!("{dest}/{}", child.file_name().to_string_lossy());
                    let link =
                        fs::symlink_metadata(&path).map_err(|source| PackageError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    let meta = fs::metadata(&path).map_err(|source| PackageError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    if meta.is_dir() {
                        if link.file_type().is_symlink() {
                            return Err(PackageError::DirSymlink { path });
                        }
                        stack.push((path, child_dest));
                    } else {
                        let mode = mode_for(&meta);
                        add_file(&mut plan, &child_dest, path, mode)?;
                    }
                }
            }
        } else {
            add_file(
                &mut plan,
                &include.dest,
                include.src.clone(),
                mode_for(&meta),
            )?;
        }
    }
    Ok(plan)
}

/// 0755 for a source with any execute bit, else 0644: the owner, group and
/// umask of the build machine never leak into the zip.
fn mode_for(meta: &fs::Metadata) -> u32 {
    if meta.permissions().mode() & 0o111 != 0 {
        EXEC_MODE
    } else {
        FILE_MODE
    }
}

/// Writes the zip to `output` (through a temporary file renamed into place,
/// so a failed run never leaves a half-written zip under the final name).
pub fn package(spec: &PackageSpec, output: &Path) -> Result<Packaged, PackageError> {
    let write_err = |source| PackageError::Write {
        path: output.to_owned(),
        source,
    };
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(write_err)?;
    }
    let mut tmp_name = output.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let file = File::create(&tmp).map_err(write_err)?;
    let result = write_zip(spec, BufWriter::new(file), output);
    let entries = match result {
        Ok(entries) => entries,
        Err(err) => {
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
    };
    fs::rename(&tmp, output).map_err(write_err)?;
    let bytes = fs::metadata(output).map_err(write_err)?.len();
    tracing::info!(path = %output.display(), bytes, entries = entries.len(), "wrote layer zip");
    Ok(Packaged {
        path: output.to_owned(),
        entries,
        bytes,
    })
}

/// Writes the zip to any seekable writer; `output` names it in errors.
/// Returns the entry names in the order written.
pub fn write_zip<W: Write + Seek>(
    spec: &PackageSpec,
    writer: W,
    output: &Path,
) -> Result<Vec<String>, PackageError> {
    let zip_err = |source| PackageError::Zip {
        path: output.to_owned(),
        source,
    };
    let plan = plan(spec)?;
    let base = SimpleFileOptions::default()
        .system(System::Unix)
        .last_modified_time(spec.mtime)
        .large_file(false);
    let mut zip = ZipWriter::new(writer);
    let mut names = Vec::with_capacity(plan.len());
    for (name, planned) in &plan {
        match planned {
            Planned::Dir => {
                zip.add_directory(name.as_str(), base.unix_permissions(EXEC_MODE))
                    .map_err(zip_err)?;
            }
            Planned::File { src, mode } => {
                let options = base
                    .compression_method(CompressionMethod::Deflated)
                    .compression_level(Some(DEFLATE_LEVEL))
                    .unix_permissions(*mode);
                let mut input = File::open(src).map_err(|source| PackageError::Read {
                    path: src.clone(),
                    source,
                })?;
                zip.start_file(name.as_str(), options).map_err(zip_err)?;
                io::copy(&mut input, &mut zip).map_err(|source| PackageError::Read {
                    path: src.clone(),
                    source,
                })?;
            }
        }
        names.push(name.clone());
    }
    let mut writer = zip.finish().map_err(zip_err)?;
    writer.flush().map_err(|source| PackageError::Write {
        path: output.to_owned(),
        source,
    })?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(3652), (1980, 1, 1));
        // 2000-02-29 (a leap day in a century leap year) is day 11,016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        // 2024-12-31 is day 20,088.
        assert_eq!(civil_from_days(20_088), (2024, 12, 31));
    }

    #[test]
    fn source_date_epoch() {
        let t = mtime_from_source_date_epoch(Some("1700000000")).unwrap();
        // 2023-11-14 22:13:20 UTC.
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        let odd = mtime_from_source_date_epoch(Some("1700000001")).unwrap();
        assert_eq!(odd.second(), 20, "zip seconds round down to even");
        let early = mtime_from_source_date_epoch(Some("0")).unwrap();
        assert_eq!((early.year(), early.month(), early.day()), (1980, 1, 1));
        assert_eq!(mtime_from_source_date_epoch(None).unwrap(), default_mtime());
        assert!(matches!(
            mtime_from_source_date_epoch(Some("yesterday")),
            Err(PackageError::BadEpoch { .. })
        ));
        assert!(mtime_from_source_date_epoch(Some("-5")).is_err());
        let late = mtime_from_unix(u64::MAX / 2);
        assert_eq!(late.year(), 2107);
    }

    #[test]
    fn include_specs() {
        let i = Include::parse("conf/app.toml").unwrap();
        assert_eq!(
            (i.src, i.dest),
            (PathBuf::from("conf/app.toml"), "app.toml".into())
        );
        let i = Include::parse("conf:etc/conf").unwrap();
        assert_eq!((i.src, i.dest), (PathBuf::from("conf"), "etc/conf".into()));
        assert!(Include::parse(":x").is_err());
        assert!(Include::parse("x:").is_err());
    }
}
