//! The async transport: the same requests and parser as the blocking one,
//! over a tokio `TcpStream`.
//!
//! This module owns moving [`ApiRequest`] bytes to the API and handing what
//! it reads to the shared [`ResponseReader`], on one keep-alive connection, without a read
//! timeout (the `/event/next` long poll). Cancelling [`AsyncTransport::send`]
//! (for example when a signal wins a `select!`) drops the connection, so the
//! next call starts on a fresh one and never reads a stale answer.

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::TcpStream;

use crate::endpoint::Endpoint;
use crate::error::{Error, Op};
use crate::http::{is_stale, ApiRequest, ApiResponse, ReadStep, ResponseReader};

/// An async HTTP/1.1 client for one API endpoint, reusing one connection.
#[derive(Debug)]
pub(crate) struct AsyncTransport {
    endpoint: Endpoint,
    conn: Option<TcpStream>,
    write_buf: Vec<u8>,
    reader: ResponseReader,
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
            reader: ResponseReader::new(),
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
        req.encode(
            self.endpoint.authority(),
            self.endpoint.base_path(),
            &mut self.write_buf,
        );
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
        self.reader.start();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) if self.reader.is_empty() && is_stale(&e) => return Err(Exchange::Stale),
                Err(e) => return Err(Exchange::Failed(Error::Io { op, source: e })),
            };
            match self.reader.feed(op, &chunk[..n]) {
                ReadStep::NeedMore => {}
                ReadStep::Done(response) => return Ok(response),
                ReadStep::Stale => return Err(Exchange::Stale),
                ReadStep::Failed(e) => return Err(Exchange::Failed(e)),
            }
        }
    }
}
