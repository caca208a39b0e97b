//! A sans-I/O HTTP/1.1 codec: requests as values, one response parser, and
//! the telemetry listeners' request parser.
//!
//! This module owns the wire format the two transports share. [`ApiRequest`]
//! is a plain value (method, path, headers, body) that [`ApiRequest::encode`]
//! turns into bytes; [`ResponseParser`] turns bytes read from a socket into an
//! [`ApiResponse`], whatever the socket is (std or tokio), and
//! `ResponseReader` wraps it with the read buffer and the rules both
//! transports follow while reading an answer (end of stream, stray bytes).
//! None of them touches the network, so all are unit-tested with byte strings.
//!
//! Why hand-written and not hyper's client: the blocking transport is what
//! extension binaries link, and every kilobyte and microsecond of start-up
//! counts (the targets are 600 KB and 1.15x a hand-written floor).
//! The Extensions API is a tiny, well-behaved HTTP/1.1 server on loopback, so
//! a small client covering Content-Length and chunked bodies is enough.
//! `httparse` does the head parsing, which is the part worth getting from a
//! well-tested crate.

use std::fmt::Write as _;

use crate::error::{Error, Op};

/// The largest response head accepted. Lambda's heads are a few hundred bytes;
/// a bigger head means the peer is not an Extensions API.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The largest response body accepted (6 MiB plus slack, Lambda's payload
/// limit). An event is under a kilobyte; this only stops a runaway peer.
pub(crate) const MAX_BODY_BYTES: usize = 6 * 1024 * 1024 + 64 * 1024;

/// Header slots offered to `httparse`. Lambda sends about five.
const MAX_HEADERS: usize = 32;

/// The HTTP method of an [`ApiRequest`]. Only the methods Lambda's APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `GET`, used by `/event/next`.
    Get,
    /// `POST`, used by register and the error reports.
    Post,
    /// `PUT`, used by the Telemetry and Logs API subscriptions.
    Put,
}

impl Method {
    /// The method as it appears on the request line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// One HTTP request to a Lambda API, built by a pure function and sent by a
/// transport. Header values are already validated by the builder that made
/// them (see [`crate::request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiRequest {
    /// Request method.
    pub(crate) method: Method,
    /// Absolute path, e.g. `/2020-01-01/extension/register`.
    pub(crate) path: String,
    /// Extra headers in order. `Host`, `Content-Length` and `Connection` are
    /// added by [`ApiRequest::encode`].
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Request body; empty for `GET`.
    pub(crate) body: Vec<u8>,
}

impl ApiRequest {
    /// The value of the first header named `name` (case-insensitive), if
    /// any. Only the request builders' tests read requests back.
    #[cfg(test)]
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Encodes the request as HTTP/1.1 bytes for the server at `authority`
    /// (`host:port`, the `Host` header), its path appended to `base_path`
    /// (`""`, or the `/.rt` of `cargo lambda watch`). Keep-alive is HTTP/1.1's default, so
    /// no `Connection` header is sent. A body is always framed by
    /// `Content-Length`, also when empty for POST/PUT (Lambda's Go server
    /// accepts both; explicit framing is what every client sends).
    pub(crate) fn encode(&self, authority: &str, base_path: &str, out: &mut Vec<u8>) {
        out.clear();
        let mut head = String::with_capacity(128 + base_path.len() + self.path.len());
        // `write!` into a String cannot fail; the result is ignored on purpose.
        let _ = write!(
            head,
            "{} {base_path}{} HTTP/1.1\r\nHost: {}\r\n",
            self.method.as_str(),
            self.path,
            authority
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if self.method != Method::Get || !self.body.is_empty() {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// A complete HTTP response: status, headers and the de-chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiResponse {
    /// Status code, e.g. 200 or 403.
    pub(crate) status: u16,
    /// Headers with lower-cased names, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, already de-chunked.
    pub(crate) body: Vec<u8>,
    /// Whether the server asked to close the connection after this response
    /// (`Connection: close`, or an HTTP/1.0 answer without keep-alive).
    pub(crate) close: bool,
}

impl ApiResponse {
    /// The value of the first header named `name` (give it lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text for error messages, lossily decoded and trimmed.
    pub(crate) fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        // Keep error messages to one readable line.
        let mut s: String = text.chars().take(512).collect();
        if text.chars().nth(512).is_some() {
            s.push_str("...");
        }
        s.replace(['\r', '\n'], " ")
    }
}

/// Why bytes from the peer are not a valid HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// `httparse` rejected the head.
    #[error("invalid response head: {0}")]
    Head(String),
    /// The head is larger than [`MAX_HEAD_BYTES`].
    #[error("response head exceeds {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("response body exceeds {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// `Content-Length` is not a number, or appears twice with different values.
    #[error("invalid Content-Length header")]
    ContentLength,
    /// A chunk size line or chunk terminator is malformed.
    #[error("invalid chunked encoding")]
    Chunked,
    /// The connection closed before the response was complete.
    #[error("connection closed after {0} bytes, before the response was complete")]
    Truncated(usize),
}

/// How the body of the response being parsed is framed.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    /// No length and not chunked: the body runs to the end of the connection.
    UntilClose,
}

