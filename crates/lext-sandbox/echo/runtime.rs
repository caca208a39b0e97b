//! The built-in function runtime: an echo handler.
//!
//! Without a runtime of its own, an environment runs this one in a separate
//! process, so that signals, timeouts, freezing and output capture behave
//! exactly as for a real runtime. It speaks the Runtime API over one
//! kept-alive HTTP/1.1 connection with `std::net` (no async runtime, no
//! dependency: it starts in about a millisecond), and answers each
//! invocation with its payload unchanged. Nothing is written to stdout, as
//! a quiet handler would.
//!
//! This file is compiled twice: by `build.rs` as a small program of its own
//! (`echo/main.rs`), which the sandbox embeds and runs, and into the
//! library, whose tests check its constants against `lext-protocol`'s and
//! which `lext` runs in-process for its hidden `__echo-runtime` command. It
//! therefore uses the standard library only.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// `AWS_LAMBDA_RUNTIME_API`.
pub(crate) const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";
/// `GET` for the next invocation.
pub(crate) const NEXT_INVOCATION_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// The request id header of `/next`.
pub(crate) const HEADER_REQUEST_ID: &str = "Lambda-Runtime-Aws-Request-Id";

/// `POST` for an invocation's response.
pub(crate) fn response_path(request_id: &str) -> String {
    format!("/2018-06-01/runtime/invocation/{request_id}/response")
}

/// Why the echo runtime stopped.
#[derive(Debug)]
pub(crate) enum EchoError {
    /// `AWS_LAMBDA_RUNTIME_API` is missing.
    MissingApi,
    /// The connection to the Runtime API failed.
    Io {
        /// The API address.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// The Runtime API answered something unexpected.
    Protocol(String),
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingApi => f.write_str("AWS_LAMBDA_RUNTIME_API is not set"),
            Self::Io { addr, source } => write!(f, "Runtime API at {addr}: {source}"),
            Self::Protocol(what) => write!(f, "unexpected answer from the Runtime API: {what}"),
        }
    }
}

impl std::error::Error for EchoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One HTTP response: status, request id header, body.
struct Answer {
    status: u16,
    request_id: Option<String>,
    body: Vec<u8>,
}

struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr: addr.to_owned(),
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<Answer> {
        // One write per request: head and body together.
        let mut out = Vec::with_capacity(128 + body.len());
        write!(
            out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )?;
        out.extend_from_slice(body);
        self.writer.write_all(&out)?;
        self.read_answer()
    }

    fn read_answer(&mut self) -> io::Result<Answer> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length = 0usize;
        let mut request_id = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| bad("bad content-length"))?;
            } else if name.eq_ignore_ascii_case(HEADER_REQUEST_ID) {
                request_id = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked answers are not expected from the Runtime API"));
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Answer {
            status,
            request_id,
            body,
        })
    }
}

/// Runs the echo runtime until the connection closes or a call fails.
/// The sandbox ends it with SIGTERM or SIGKILL, like any runtime.
pub(crate) fn run() -> Result<(), EchoError> {
    let addr = std::env::var(RUNTIME_API_VAR).map_err(|_| EchoError::MissingApi)?;
    // Some clients accept an `http://` prefix; so do we.
    let addr = addr.trim_start_matches("http://").to_owned();
    let io_err = |source| EchoError::Io {
        addr: addr.clone(),
        source,
    };
    let mut conn = Conn::open(&addr).map_err(io_err)?;
    loop {
        let next = conn
            .request("GET", NEXT_INVOCATION_PATH, b"")
            .map_err(io_err)?;
        if next.status != 200 {
            return Err(EchoError::Protocol(format!(
                "/next answered {}: {}",
                next.status,
                String::from_utf8_lossy(&next.body)
            )));
        }
        let request_id = next
            .request_id
            .ok_or_else(|| EchoError::Protocol("no Lambda-Runtime-Aws-Request-Id".into()))?;
        let answer = conn
            .request("POST", &response_path(&request_id), &next.body)
            .map_err(io_err)?;
        if answer.status != 202 {
            return Err(EchoError::Protocol(format!(
                "/response answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
    }
}
