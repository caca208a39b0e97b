//! Where the Lambda APIs are: `AWS_LAMBDA_RUNTIME_API`, read without panics.
//!
//! This module owns turning the environment variable (or an explicit value)
//! into an [`Endpoint`]: the `host:port` authority sent as `Host`, the
//! socket addresses to connect to, and a base path. Lambda sets a plain
//! `127.0.0.1:9001`; some tools set `http://host:port`, so a leading
//! `http://` and a trailing `/` are accepted. `cargo lambda watch` serves the
//! APIs under a path (`127.0.0.1:9000/.rt`): the value is then a base URL,
//! and every request path is appended to it
//! (`/.rt/2020-01-01/extension/register`). Anything else is an
//! [`Error::Env`] naming the variable, never a panic (the official crate
//! `expect`s here).

use std::net::{SocketAddr, ToSocketAddrs};

use lext_protocol::env::AWS_LAMBDA_RUNTIME_API as RUNTIME_API_VAR;

use crate::error::Error;

/// The address of the Lambda APIs (Extensions, Telemetry, Logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    authority: String,
    /// `""`, or a path such as `/.rt` (no trailing `/`) that every request
    /// path is appended to.
    base_path: String,
    addrs: Vec<SocketAddr>,
}

impl Endpoint {
    /// Reads `AWS_LAMBDA_RUNTIME_API` from the process environment.
    ///
    /// # Errors
    /// [`Error::Env`] if it is unset, not UTF-8, or not a `host:port`.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var(RUNTIME_API_VAR) {
            Ok(value) => Self::parse(&value),
            Err(std::env::VarError::NotPresent) => Err(Error::Env {
                var: RUNTIME_API_VAR,
                reason: "not set (it is set by Lambda; run under `lext run` locally)".into(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Env {
                var: RUNTIME_API_VAR,
                reason: "not valid UTF-8".into(),
            }),
        }
    }

    /// Parses `host:port`, optionally written as `http://host:port/`, and
    /// optionally followed by a base path (`host:port/.rt`).
    ///
    /// # Errors
    /// [`Error::Env`] if the value is not a `host:port` that resolves, or
    /// has a query, a fragment or user information.
    ///
    /// # Examples
    /// ```
    /// use lext_extension::Endpoint;
    /// let e = Endpoint::parse("http://127.0.0.1:9001/").unwrap();
    /// assert_eq!((e.authority(), e.base_path()), ("127.0.0.1:9001", ""));
    /// let watch = Endpoint::parse("127.0.0.1:9000/.rt").unwrap();
    /// assert_eq!((watch.authority(), watch.base_path()), ("127.0.0.1:9000", "/.rt"));
    /// assert!(Endpoint::parse("127.0.0.1").is_err());
    /// ```
    pub fn parse(value: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Env {
            var: RUNTIME_API_VAR,
            reason,
        };
        let trimmed = value.trim();
        let rest = strip_prefix_ignore_case(trimmed, "http://").unwrap_or(trimmed);
        if strip_prefix_ignore_case(rest, "https://").is_some() {
            return Err(invalid(format!(
                "{value:?}: HTTPS is not used by Lambda's APIs"
            )));
        }
        let rest = rest.trim_end_matches('/');
        let (authority, base_path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(invalid(
                "empty; expected host:port, e.g. 127.0.0.1:9001".into(),
            ));
        }
        if rest.contains(['?', '#', '@', ' ', '\t']) || base_path.contains("//") {
            return Err(invalid(format!(
                "{value:?}: expected host:port or host:port/path, e.g. 127.0.0.1:9001"
            )));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            return Err(invalid(format!(
                "{value:?}: expected host:port with a port, e.g. 127.0.0.1:9001"
            )));
        }
        let addrs: Vec<SocketAddr> = match authority.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => return Err(invalid(format!("{value:?}: cannot resolve: {e}"))),
        };
        if addrs.is_empty() {
            return Err(invalid(format!("{value:?}: resolves to no address")));
        }
        Ok(Self {
            authority: authority.to_string(),
            base_path: base_path.to_string(),
            addrs,
        })
    }

    /// The `host:port` sent as the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path every request path is appended to: `""` for Lambda's own
    /// `host:port`, `/.rt` for `cargo lambda watch`'s `host:port/.rt`.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The resolved socket addresses, tried in order when connecting.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_http_forms() {
        for v in [
            "127.0.0.1:9001",
            "http://127.0.0.1:9001",
            "HTTP://127.0.0.1:9001/",
            " 127.0.0.1:9001 ",
        ] {
            let e = Endpoint::parse(v).unwrap();
            assert_eq!(e.authority(), "127.0.0.1:9001", "{v}");
            assert_eq!(e.addrs()[0], "127.0.0.1:9001".parse().unwrap());
        }
        assert_eq!(
            Endpoint::parse("[::1]:9001").unwrap().authority(),
            "[::1]:9001"
        );
    }

    #[test]
    fn a_path_is_a_base_path() {
        for (v, base) in [
            ("127.0.0.1:9000/.rt", "/.rt"),
            ("http://127.0.0.1:9000/.rt/", "/.rt"),
            ("127.0.0.1:9000/a/b", "/a/b"),
            ("127.0.0.1:9000/", ""),
        ] {
            let e = Endpoint::parse(v).unwrap();
            assert_eq!(
                (e.authority(), e.base_path()),
                ("127.0.0.1:9000", base),
                "{v}"
            );
        }
    }

    #[test]
    fn rejects_malformed_values_with_the_variable_name() {
        for v in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            ":9001",
            "127.0.0.1:99999",
            "https://127.0.0.1:9001",
            "127.0.0.1:9001/path?x=1",
            "127.0.0.1:9001/a#b",
            "user@127.0.0.1:9001",
            "127.0.0.1:9001//rt",
            "/.rt",
            "http://",
        ] {
            match Endpoint::parse(v) {
                Err(Error::Env { var, .. }) => assert_eq!(var, RUNTIME_API_VAR),
                other => panic!("{v:?}: {other:?}"),
            }
        }
    }
}