/// Incremental response parser. Feed it the bytes read so far with
/// [`ResponseParser::parse`]; it returns `Ok(None)` until a whole response is
/// there. Call [`ResponseParser::finish`] when the peer closed the
/// connection, for bodies delimited by the close.
#[derive(Debug, Default)]
pub(crate) struct ResponseParser {
    head: Option<Head>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    head_len: usize,
    framing: Framing,
    close: bool,
}

impl ResponseParser {
    /// A parser waiting for a new response.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Tries to parse one complete response from the start of `buf`.
    /// Returns the response and the number of bytes it used (the rest
    /// belongs to the next response on a keep-alive connection).
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<Option<(ApiResponse, usize)>, ParseError> {
        if self.head.is_none() {
            match parse_head(buf)? {
                Some(head) => self.head = Some(head),
                None => return Ok(None),
            }
        }
        let Some(head) = self.head.as_ref() else {
            return Ok(None);
        };
        let rest = &buf[head.head_len..];
        let (body, used) = match head.framing {
            Framing::Length(n) => {
                if rest.len() < n {
                    return Ok(None);
                }
                (rest[..n].to_vec(), n)
            }
            Framing::Chunked => match dechunk(rest, MAX_BODY_BYTES)? {
                Some(found) => found,
                None => {
                    if rest.len() > MAX_BODY_BYTES + MAX_HEAD_BYTES {
                        return Err(ParseError::BodyTooLarge);
                    }
                    return Ok(None);
                }
            },
            Framing::UntilClose => {
                if rest.len() > MAX_BODY_BYTES {
                    return Err(ParseError::BodyTooLarge);
                }
                return Ok(None);
            }
        };
        Ok(self.head.take().map(|h| {
            let response = ApiResponse {
                status: h.status,
                headers: h.headers,
                body,
                close: h.close,
            };
            (response, h.head_len + used)
        }))
    }

    /// Completes the response when the peer has closed the connection with
    /// `buf` read in total. Only a body framed by the close is complete then.
    pub(crate) fn finish(&mut self, buf: &[u8]) -> Result<ApiResponse, ParseError> {
        if let Some(found) = self.parse(buf)? {
            return Ok(found.0);
        }
        match self.head.take() {
            Some(h) if matches!(h.framing, Framing::UntilClose) => Ok(ApiResponse {
                status: h.status,
                body: buf[h.head_len..].to_vec(),
                headers: h.headers,
                close: true,
            }),
            _ => Err(ParseError::Truncated(buf.len())),
        }
    }
}

