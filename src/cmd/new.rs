//! `lext new`: a ready extension project, from templates built into lext
//! (no network): Cargo.toml with the size-tuned release profile and
//! `[package.metadata.lext]`, `src/main.rs` (blocking or tokio flavour, with
//! or without a Telemetry API subscription), a test that runs the extension
//! under `lext_sandbox::Environment`, a README with the four commands.
//!
//! The SDK and the sandbox are path dependencies on this repository's
//! crates, where they were when lext was built (or `--sdk-path`), until
//! they are published.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};

/// Arguments of `lext new`.
///
/// `--help` ends with [`EXIT_CODES`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// The project's directory; its last component is the crate's name,
    /// and so the extension's (its file name in /opt/extensions).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Subscribe to the Telemetry API and count the records received.
    #[arg(long)]
    pub telemetry: bool,

    /// Use the SDK's tokio flavour (async handler) instead of the blocking
    /// one.
    #[arg(long = "async")]
    pub async_flavour: bool,

    /// The lext-extension crate to depend on (a directory with its
    /// Cargo.toml); the sandbox for the test is its sibling lext-sandbox
    /// [default: the crates of the lext repository this lext was built
    /// from].
    #[arg(long, value_name = "PATH")]
    pub sdk_path: Option<PathBuf>,
}

/// The exit codes, one line after `--help` (`main` exits 1 on any error,
/// clap 2 on a bad command line).
const EXIT_CODES: &str = "Exit codes: 0 project written (its directory on stdout); 1 the \
                          directory exists and is not empty, the name is not a valid crate \
                          name, the SDK is not at --sdk-path, or a file could not be written; \
                          2 bad arguments";

/// Where this repository's crates were when lext was built.
const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

/// The templates, built into the binary.
mod template {
    pub(super) const CARGO_TOML: &str = include_str!("new/Cargo.toml.tmpl");
    pub(super) const GITIGNORE: &str = include_str!("new/gitignore.tmpl");
    pub(super) const README: &str = include_str!("new/README.md.tmpl");
    pub(super) const MAIN: &str = include_str!("new/main.rs.tmpl");
    pub(super) const MAIN_TELEMETRY: &str = include_str!("new/main_telemetry.rs.tmpl");
    pub(super) const MAIN_ASYNC: &str = include_str!("new/main_async.rs.tmpl");
    pub(super) const MAIN_ASYNC_TELEMETRY: &str = include_str!("new/main_async_telemetry.rs.tmpl");
    pub(super) const TEST: &str = include_str!("new/sandbox_test.rs.tmpl");
}

/// What the test checks in addition with `--telemetry`: the count printed.
const TELEMETRY_CHECK: &str = r#"
    let total = printed.iter().find_map(|l| {
        l.split_once("] telemetry: ")?
            .1
            .strip_suffix(" records received")?
            .parse::<usize>()
            .ok()
    });
    assert!(total.is_some_and(|n| n > 0), "no telemetry count: {printed:#?}");"#;

