//! What a layer has to match on the Lambda side: the CPU architecture and the
//! OS-only runtime (`provided.al2`, `provided.al2023`) with its glibc floor.
//!
//! Both are plain enums with the exact strings the Lambda API uses, so the
//! CLI, `check` and `publish` agree on spelling.

use std::fmt;
use std::str::FromStr;

/// A Lambda instruction set architecture, spelled as the Lambda API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// `x86_64` (ELF machine `EM_X86_64`).
    X86_64,
    /// `arm64` (ELF machine `EM_AARCH64`; Graviton).
    Arm64,
}

impl Arch {
    /// The name used by the Lambda API (`CompatibleArchitectures`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target triple `lext build` compiles for (glibc flavour).
    pub fn rust_triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an architecture name that Lambda does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture `{0}`: expected x86_64 or arm64")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `aarch64`/`amd64` are accepted too: they are what `uname -m` and
        // Docker print, and a user typing them means the same machine.
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(UnknownArch(other.to_owned())),
        }
    }
}

/// A glibc symbol version such as `GLIBC_2.26`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    /// Major version (2 for every glibc in use).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level (`GLIBC_2.3.4` has 4); 0 when absent.
    pub patch: u32,
}

impl GlibcVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        GlibcVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses the version name of a symbol, `GLIBC_2.28`. Returns `None` for
    /// `GLIBC_PRIVATE` and anything else that is not a dotted number.
    pub fn from_symbol_version(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("GLIBC_")?;
        let mut parts = rest.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(GlibcVersion::new(major, minor, patch))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

/// An OS-only Lambda runtime that extension layers target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runtime {
    /// `provided.al2`: Amazon Linux 2, glibc 2.26.
    ProvidedAl2,
    /// `provided.al2023`: Amazon Linux 2023, glibc 2.34.
    ProvidedAl2023,
}

impl Runtime {
    /// The runtime identifier used by the Lambda API.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::ProvidedAl2 => "provided.al2",
            Runtime::ProvidedAl2023 => "provided.al2023",
        }
    }

    /// The oldest of `runtimes` (the one with the lowest glibc), the one a
    /// layer for all of them must fit: `provided.al2023` only when every
    /// runtime is `provided.al2023`, else `provided.al2` (also for names
    /// that are not OS-only runtimes).
    pub fn oldest_of(runtimes: &[String]) -> Runtime {
        if !runtimes.is_empty()
            && runtimes
                .iter()
                .all(|r| r == Runtime::ProvidedAl2023.as_str())
        {
            Runtime::ProvidedAl2023
        } else {
            Runtime::ProvidedAl2
        }
    }

    /// The newest glibc symbol version the runtime's libc provides.
    pub fn glibc_floor(self) -> GlibcVersion {
        match self {
            Runtime::ProvidedAl2 => GlibcVersion::new(2, 26, 0),
            Runtime::ProvidedAl2023 => GlibcVersion::new(2, 34, 0),
        }
    }

    /// Whether an absolute interpreter path (from a `#!` line or an ELF
    /// `PT_INTERP`) exists on this runtime's image. The OS-only images ship
    /// a shell and coreutils but no Python, Node.js, Perl or Ruby, so a
    /// script that needs one of those fails with `ENOENT` at launch.
    pub fn has_interpreter(self, path: &str) -> bool {
        const COMMON: &[&str] = &[
            "/bin/sh",
            "/bin/bash",
            "/usr/bin/sh",
            "/usr/bin/bash",
            "/usr/bin/env",
            "/bin/env",
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/ld-linux-aarch64.so.1",
            "/lib64/ld-linux-aarch64.so.1",
        ];
        // Both images are built from the same minimal package set for our
        // purpose: no per-runtime difference is known for these paths.
        let _ = self;
        COMMON.contains(&path)
    }
}

impl Runtime {
    /// Whether `/usr/bin/env NAME` finds `NAME` on the runtime's own `PATH`
    /// (`/usr/local/bin:/usr/bin/:/bin`, before `/opt/bin` of the layers).
    pub fn has_command(self, name: &str) -> bool {
        let _ = self;
        matches!(name, "sh" | "bash" | "env")
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a runtime name `lext` cannot check against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown runtime `{0}`: expected provided.al2 or provided.al2023")]
pub struct UnknownRuntime(pub String);

impl FromStr for Runtime {
    type Err = UnknownRuntime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provided.al2" => Ok(Runtime::ProvidedAl2),
            "provided.al2023" => Ok(Runtime::ProvidedAl2023),
            other => Err(UnknownRuntime(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse_and_order_numerically() {
        let v = |s| GlibcVersion::from_symbol_version(s);
        assert_eq!(v("GLIBC_2.26"), Some(GlibcVersion::new(2, 26, 0)));
        assert_eq!(v("GLIBC_2.3.4"), Some(GlibcVersion::new(2, 3, 4)));
        assert_eq!(v("GLIBC_PRIVATE"), None);
        assert_eq!(v("GCC_3.0"), None);
        // 2.3.4 < 2.9 < 2.26: string order would get this wrong.
        assert!(v("GLIBC_2.3.4") < v("GLIBC_2.9"));
        assert!(v("GLIBC_2.9") < v("GLIBC_2.26"));
        assert_eq!(GlibcVersion::new(2, 3, 4).to_string(), "2.3.4");
        assert_eq!(GlibcVersion::new(2, 26, 0).to_string(), "2.26");
    }

    #[test]
    fn names_round_trip() {
        for arch in [Arch::X86_64, Arch::Arm64] {
            assert_eq!(arch.as_str().parse::<Arch>(), Ok(arch));
        }
        for rt in [Runtime::ProvidedAl2, Runtime::ProvidedAl2023] {
            assert_eq!(rt.as_str().parse::<Runtime>(), Ok(rt));
        }
        assert!("sparc".parse::<Arch>().is_err());
        assert!("python3.12".parse::<Runtime>().is_err());
        assert_eq!(Runtime::ProvidedAl2.glibc_floor().to_string(), "2.26");
        assert_eq!(Runtime::ProvidedAl2023.glibc_floor().to_string(), "2.34");
    }
}