/// What a transport does next with the answer it is reading, as decided by
/// [`ResponseReader::feed`].
#[derive(Debug)]
pub(crate) enum ReadStep {
    /// The answer is not complete yet: read more.
    NeedMore,
    /// The answer is complete. Its `close` flag is set when the connection
    /// must not be reused.
    Done(ApiResponse),
    /// The peer closed the connection before sending a byte: on a reused
    /// keep-alive connection that is the server closing it while idle, so
    /// the request was not processed and may be sent again on a new one.
    Stale,
    /// The bytes are not an HTTP/1.1 answer, or the answer was cut short:
    /// an [`Error::Protocol`] for the caller.
    Failed(Error),
}

/// The read side of one request/response exchange, shared by both
/// transports so they differ only in how they read from their socket.
///
/// Holds the bytes read so far and a [`ResponseParser`]. The transport calls
/// [`ResponseReader::start`] before reading an answer, then hands every read
/// to [`ResponseReader::feed`] (an empty slice for end of stream) until the
/// step is not [`ReadStep::NeedMore`].
#[derive(Debug)]
pub(crate) struct ResponseReader {
    buf: Vec<u8>,
    parser: ResponseParser,
}

impl ResponseReader {
    /// A reader with room for a typical answer, so most exchanges allocate
    /// nothing after the first.
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            parser: ResponseParser::new(),
        }
    }

    /// Forgets any previous answer, keeping the buffer's allocation.
    pub(crate) fn start(&mut self) {
        self.buf.clear();
        self.parser = ResponseParser::new();
    }

    /// Whether no byte of the answer has arrived yet. A connection reset in
    /// this state is a stale keep-alive connection, not a failed answer.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the bytes of one read for the request `op`; `bytes` is empty
    /// when the peer closed the connection.
    pub(crate) fn feed(&mut self, op: Op, bytes: &[u8]) -> ReadStep {
        let protocol = |e: ParseError| {
            ReadStep::Failed(Error::Protocol {
                op,
                reason: e.to_string(),
            })
        };
        if bytes.is_empty() {
            // End of stream before any byte: the stale keep-alive case.
            // After some bytes: only a body framed by the close is complete.
            if self.buf.is_empty() {
                return ReadStep::Stale;
            }
            return match self.parser.finish(&self.buf) {
                Ok(response) => ReadStep::Done(response),
                Err(e) => protocol(e),
            };
        }
        self.buf.extend_from_slice(bytes);
        match self.parser.parse(&self.buf) {
            Ok(Some((mut response, used))) => {
                // Extra bytes after an answer on a request/response protocol
                // mean the connection is out of step: do not reuse it.
                if used != self.buf.len() {
                    response.close = true;
                }
                ReadStep::Done(response)
            }
            Ok(None) => ReadStep::NeedMore,
            Err(e) => protocol(e),
        }
    }
}

/// Whether an I/O error means "the peer closed this connection" (reset,
/// broken pipe), as opposed to a failure worth reporting. Both transports
/// use it to tell a stale keep-alive connection from a real error.
pub(crate) fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// Parses the status line and headers, and decides the body framing.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let Some(head_len) = head_len(response.parse(buf), buf.len())? else {
        return Ok(None);
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(ParseError::HeadTooLarge);
    }
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut headers = Vec::with_capacity(response.headers.len());
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = http10;
    for h in response.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        match name.as_str() {
            "content-length" => {
                let n: usize = value.parse().map_err(|_| ParseError::ContentLength)?;
                if length.is_some_and(|m| m != n) {
                    return Err(ParseError::ContentLength);
                }
                if n > MAX_BODY_BYTES {
                    return Err(ParseError::BodyTooLarge);
                }
                length = Some(n);
            }
            "transfer-encoding" => chunked = is_chunked(&value),
            // Keep-alive only matters for HTTP/1.0, where close is the default.
            "connection" => apply_connection(&value, &mut close, http10),
            _ => {}
        }
        headers.push((name, value));
    }
    // RFC 9112 section 6.3: 1xx, 204 and 304 have no body; chunked wins over
    // Content-Length; otherwise the body runs until the connection closes.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        headers,
        head_len,
        framing,
        close,
    }))
}

