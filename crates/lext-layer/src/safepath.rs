//! The one place that decides whether a path inside a layer is safe: entry
//! names (no absolute paths, no `..`) and symlink targets (must stay inside
//! the layer). [`crate::check`](mod@crate::check) reports what this module refuses, and
//! [`crate::extract`](mod@crate::extract) refuses to write it, so the two can never disagree.
//!
//! The rules are lexical and deliberately stricter than "resolves inside":
//! a symlink target may climb with leading `..` components only, then walk
//! down. A target such as `a/..` is refused, because if `a` is itself a link
//! to `.`, the kernel would resolve `a/..` to the parent of the layer.
//! Together with "never write through a symlink" (enforced by `extract`),
//! every link in an extracted layer resolves inside it.

use std::fmt;

/// A normalized relative path inside a layer: components joined by `/`, no
/// `.` or empty components, no trailing slash. The layer root is `""`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerPath(String);

impl LayerPath {
    /// The path as written in the layer, `extensions/foo`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the layer root itself (a `./` entry).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The parent directory; the root for a top-level name.
    pub fn parent(&self) -> LayerPath {
        match self.0.rfind('/') {
            Some(i) => LayerPath(self.0[..i].to_owned()),
            None => LayerPath(String::new()),
        }
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The name of the extension at this path, if it is directly in
    /// `extensions/` (where Lambda starts extensions from): `foo` for
    /// `extensions/foo`, `None` for `extensions` or `extensions/a/b`.
    pub fn extension_name(&self) -> Option<&str> {
        let mut parts = self.components();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("extensions"), Some(name), None) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path or link target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeReason {
    /// Starts with `/`: it would be written outside `/opt`.
    Absolute,
    /// Has a `..` component: it can climb out of `/opt`.
    ParentDir,
    /// Has a backslash, which some unzip tools take as a separator.
    Backslash,
    /// Has a NUL byte or is empty.
    Malformed,
    /// A symlink whose target leaves the layer.
    LinkEscapes,
}

impl fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnsafeReason::Absolute => "absolute path",
            UnsafeReason::ParentDir => "path traversal (`..`)",
            UnsafeReason::Backslash => "backslash in path",
            UnsafeReason::Malformed => "malformed path",
            UnsafeReason::LinkEscapes => "symlink pointing outside the layer",
        })
    }
}

/// Validates and normalizes an entry name from a zip (or a relative path
/// from a directory walk). Directory names may end with `/`.
pub fn entry_path(name: &str) -> Result<LayerPath, UnsafeReason> {
    if name.contains('\0') {
        return Err(UnsafeReason::Malformed);
    }
    if name.contains('\\') {
        return Err(UnsafeReason::Backslash);
    }
    if name.starts_with('/') {
        return Err(UnsafeReason::Absolute);
    }
    let mut parts = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(UnsafeReason::ParentDir),
            normal => parts.push(normal),
        }
    }
    Ok(LayerPath(parts.join("/")))
}

/// Validates the target of a symlink stored at `link` (already validated by
/// [`entry_path`]). Accepted: relative targets made of leading `..`
/// components that do not climb above the layer root, followed by plain
/// names. Returns the target as a layer path.
pub fn link_target(link: &LayerPath, target: &str) -> Result<LayerPath, UnsafeReason> {
    if target.is_empty() || target.contains('\0') {
        return Err(UnsafeReason::Malformed);
    }
    if target.starts_with('/') || target.contains('\\') {
        // An absolute target would point into the host (or into another
        // layer's `/opt` at run time, which this layer cannot know).
        return Err(UnsafeReason::LinkEscapes);
    }
    // Start from the directory holding the link.
    let parent = link.parent();
    let mut resolved: Vec<&str> = parent.components().collect();
    let mut descended = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if descended || resolved.pop().is_none() {
                    return Err(UnsafeReason::LinkEscapes);
                }
            }
            normal => {
                descended = true;
                resolved.push(normal);
            }
        }
    }
    Ok(LayerPath(resolved.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_name_is_only_a_direct_child_of_extensions() {
        let name = |p: &str| entry_path(p).map(|p| p.extension_name().map(str::to_owned));
        assert_eq!(name("extensions/foo"), Ok(Some("foo".into())));
        assert_eq!(name("./extensions/foo/"), Ok(Some("foo".into())));
        assert_eq!(name("extensions"), Ok(None));
        assert_eq!(name("extensions/a/b"), Ok(None));
        assert_eq!(name("bin/extensions/foo"), Ok(None));
        assert_eq!(name("foo"), Ok(None));
    }

    #[test]
    fn entry_names() {
        let ok = |s: &str| entry_path(s).map(|p| p.as_str().to_owned());
        assert_eq!(ok("extensions/"), Ok("extensions".into()));
        assert_eq!(ok("./extensions//foo"), Ok("extensions/foo".into()));
        assert_eq!(ok("./"), Ok("".into()));
        assert_eq!(ok("/etc/passwd"), Err(UnsafeReason::Absolute));
        assert_eq!(ok("../x"), Err(UnsafeReason::ParentDir));
        assert_eq!(ok("a/../../x"), Err(UnsafeReason::ParentDir));
        // Even a `..` that would stay inside is refused: no reader can be
        // fooled by a name that never climbs.
        assert_eq!(ok("a/../b"), Err(UnsafeReason::ParentDir));
        assert_eq!(ok("a\\..\\b"), Err(UnsafeReason::Backslash));
        assert_eq!(ok("a\0b"), Err(UnsafeReason::Malformed));
    }

    #[test]
    fn link_targets() {
        let link = entry_path("lib/sub/libfoo.so").unwrap();
        let t = |target: &str| link_target(&link, target).map(|p| p.as_str().to_owned());
        assert_eq!(t("libfoo.so.1"), Ok("lib/sub/libfoo.so.1".into()));
        assert_eq!(t("../libbar.so"), Ok("lib/libbar.so".into()));
        assert_eq!(t("../../bin/tool"), Ok("bin/tool".into()));
        assert_eq!(t("../../../etc/passwd"), Err(UnsafeReason::LinkEscapes));
        assert_eq!(t("/etc/passwd"), Err(UnsafeReason::LinkEscapes));
        // `..` after a name is refused: `x` may itself be a link to `.`.
        assert_eq!(t("x/.."), Err(UnsafeReason::LinkEscapes));
        assert_eq!(t(""), Err(UnsafeReason::Malformed));
        let top = entry_path("extensions/foo").unwrap();
        assert_eq!(
            link_target(&top, "../bin/foo").map(|p| p.to_string()),
            Ok("bin/foo".into())
        );
        assert_eq!(
            link_target(&top, "../../foo"),
            Err(UnsafeReason::LinkEscapes)
        );
    }
}
