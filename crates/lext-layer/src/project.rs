//! Where a Cargo project keeps things, as `cargo metadata` reports them: its
//! binary targets, and the target directory under which `lext build` writes
//! `lambda/extensions/<name>` and `lext package` writes
//! `lambda/extension.zip`. All four commands resolve paths here, so a
//! `CARGO_TARGET_DIR` or a workspace's shared `target/` is honoured alike.

use std::env;
use std::path::{Path, PathBuf};

use cargo_metadata::{MetadataCommand, TargetKind};

/// A Cargo project, narrowed to the package the manifest names (or, for a
/// virtual workspace manifest, every member).
#[derive(Debug, Clone)]
pub struct Project {
    /// The manifest used.
    pub manifest_path: PathBuf,
    /// The target directory (`target/` of the workspace, or
    /// `CARGO_TARGET_DIR`).
    pub target_dir: PathBuf,
    /// The binary targets of the selected packages, sorted by name.
    pub binaries: Vec<Binary>,
}

/// A binary target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binary {
    /// The binary's name (and so the extension's name).
    pub name: String,
    /// The package it belongs to.
    pub package: String,
}

/// Why the project could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// No `Cargo.toml` in the current directory or above.
    #[error("no Cargo.toml in {} or any parent directory: pass --manifest-path", dir.display())]
    NoManifest {
        /// Where the search started.
        dir: PathBuf,
    },
    /// `cargo metadata` failed.
    #[error("reading the Cargo project {}: {detail}", manifest.display())]
    Metadata {
        /// The manifest.
        manifest: PathBuf,
        /// What `cargo metadata` said, on one line. (A string rather than
        /// the error itself: its message is cargo's whole stderr, lines and
        /// trailing newline included.)
        detail: String,
    },
    /// The working directory is unreadable.
    #[error("cannot read the current directory: {0}")]
    Cwd(std::io::Error),
}

impl Project {
    /// Reads the project at `manifest_path`, or the nearest `Cargo.toml` at
    /// or above the current directory (as cargo itself finds it).
    pub fn load(manifest_path: Option<&Path>) -> Result<Project, ProjectError> {
        let manifest = match manifest_path {
            Some(path) => path.to_owned(),
            None => find_manifest()?,
        };
        let metadata = MetadataCommand::new()
            .manifest_path(&manifest)
            .no_deps()
            .exec()
            .map_err(|err| ProjectError::Metadata {
                manifest: manifest.clone(),
                detail: metadata_detail(&err),
            })?;
        // Compare canonical paths: the user may pass a relative or `./` path.
        let wanted = manifest.canonicalize().unwrap_or_else(|_| manifest.clone());
        let members: Vec<_> = metadata.workspace_packages();
        let own: Vec<_> = members
            .iter()
            .filter(|p| {
                p.manifest_path
                    .as_std_path()
                    .canonicalize()
                    .is_ok_and(|m| m == wanted)
            })
            .collect();
        // A package manifest selects that package; a virtual workspace
        // manifest (no package of its own) selects every member.
        let selected: Vec<_> = if own.is_empty() {
            members.iter().collect()
        } else {
            own
        };
        let mut binaries: Vec<Binary> = selected
            .iter()
            .flat_map(|p| {
                p.targets
                    .iter()
                    .filter(|t| t.kind.contains(&TargetKind::Bin))
                    .map(|t| Binary {
                        name: t.name.clone(),
                        package: p.name.to_string(),
                    })
            })
            .collect();
        binaries.sort();
        Ok(Project {
            manifest_path: manifest,
            target_dir: metadata.target_directory.into_std_path_buf(),
            binaries,
        })
    }

    /// `target/lambda/extensions`: where `lext build` puts binaries.
    pub fn extensions_dir(&self) -> PathBuf {
        self.target_dir.join("lambda").join("extensions")
    }

    /// `target/lambda/extension.zip`: the default zip of `lext package`,
    /// `check` and `publish`.
    pub fn default_zip(&self) -> PathBuf {
        self.target_dir.join("lambda").join("extension.zip")
    }
}

/// A `cargo metadata` failure on one line: cargo's own stderr (`error:
/// manifest path ... does not exist`) when it ran, else the error.
fn metadata_detail(err: &cargo_metadata::Error) -> String {
    let text = match err {
        cargo_metadata::Error::CargoMetadata { stderr } => {
            format!("cargo metadata failed: {stderr}")
        }
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The nearest `Cargo.toml` at or above the current directory.
fn find_manifest() -> Result<PathBuf, ProjectError> {
    let cwd = env::current_dir().map_err(ProjectError::Cwd)?;
    cwd.ancestors()
        .map(|dir| dir.join("Cargo.toml"))
        .find(|candidate| candidate.is_file())
        .ok_or(ProjectError::NoManifest { dir: cwd })
}
