//! Where a Cargo project keeps things, as `cargo metadata` reports them: its
//! binary targets, the target directory under which `lext build` writes
//! `lambda/extensions/<name>` and `lext package` writes
//! `lambda/extension.zip`, and its `[package.metadata.lext]` [`Settings`].
//! All four commands resolve paths and settings here, so a
//! `CARGO_TARGET_DIR` or a workspace's shared `target/` is honoured alike,
//! and a setting means the same to each of them.

use std::env;
use std::path::{Path, PathBuf};

use cargo_metadata::{MetadataCommand, TargetKind};
use serde::Deserialize;

use crate::platform::{Arch, Runtime};

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
    /// The workspace root (where `[profile.*]` is read from).
    pub workspace_root: PathBuf,
    /// `[package.metadata.lext]` of the package (or
    /// `[workspace.metadata.lext]` for a virtual manifest).
    pub settings: Settings,
}

/// The `[package.metadata.lext]` table: what the commands would otherwise
/// take as flags, kept with the project, as cargo-lambda's
/// `[package.metadata.lambda]`. A flag on the command line wins over the
/// setting.
///
/// ```toml
/// [package.metadata.lext]
/// layer-name = "my-extension"          # lext publish --layer-name
/// region = "eu-west-1"                 # lext publish --region
/// compatible-runtimes = ["provided.al2023", "provided.al2"]
///                                      # lext publish --compatible-runtimes;
///                                      # lext check --runtime (the oldest)
/// arch = "arm64"                       # lext build/check --arch
/// include = ["config.toml:my-extension/config.toml"]
///                                      # lext package --include, SRC relative
///                                      # to the Cargo.toml's directory
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// `layer-name`: the layer's name for `lext publish`.
    pub layer_name: Option<String>,
    /// `region`: the AWS region for `lext publish`.
    pub region: Option<String>,
    /// `compatible-runtimes`: the layer's CompatibleRuntimes.
    #[serde(default)]
    pub compatible_runtimes: Vec<String>,
    /// `arch`: `x86_64` or `arm64`.
    #[serde(default, deserialize_with = "arch")]
    pub arch: Option<Arch>,
    /// `include`: extra files for `lext package`, `SRC[:DEST]` each, SRC
    /// relative to the manifest's directory (resolved by
    /// [`Project::includes`]).
    #[serde(default)]
    pub include: Vec<String>,
}

impl Settings {
    /// The runtime `lext check` checks against: the oldest of
    /// `compatible-runtimes` (its glibc is the lowest), `None` when unset.
    pub fn check_runtime(&self) -> Option<Runtime> {
        (!self.compatible_runtimes.is_empty())
            .then(|| Runtime::oldest_of(&self.compatible_runtimes))
    }
}

