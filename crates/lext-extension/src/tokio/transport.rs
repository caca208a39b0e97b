//! The async transport: the same requests and parser as the blocking one,
//! over a tokio `TcpStream`.
//!
//! This module owns moving [`ApiRequest`] bytes to the API and reading an
//! [`ApiResponse`] back, on one keep-alive connection, without a read
//! timeout (the `/event/next` long poll). Cancelling [`AsyncTransport::send`]
//! (for example when a signal wins a `select!`) drops the connection, so the
//! next call starts on a fresh one and never reads a stale answer.

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::TcpStream;

use crate::endpoint::Endpoint;
use crate::error::{Error, Op};
use crate::http::{ApiRequest, ApiResponse, ResponseParser};

/// An async HTTP/1.1 client for one API endpoint, reusing one connection.
#[derive(Debug)]
pub(crate) struct AsyncTransport {
    endpoint: Endpoint,
    conn: Option<TcpStream>,
    write_buf: Vec<u8>,
    read_buf: Vec<u8>,
}

/// Outcome of one request/response exchange that did not yield a response.
enum Exchange {
    /// The connection was already closed by the server; retry on a new one.
    Stale,
    /// A real failure, returned to the caller.
    Failed(Error),
}

impl AsyncTransport {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            conn: None,
            write_buf: Vec::with_capacity(512),
            read_buf: Vec::with_capacity(4096),
        }
    }

    /// Connects to the first address that accepts. `AWS_LAMBDA_RUNTIME_API`
    /// may name a host that resolves to several addresses (`localhost`
    /// gives ::1 and 127.0.0.1); the last failure is the one reported.
    async fn connect(&self, op: Op) -> Result<TcpStream, Error> {
        let mut last = None;
        for addr in self.endpoint.addrs() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    // Each request is written whole, then the answer is
                    // awaited: Nagle's algorithm could only delay it.
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some((*addr, e)),
            }
        }
        match last {
            Some((addr, source)) => Err(Error::Connect { op, addr, source }),
            None => Err(Error::Protocol {
                op,
                reason: "no address to connect to".into(),
            }),
        }
    }

    /// Sends one request and reads its response; an idle keep-alive
    /// connection closed by the server is replaced once.
    pub(crate) async fn send(&mut self, op: Op, req: &ApiRequest) -> Result<ApiResponse, Error> {
        req.encode(self.endpoint.authority(), &mut self.write_buf);
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            // Taken out for the exchange: if this future is dropped midway,
            // the connection goes with it.
            let mut stream = match self.conn.take() {
                Some(s) => s,
                None => self.connect(op).await?,
            };
            match self.exchange(op, &mut stream).await {
                Ok(response) => {
                    if !response.close {
                        self.conn = Some(stream);
                    }
                    return Ok(response);
                }
                // The server closed an idle connection before reading the
                // request: nothing was processed, so one retry is safe.
                Err(Exchange::Stale) if reused && attempt == 0 => {
                    tracing::debug!(%op, "keep-alive connection was closed; reconnecting");
                }
                Err(Exchange::Stale) => break,
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Protocol {
            op,
            reason: "connection closed before any response".into(),
        })
    }

    async fn exchange(&mut self, op: Op, stream: &mut TcpStream) -> Result<ApiResponse, Exchange> {
        if let Err(e) = stream.write_all(&self.write_buf).await {
            return Err(if is_stale(&e) {
                Exchange::Stale
            } else {
                Exchange::Failed(Error::Io { op, source: e })
            });
        }
        self.read_buf.clear();
        let mut parser = ResponseParser::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) if self.read_buf.is_empty() && is_stale(&e) => return Err(Exchange::Stale),
                Err(e) => return Err(Exchange::Failed(Error::Io { op, source: e })),
            };
            if n == 0 {
                // EOF before any byte: the stale keep-alive case. After some
                // bytes: only a body framed by the close can be complete.
                if self.read_buf.is_empty() {
                    return Err(Exchange::Stale);
                }
                return parser.finish(&self.read_buf).map_err(|e| {
                    Exchange::Failed(Error::Protocol {
                        op,
                        reason: e.to_string(),
                    })
                });
            }
            self.read_buf.extend_from_slice(&chunk[..n]);
            match parser.parse(&self.read_buf) {
                Ok(Some((mut response, used))) => {
                    // Extra bytes after an answer on a request/response
                    // protocol mean the connection is out of step: drop it.
                    if used != self.read_buf.len() {
                        response.close = true;
                    }
                    return Ok(response);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Exchange::Failed(Error::Protocol {
                        op,
                        reason: e.to_string(),
                    }))
                }
            }
        }
    }
}

/// Errors that mean "the peer closed this connection", as opposed to a
/// failure worth reporting.
fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
}