/// Writes the project, then prints its directory on stdout.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = crate_name(&args.path)?;
    check_empty(&args.path)?;
    let (sdk, sandbox) = dependencies(args.sdk_path.as_deref())?;
    let files = render(&name, &sdk, &sandbox, args.telemetry, args.async_flavour);
    for (relative, text) in &files {
        let path = args.path.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let flavour = match (args.async_flavour, args.telemetry) {
        (false, false) => "blocking",
        (false, true) => "blocking, Telemetry API",
        (true, false) => "tokio",
        (true, true) => "tokio, Telemetry API",
    };
    note!(
        "lext: created extension `{name}` ({flavour}) in {}; next: cd {} && lext build",
        args.path.display(),
        args.path.display()
    );
    writeln!(std::io::stdout().lock(), "{}", args.path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// The files of the project, relative to its directory.
fn render(
    name: &str,
    sdk: &Path,
    sandbox: &Path,
    telemetry: bool,
    async_flavour: bool,
) -> Vec<(&'static str, String)> {
    let main = match (async_flavour, telemetry) {
        (false, false) => template::MAIN,
        (false, true) => template::MAIN_TELEMETRY,
        (true, false) => template::MAIN_ASYNC,
        (true, true) => template::MAIN_ASYNC_TELEMETRY,
    };
    let what = match (async_flavour, telemetry) {
        (false, false) => "it prints a line for each INVOKE and SHUTDOWN event (blocking flavour).",
        (false, true) => {
            "it subscribes to the Telemetry API and counts the records it receives (blocking \
             flavour)."
        }
        (true, false) => "it prints a line for each INVOKE and SHUTDOWN event (tokio flavour).",
        (true, true) => {
            "it subscribes to the Telemetry API and counts the records it receives (tokio \
             flavour)."
        }
    };
    let fill = |text: &str| {
        text.replace("@NAME@", name)
            .replace("@SDK_PATH@", &toml_escape(&sdk.to_string_lossy()))
            .replace("@SANDBOX_PATH@", &toml_escape(&sandbox.to_string_lossy()))
            .replace(
                "@SDK_FEATURES@",
                if async_flavour {
                    ", features = [\"tokio\"]"
                } else {
                    ""
                },
            )
            .replace("@WHAT@", what)
            .replace(
                "@TELEMETRY_CHECK@",
                if telemetry { TELEMETRY_CHECK } else { "" },
            )
    };
    vec![
        ("Cargo.toml", fill(template::CARGO_TOML)),
        (".gitignore", fill(template::GITIGNORE)),
        ("README.md", fill(template::README)),
        ("src/main.rs", fill(main)),
        ("tests/sandbox.rs", fill(template::TEST)),
    ]
}

/// The crate name: the directory's last component, if cargo would take it
/// as a package name and it can be a binary's (and so an extension's)
/// name.
fn crate_name(path: &Path) -> anyhow::Result<String> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        bail!(
            "{}: the directory must end in a name (the crate's), e.g. lext new my-extension",
            path.display()
        );
    };
    let invalid = |why: &str| {
        anyhow::anyhow!("invalid crate name `{name}`: {why}; e.g. lext new my-extension")
    };
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return Err(invalid("it must start with an ASCII letter")),
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(invalid(
            "use only ASCII letters, digits, `-` and `_` (it is also the extension's file name)",
        ));
    }
    if name.len() > 64 {
        return Err(invalid("at most 64 characters"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return Err(invalid(
            "it is a Rust keyword or the name of a standard crate, which cargo refuses",
        ));
    }
    Ok(name.to_owned())
}

/// Names cargo refuses for a package: Rust keywords and the standard
/// crates (cargo's `restricted_names`).
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Refuses a directory that exists and holds anything.
fn check_empty(path: &Path) -> anyhow::Result<()> {
    match fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty: choose another name, or remove it first",
                    path.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} already exists and is a file", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The SDK's and the sandbox's directories, absolute (the project may be
/// anywhere), each checked to hold the crate.
fn dependencies(sdk_path: Option<&Path>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let recorded = Path::new(REPOSITORY).join("crates");
    let (sdk, sandbox) = match sdk_path {
        Some(sdk) => {
            let sdk = sdk
                .canonicalize()
                .with_context(|| format!("--sdk-path {}", sdk.display()))?;
            let sibling = sdk.with_file_name("lext-sandbox");
            let sandbox = if sibling.join("Cargo.toml").is_file() {
                sibling
            } else {
                recorded.join("lext-sandbox")
            };
            (sdk, sandbox)
        }
        None => (
            recorded.join("lext-extension"),
            recorded.join("lext-sandbox"),
        ),
    };
    for (path, crate_name, hint) in [
        (
            &sdk,
            "lext-extension",
            "pass --sdk-path DIR of the lext-extension crate",
        ),
        (
            &sandbox,
            "lext-sandbox",
            "pass --sdk-path DIR with lext-sandbox beside it",
        ),
    ] {
        let manifest = fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
        if !manifest.contains(&format!("name = \"{crate_name}\"")) {
            bail!(
                "{} is not the {crate_name} crate (no Cargo.toml naming it; lext was built from \
                 {REPOSITORY}): {hint}",
                path.display()
            );
        }
    }
    Ok((sdk, sandbox))
}

/// A TOML basic string's content: backslashes and quotes escaped.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_checked_as_cargo_would() {
        for ok in ["demo", "my-extension", "a_b-2", "Demo"] {
            assert_eq!(crate_name(Path::new(ok)).unwrap(), ok);
        }
        assert_eq!(crate_name(Path::new("some/dir/demo")).unwrap(), "demo");
        for (bad, why) in [
            ("1demo", "start with an ASCII letter"),
            ("-x", "start with an ASCII letter"),
            ("my ext", "only ASCII letters"),
            ("café", "only ASCII letters"),
            ("fn", "keyword"),
            ("std", "keyword"),
        ] {
            let err = crate_name(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(crate_name(Path::new("/")).is_err());
    }

    #[test]
    fn every_placeholder_is_filled_in_every_variant() {
        for telemetry in [false, true] {
            for async_flavour in [false, true] {
                let files = render(
                    "demo",
                    Path::new("/x/lext-extension"),
                    Path::new("/x/lext-sandbox"),
                    telemetry,
                    async_flavour,
                );
                for (path, text) in &files {
                    assert!(!text.contains('@'), "{path}: {text}");
                }
                let cargo = &files[0].1;
                assert_eq!(cargo.contains("features = [\"tokio\"]"), async_flavour);
                let test = &files[4].1;
                assert_eq!(test.contains("telemetry: "), telemetry);
            }
        }
    }

    #[test]
    fn paths_are_escaped_for_toml() {
        assert_eq!(toml_escape(r#"a\b"c"#), r#"a\\b\"c"#);
    }
}