/// Decodes a chunked body at the start of `buf`, at most `max` bytes.
/// Returns the body and the bytes used, or `None` if more bytes are needed.
/// Trailers are skipped.
fn dechunk(buf: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find_crlf(&buf[pos..]) else {
            return Ok(None);
        };
        let line = &buf[pos..pos + line_end];
        // Chunk extensions (";name=value") are allowed and ignored.
        let size_part = line.split(|&b| b == b';').next().unwrap_or(line);
        let size_text = std::str::from_utf8(size_part).map_err(|_| ParseError::Chunked)?;
        let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| ParseError::Chunked)?;
        pos += line_end + 2;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            loop {
                let Some(end) = find_crlf(&buf[pos..]) else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        // Checked before any arithmetic with `size`: a hostile size line
        // (e.g. 16 `f`s) must be an error, not an overflow.
        if size > max || body.len() + size > max {
            return Err(ParseError::BodyTooLarge);
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(ParseError::Chunked);
        }
        pos += 2;
    }
}

/// A request received by a telemetry listener (the server side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerRequest {
    /// The request's method, e.g. `POST`.
    pub(crate) method: String,
    /// The request's target, e.g. `/`.
    pub(crate) path: String,
    /// The de-chunked body.
    pub(crate) body: Vec<u8>,
    /// Whether the client asked to close the connection afterwards.
    pub(crate) close: bool,
}

/// What a request's head says, for the body that follows it.
struct RequestHead {
    method: String,
    path: String,
    close: bool,
    chunked: bool,
    /// The Content-Length (0 when chunked or absent).
    length: usize,
    /// The length of the head itself, blank line included.
    len: usize,
}

/// Parses the head of the request at the start of `buf`; `Ok(None)` until
/// it is complete. A Content-Length over `max_body` is an error already.
fn parse_request_head(buf: &[u8], max_body: usize) -> Result<Option<RequestHead>, ParseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let Some(head_len) = head_len(req.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let http10 = req.version == Some(0);
    let mut close = http10;
    let mut length = 0usize;
    let mut chunked = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| ParseError::ContentLength)?;
            if length > max_body {
                return Err(ParseError::BodyTooLarge);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = is_chunked(value);
        } else if h.name.eq_ignore_ascii_case("connection") {
            apply_connection(value, &mut close, true);
        }
    }
    Ok(Some(RequestHead {
        method: req.method.unwrap_or("").to_owned(),
        path: req.path.unwrap_or("").to_owned(),
        close,
        chunked,
        length: if chunked { 0 } else { length },
        len: head_len,
    }))
}

/// Parses one request from the start of `buf` for either flavour's telemetry
/// listener: `httparse` for the head, Content-Length or chunked bodies of
/// at most `max_body` bytes. `Ok(None)` means more bytes are needed.
pub(crate) fn parse_request(
    buf: &[u8],
    max_body: usize,
) -> Result<Option<(ServerRequest, usize)>, ParseError> {
    let Some(head) = parse_request_head(buf, max_body)? else {
        return Ok(None);
    };
    let rest = &buf[head.len..];
    let (body, used) = if head.chunked {
        match dechunk(rest, max_body)? {
            Some(found) => found,
            None => return Ok(None),
        }
    } else {
        if rest.len() < head.length {
            return Ok(None);
        }
        (rest[..head.length].to_vec(), head.length)
    };
    Ok(Some((
        ServerRequest {
            method: head.method,
            path: head.path,
            body,
            close: head.close,
        },
        head.len + used,
    )))
}