/// `arch = "arm64"`, with [`Arch`]'s own error text.
fn arch<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Arch>, D::Error> {
    let text = String::deserialize(de)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
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
    /// `[package.metadata.lext]` has an unknown key or a wrong value.
    #[error("[package.metadata.lext] in {}: {detail}", manifest.display())]
    Settings {
        /// The manifest.
        manifest: PathBuf,
        /// serde's message (`unknown field ...`, `invalid type ...`).
        detail: String,
    },
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
        // The package's settings; a virtual manifest's are the workspace's.
        let table = match own.first() {
            Some(package) => package.metadata.get("lext").cloned(),
            None => metadata.workspace_metadata.get("lext").cloned(),
        };
        // A package manifest selects that package; a virtual workspace
        // manifest (no package of its own) selects every member.
        let selected: Vec<_> = if own.is_empty() {
            members.iter().collect()
        } else {
            own
        };
        let settings = match table {
            None | Some(serde_json::Value::Null) => Settings::default(),
            Some(table) => Settings::deserialize(&table).map_err(|err| ProjectError::Settings {
                manifest: manifest.clone(),
                detail: err.to_string(),
            })?,
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
            workspace_root: metadata.workspace_root.into_std_path_buf(),
            settings,
        })
    }

    /// The project when there is one: [`Project::load`] of `manifest_path`,
    /// else of the nearest `Cargo.toml` at or above the current directory;
    /// `Ok(None)` when there is none (packaging or checking prebuilt files
    /// outside any project). This is how every command finds the settings.
    pub fn find(manifest_path: Option<&Path>) -> Result<Option<Project>, ProjectError> {
        match manifest_path {
            Some(path) => Project::load(Some(path)).map(Some),
            None => match find_manifest() {
                Ok(manifest) => Project::load(Some(&manifest)).map(Some),
                Err(ProjectError::NoManifest { .. }) => Ok(None),
                Err(err) => Err(err),
            },
        }
    }

    /// The directory of the manifest.
    pub fn dir(&self) -> &Path {
        self.manifest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// The `include` settings, each `SRC[:DEST]` with SRC made relative to
    /// the manifest's directory (an absolute SRC stays as it is).
    pub fn includes(&self) -> Vec<String> {
        self.settings
            .include
            .iter()
            .map(|spec| {
                let (src, dest) = match spec.split_once(':') {
                    Some((src, dest)) => (src, Some(dest)),
                    None => (spec.as_str(), None),
                };
                let src = self.dir().join(src);
                match dest {
                    Some(dest) => format!("{}:{dest}", src.display()),
                    // Without DEST the file name stays the destination.
                    None => src.display().to_string(),
                }
            })
            .collect()
    }

    /// Whether the workspace's root manifest sets anything in
    /// `[profile.<name>]` (a `[profile.<name>]` or
    /// `[profile.<name>.package...]` table, or a dotted `profile.<name>.`
    /// key). Cargo reads profiles from the root manifest only.
    ///
    /// A line scan, not a TOML parse: it recognises every form `cargo new`
    /// and the Cargo book write, and a false "defined" only means lext
    /// leaves the profile alone.
    pub fn defines_profile(&self, name: &str) -> bool {
        let Ok(text) = std::fs::read_to_string(self.workspace_root.join("Cargo.toml")) else {
            return false;
        };
        let table = format!("[profile.{name}");
        let dotted = format!("profile.{name}.");
        text.lines().map(str::trim_start).any(|line| {
            let rest = line.strip_prefix(&table);
            rest.is_some_and(|r| r.starts_with(']') || r.starts_with('.'))
                || line.starts_with(&dotted)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-binary package with `extra` appended to its manifest.
    fn package(dir: &Path, extra: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        let manifest = dir.join("Cargo.toml");
        std::fs::write(
            &manifest,
            format!(
                "[package]\nname = \"p\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [workspace]\n\n{extra}"
            ),
        )
        .unwrap();
        manifest
    }

    #[test]
    fn settings_are_read_from_package_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = package(
            dir.path(),
            "[package.metadata.lext]\nlayer-name = \"my-layer\"\nregion = \"eu-west-1\"\n\
             compatible-runtimes = [\"provided.al2023\"]\narch = \"arm64\"\n\
             include = [\"conf/a.toml:p/a.toml\", \"b.json\"]\n",
        );
        let project = Project::load(Some(&manifest)).unwrap();
        let s = &project.settings;
        assert_eq!(s.layer_name.as_deref(), Some("my-layer"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.arch, Some(Arch::Arm64));
        assert_eq!(s.check_runtime(), Some(Runtime::ProvidedAl2023));
        let includes = project.includes();
        assert_eq!(
            includes,
            [
                format!("{}:p/a.toml", dir.path().join("conf/a.toml").display()),
                dir.path().join("b.json").display().to_string()
            ]
        );
        assert!(!project.defines_profile("release"));
    }

    #[test]
    fn no_table_is_the_defaults_and_a_typo_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = package(dir.path(), "");
        let project = Project::load(Some(&manifest)).unwrap();
        assert_eq!(project.settings, Settings::default());
        assert_eq!(project.settings.check_runtime(), None);

        let manifest = package(dir.path(), "[package.metadata.lext]\nlayer_name = \"x\"\n");
        let err = Project::load(Some(&manifest)).unwrap_err().to_string();
        assert!(
            err.contains("[package.metadata.lext]") && err.contains("unknown field `layer_name`"),
            "{err}"
        );
        let manifest = package(dir.path(), "[package.metadata.lext]\narch = \"sparc\"\n");
        let err = Project::load(Some(&manifest)).unwrap_err().to_string();
        assert!(err.contains("sparc"), "{err}");
    }

    #[test]
    fn profiles_defined_in_the_root_manifest_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        for (extra, defined) in [
            ("[profile.release]\nopt-level = \"z\"\n", true),
            ("[profile.release.package.foo]\nopt-level = 1\n", true),
            ("profile.release.lto = true\n", true),
            ("[profile.release-lto]\nlto = true\n", false),
            ("[profile.dev]\nopt-level = 1\n", false),
        ] {
            let manifest = package(dir.path(), extra);
            let project = Project::load(Some(&manifest)).unwrap();
            assert_eq!(project.defines_profile("release"), defined, "{extra}");
        }
    }
}
