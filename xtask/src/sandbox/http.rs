//! A minimal HTTP/1.1 client and server over `std::net`, for the sandbox
//! benchmark.
//!
//! Why hand-written: the benchmark measures how fast lext answers, so the
//! client must add as little as possible (no async runtime, no framework;
//! one kept-alive connection, one `write` per request, a buffered reader).
//! The same request/response framing serves the helper processes of the
//! benchmark (the floor's minimal API server, the telemetry subscriber's
//! listener, the log-writing runtime). It understands what those peers send
//! and nothing more: `Content-Length` or chunked bodies, no trailers, no
//! `Expect: 100-continue`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A message head: the first line and the headers, names as sent.
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub first_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// A header's value (names compare case-insensitively).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a head; `Ok(None)` when the peer closed the connection cleanly
/// before sending anything.
fn read_head(reader: &mut impl BufRead, line: &mut String) -> io::Result<Option<Head>> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Ok(None);
    }
    let mut head = Head {
        first_line: line.trim_end().to_owned(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let text = line.trim_end();
        if text.is_empty() {
            return Ok(Some(head));
        }
        if let Some((name, value)) = text.split_once(':') {
            head.headers
                .push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

/// Reads the body the head announces (`Content-Length` or chunked).
fn read_body(reader: &mut impl BufRead, head: &Head, line: &mut String) -> io::Result<Vec<u8>> {
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            line.clear();
            reader.read_line(line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            // The CRLF after the chunk (or after the last, empty one).
            line.clear();
            reader.read_line(line)?;
            if size == 0 {
                return Ok(body);
            }
        }
    }
    let length = match head.header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("bad content-length {v:?}")))?,
        None => 0,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// A response as the client sees it.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

/// One kept-alive client connection.
#[derive(Debug)]
pub(crate) struct Client {
    host: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
    out: Vec<u8>,
}

impl Client {
    /// Connects (TCP_NODELAY: requests are single small writes that must
    /// leave at once).
    pub(crate) fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> io::Result<Self> {
        let host = addr.to_string();
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        // Nothing here should take long; a stalled peer fails the run.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            host,
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
            line: String::with_capacity(256),
            out: Vec::with_capacity(1024),
        })
    }

    /// Sends one request (head and body in one write) and reads the answer.
    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        )?;
        for (name, value) in headers {
            write!(self.out, "{name}: {value}\r\n")?;
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.writer.write_all(&self.out)?;
        let head = read_head(&mut self.reader, &mut self.line)?
            .ok_or_else(|| bad("connection closed before the answer"))?;
        let status = head
            .first_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", head.first_line)))?;
        let body = read_body(&mut self.reader, &head, &mut self.line)?;
        Ok(Response { status, head, body })
    }
}

/// A request as a server sees it.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub head: Head,
    pub body: Vec<u8>,
}

/// The server side of one connection.
#[derive(Debug)]
pub(crate) struct ServerConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl ServerConn {
    pub(crate) fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, stream.try_clone()?),
            writer: stream,
            line: String::with_capacity(256),
        })
    }

    /// The next request; `Ok(None)` when the client closed the connection.
    pub(crate) fn read(&mut self) -> io::Result<Option<Request>> {
        let Some(head) = read_head(&mut self.reader, &mut self.line)? else {
            return Ok(None);
        };
        let mut parts = head.first_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let body = read_body(&mut self.reader, &head, &mut self.line)?;
        Ok(Some(Request {
            method,
            path,
            head,
            body,
        }))
    }

    /// Writes a response with a `Content-Length` body, in one write.
    pub(crate) fn respond(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(128 + body.len());
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n",
            body.len()
        )?;
        for (name, value) in headers {
            write!(out, "{name}: {value}\r\n")?;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        self.writer.write_all(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn request_and_chunked_answer_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut conn = ServerConn::new(stream).unwrap();
            let req = conn.read().unwrap().unwrap();
            assert_eq!(req.method, "POST");
            assert_eq!(req.path, "/x");
            assert_eq!(req.head.header("x-a"), Some("1"));
            assert_eq!(req.body, b"hello");
            // A chunked answer, as hyper may send one.
            conn.writer
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
            let req = conn.read().unwrap().unwrap();
            assert_eq!(req.body, b"");
            conn.respond(202, &[("X-B", "2")], b"ok").unwrap();
            assert!(conn.read().unwrap().is_none());
        });
        let mut client = Client::connect(addr).unwrap();
        let r = client
            .send("POST", "/x", &[("X-A", "1")], b"hello")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        let r = client.send("GET", "/y", &[], b"").unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(r.head.header("x-b"), Some("2"));
        assert_eq!(r.body, b"ok");
        drop(client);
        server.join().unwrap();
    }
}