/// [`parse_request`] on a listener's read buffer, which it takes the
/// request off. A delivery's body is a few hundred kilobytes, so it is not
/// copied where that can be avoided: once the head has been read, `buf` is
/// given room for exactly the rest of the request (instead of doubling as
/// it fills), and a Content-Length body that ends the buffer (one delivery
/// in flight, the usual case) becomes the request's body in place, leaving
/// `buf` empty. Chunked bodies, and a body with more bytes behind it, are
/// copied out as [`parse_request`] does.
pub(crate) fn take_request(
    buf: &mut Vec<u8>,
    max_body: usize,
) -> Result<Option<ServerRequest>, ParseError> {
    let Some(head) = parse_request_head(buf, max_body)? else {
        return Ok(None);
    };
    let total = head.len + head.length;
    if head.chunked || buf.len() > total {
        let parsed = parse_request(buf, max_body)?;
        return Ok(parsed.map(|(req, used)| {
            buf.drain(..used);
            req
        }));
    }
    if buf.len() < total {
        buf.reserve_exact(total - buf.len());
        return Ok(None);
    }
    buf.drain(..head.len);
    Ok(Some(ServerRequest {
        method: head.method,
        path: head.path,
        body: std::mem::take(buf),
        close: head.close,
    }))
}

/// The length of a head `httparse` parsed from `buf_len` bytes, `None` if
/// more bytes are needed. Shared by the response and request parsers.
fn head_len(parsed: httparse::Result<usize>, buf_len: usize) -> Result<Option<usize>, ParseError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf_len > MAX_HEAD_BYTES => Err(ParseError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(ParseError::Head(e.to_string())),
    }
}

