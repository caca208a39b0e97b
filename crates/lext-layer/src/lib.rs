//! `lext-layer`: from a Cargo project to a published Lambda extension layer,
//! catching every packaging trap before upload.
//!
//! Everything here is synchronous except the AWS SDK call in `publish`,
//! which sits behind the `publish` cargo feature so that users of the zip,
//! extract and check code (the sandbox's `lext run --layer`) never compile
//! the AWS SDK.
//!
//! # Layout
//!
//! - [`platform`]: the Lambda architectures and OS-only runtimes (with their
//!   glibc floor and the interpreters they ship).
//! - [`elf`]: what a file is, from its bytes: ELF machine, `GLIBC_` needs,
//!   dynamic loader, or `#!` interpreter.
//! - [`safepath`]: the one set of rules for safe names and symlink targets,
//!   shared by [`check`](mod@check) and [`extract`](mod@extract).
//! - [`listing`]: a layer (zip or directory) listed in memory, every zip
//!   entry read through a limit of its declared size, never a file whole.
//! - [`check`](mod@check): the pure checks over a listing, one [`check::Problem`] per
//!   trap, each with its fix.
//! - [`extract`](mod@extract): unpack a layer zip safely, keeping unix modes,
//!   within Lambda's unzipped limit for all the layers of a function.
//! - [`package`]: write the reproducible layer zip.
//! - [`project`]: where a Cargo project's binaries and zip live.
//! - [`build`]: compile a project's binaries with cargo-zigbuild for
//!   glibc 2.26 and copy them to `target/lambda/extensions/`.
//! - `publish` (feature `publish`): PublishLayerVersion and
//!   UpdateFunctionConfiguration through the AWS SDK for Rust.
//! - `invoke` (feature `publish`): one Invoke call, to `lext run --serve`
//!   or Lambda, on the same client, with aws-cli's return codes.

pub mod build;
pub mod check;
pub mod elf;
pub mod extract;
#[cfg(feature = "publish")]
pub mod invoke;
pub mod listing;
pub mod package;
pub mod platform;
pub mod project;
#[cfg(feature = "publish")]
pub mod publish;
pub mod safepath;

pub use check::{check, CheckOptions, Problem, ProblemKind};
pub use extract::{
    copy_layer_dir, copy_layer_dir_within, extract, extract_within, Budget, ExtractError, Extracted,
};
pub use listing::{Entry, EntryKind, Fault, Listing, ListingError, Special};
pub use platform::{Arch, GlibcVersion, Runtime};