/// Whether a `Transfer-Encoding` value frames the body as chunked: only
/// when `chunked` is the last coding (RFC 9112 section 6.3).
fn is_chunked(value: &str) -> bool {
    value
        .rsplit(',')
        .next()
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// Applies a `Connection` header's tokens to `close`: `close` sets it, and
/// `keep-alive` clears it when `keep_alive_counts`.
fn apply_connection(value: &str, close: &mut bool, keep_alive_counts: bool) {
    for token in value.split(',') {
        let token = token.trim();
        if token.eq_ignore_ascii_case("close") {
            *close = true;
        } else if token.eq_ignore_ascii_case("keep-alive") && keep_alive_counts {
            *close = false;
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Option<(ApiResponse, usize)>, ParseError> {
        ResponseParser::new().parse(bytes)
    }

    #[test]
    fn encodes_get_without_length_and_post_with_length() {
        let get = ApiRequest {
            method: Method::Get,
            path: "/2020-01-01/extension/event/next".into(),
            headers: vec![("Lambda-Extension-Identifier", "abc".into())],
            body: vec![],
        };
        let mut out = Vec::new();
        get.encode("127.0.0.1:9001", "", &mut out);
        assert_eq!(
            out,
            b"GET /2020-01-01/extension/event/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\
              Lambda-Extension-Identifier: abc\r\n\r\n"
        );
        let post = ApiRequest {
            method: Method::Post,
            path: "/x".into(),
            headers: vec![],
            body: b"{}".to_vec(),
        };
        post.encode("h:1", "", &mut out);
        assert_eq!(
            out,
            b"POST /x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n\r\n{}"
        );
        // Under a base path (`cargo lambda watch`'s `/.rt`).
        post.encode("h:1", "/.rt", &mut out);
        assert_eq!(
            out,
            b"POST /.rt/x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn parses_content_length_response_and_leaves_the_rest() {
        let bytes = b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: id-1\r\nContent-Length: 2\r\n\r\n{}EXTRA";
        let (r, used) = parse_all(bytes).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("lambda-extension-identifier"), Some("id-1"));
        assert_eq!(r.body, b"{}");
        assert!(!r.close);
        assert_eq!(&bytes[used..], b"EXTRA");
    }

    #[test]
    fn waits_for_more_bytes_at_every_split_point() {
        let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n";
        for split in 0..bytes.len() {
            let mut p = ResponseParser::new();
            assert!(p.parse(&bytes[..split]).unwrap().is_none(), "split {split}");
            let (r, used) = p.parse(bytes).unwrap().unwrap();
            assert_eq!(r.body, b"Wikipedia");
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn body_until_close_needs_finish() {
        let bytes = b"HTTP/1.1 500 Internal\r\n\r\npartial body";
        let mut p = ResponseParser::new();
        assert!(p.parse(bytes).unwrap().is_none());
        let r = p.finish(bytes).unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"partial body");
        assert!(r.close);
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let mut p = ResponseParser::new();
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(p.parse(cut).unwrap().is_none());
        assert_eq!(p.finish(cut), Err(ParseError::Truncated(cut.len())));
        assert!(matches!(
            parse_all(b"garbage garbage\r\n\r\n"),
            Err(ParseError::Head(_))
        ));
        assert_eq!(
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ParseError::ContentLength)
        );
        assert_eq!(
            parse_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ParseError::Chunked)
        );
        assert_eq!(
            ResponseParser::new().finish(b""),
            Err(ParseError::Truncated(0))
        );
    }

    #[test]
    fn connection_close_and_http10_are_noticed() {
        let (r, _) =
            parse_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(r.close);
        let (r, _) = parse_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.close);
    }

    #[test]
    fn huge_chunk_sizes_are_errors_not_overflows() {
        for size in ["ffffffffffffffff", "7fffffffffffffff", "1000000000"] {
            let bytes =
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nab");
            assert_eq!(
                parse_all(bytes.as_bytes()),
                Err(ParseError::BodyTooLarge),
                "{size}"
            );
        }
        assert_eq!(
            parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"),
            Err(ParseError::BodyTooLarge)
        );
    }

    proptest::proptest! {
        /// No input makes the parser panic, whole or fed in two pieces.
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), split in 0usize..600) {
            let mut p = ResponseParser::new();
            let cut = split.min(bytes.len());
            if let Ok(None) = p.parse(&bytes[..cut]) {
                let _ = p.parse(&bytes);
            }
            let _ = ResponseParser::new().finish(&bytes);
        }

        /// Well-formed chunked bodies decode to their content at every split.
        #[test]
        fn chunked_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..40), 0..6), split in 0usize..400) {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let mut want = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(c);
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let mut p = ResponseParser::new();
            let cut = split.min(wire.len());
            if cut < wire.len() {
                proptest::prop_assert!(p.parse(&wire[..cut]).unwrap().is_none());
            }
            let (r, used) = p.parse(&wire).unwrap().unwrap();
            proptest::prop_assert_eq!(r.body, want);
            proptest::prop_assert_eq!(used, wire.len());
        }
    }

    #[test]
    fn server_requests_parse_with_length_or_chunks() {
        let raw =
            b"POST / HTTP/1.1\r\nHost: sandbox.localdomain:1\r\nContent-Length: 2\r\n\r\n[]rest";
        let (r, used) = parse_request(raw, 100).unwrap().unwrap();
        assert_eq!(
            (
                r.method.as_str(),
                r.path.as_str(),
                r.body.as_slice(),
                r.close
            ),
            ("POST", "/", &b"[]"[..], false)
        );
        assert_eq!(&raw[used..], b"rest");
        let raw = b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n[]\r\n0\r\n\r\n";
        let (r, _) = parse_request(raw, 100).unwrap().unwrap();
        assert_eq!((r.body.as_slice(), r.close), (&b"[]"[..], true));
        assert!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 100)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 500\r\n\r\n", 100),
            Err(ParseError::BodyTooLarge)
        );
        assert!(matches!(
            parse_request(b"\x00\x01garbage\r\n\r\n", 100),
            Err(ParseError::Head(_))
        ));
    }

    #[test]
    fn a_request_taken_off_the_buffer_is_the_same_and_its_body_is_not_copied() {
        let head = b"POST / HTTP/1.1\r\nHost: sandbox.localdomain:1\r\nContent-Length: 6\r\n\r\n";
        // Head first: room is made for exactly the rest.
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"[1,");
        assert_eq!(take_request(&mut buf, 100).unwrap(), None);
        assert!(buf.capacity() >= head.len() + 6);
        let at = buf.as_ptr() as usize;
        buf.extend_from_slice(b"2]]");
        let req = take_request(&mut buf, 100).unwrap().unwrap();
        assert_eq!(
            (req.method.as_str(), req.body.as_slice()),
            ("POST", &b"[1,2]]"[..])
        );
        // The buffer's own allocation became the body; the buffer is empty.
        assert_eq!(req.body.as_ptr() as usize, at);
        assert!(buf.is_empty());

        // Bytes behind the request (a pipelined one), and chunked bodies:
        // as parse_request gives them, the rest left in the buffer.
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"[1,2]]POST");
        let req = take_request(&mut buf, 100).unwrap().unwrap();
        assert_eq!(req.body, b"[1,2]]");
        assert_eq!(buf, b"POST");
        let chunked =
            b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\nnext";
        let mut buf = chunked.to_vec();
        let req = take_request(&mut buf, 100).unwrap().unwrap();
        assert_eq!((req.path.as_str(), req.body.as_slice()), ("/x", &b"[]"[..]));
        assert_eq!(buf, b"next");
        let mut buf = b"POST / HTTP/1.1\r\nContent-Length: 500\r\n\r\n".to_vec();
        assert_eq!(take_request(&mut buf, 100), Err(ParseError::BodyTooLarge));
    }

    /// Feeds `reads` in order (an empty read is end of stream) and returns
    /// the first step that is not `NeedMore`.
    fn read_all(reads: &[&[u8]]) -> ReadStep {
        let mut reader = ResponseReader::new();
        reader.start();
        for bytes in reads {
            match reader.feed(Op::Next, bytes) {
                ReadStep::NeedMore => {}
                step => return step,
            }
        }
        ReadStep::NeedMore
    }

    #[test]
    fn reader_completes_across_reads_and_keeps_the_connection() {
        let step = read_all(&[b"HTTP/1.1 200 OK\r\nContent-", b"Length: 2\r\n\r\n{", b"}"]);
        let ReadStep::Done(r) = step else {
            panic!("expected an answer, got {step:?}");
        };
        assert_eq!(
            (r.status, r.body.as_slice(), r.close),
            (200, &b"{}"[..], false)
        );
    }

    #[test]
    fn reader_closes_a_connection_with_stray_bytes() {
        let step = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1"]);
        assert!(
            matches!(step, ReadStep::Done(ApiResponse { close: true, .. })),
            "{step:?}"
        );
    }

    #[test]
    fn reader_end_of_stream_is_stale_before_any_byte_and_an_error_after() {
        assert!(matches!(read_all(&[b""]), ReadStep::Stale));
        let step = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab", b""]);
        assert!(
            matches!(step, ReadStep::Failed(Error::Protocol { op: Op::Next, .. })),
            "{step:?}"
        );
        let step = read_all(&[b"HTTP/1.1 500 Internal\r\n\r\nboom", b""]);
        assert!(
            matches!(
                step,
                ReadStep::Done(ApiResponse {
                    status: 500,
                    close: true,
                    ..
                })
            ),
            "{step:?}"
        );
        let step = read_all(&[b"nonsense\r\n\r\n"]);
        assert!(
            matches!(step, ReadStep::Failed(Error::Protocol { .. })),
            "{step:?}"
        );
    }

    #[test]
    fn reader_start_forgets_the_previous_answer() {
        let mut reader = ResponseReader::new();
        assert!(matches!(
            reader.feed(Op::Next, b"HTTP/1.1 200 OK\r\n"),
            ReadStep::NeedMore
        ));
        assert!(!reader.is_empty());
        reader.start();
        assert!(reader.is_empty());
        let step = reader.feed(Op::Next, b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(
            matches!(step, ReadStep::Done(ApiResponse { status: 204, .. })),
            "{step:?}"
        );
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(parse_all(&big), Err(ParseError::HeadTooLarge));
    }
}
